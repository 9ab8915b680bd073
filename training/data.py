"""Step-indexed, deterministic batches: the batch of step k is a pure function of
(seed, k, process index), so resuming needs only the step and any host can recompute
any batch.

Global position `p = k * batch_size + row` names one slot of the global batch; epoch
`p // N` visits the N examples of the sampler in a permutation seeded by (seed, epoch).
Each process draws only the rows its devices hold.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from training.task import Example, Sampler

_EXAMPLE_STREAM = 1  # rng stream ids, so example and permutation draws never collide
_PERMUTATION_STREAM = 2


@dataclasses.dataclass(frozen=True)
class MemoryPieces:
    """Pieces held in memory (tests and tiny corpora); same interface as a TokenStore view."""

    pieces: Sequence[np.ndarray]
    files: list[str]

    def __len__(self) -> int:
        return len(self.pieces)

    def piece(self, index: int) -> np.ndarray:
        return np.asarray(self.pieces[index])

    def lengths(self) -> np.ndarray:
        return np.array([len(p) for p in self.pieces], np.int64)


class PieceView:
    """A subset of a store's pieces (one split), without copying tokens."""

    def __init__(self, store, indices: np.ndarray):
        self._store = store
        self.indices = np.asarray(indices, np.int64)
        self.files = [store.files[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def piece(self, index: int) -> np.ndarray:
        return np.asarray(self._store.piece(int(self.indices[index])))

    def lengths(self) -> np.ndarray:
        offsets = getattr(self._store, "offsets", None)
        if offsets is not None:
            return (offsets[1:] - offsets[:-1])[self.indices].astype(np.int64)
        return self._store.lengths()[self.indices]


def is_validation(file: str, valid_fraction: float) -> bool:
    """Stable split by piece: a hash of the path, so adding files never moves a piece."""
    digest = hashlib.sha256(file.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64 < valid_fraction


def split_pieces(store, valid_fraction: float) -> tuple[PieceView, PieceView]:
    """(train, valid) views of `store`, chosen by `is_validation` on each piece's path."""
    valid = np.array([is_validation(f, valid_fraction) for f in store.files], bool)
    return PieceView(store, np.flatnonzero(~valid)), PieceView(store, np.flatnonzero(valid))


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Token-id augmentation: transpose Pitch ids (never DrumPitch) and shift Velocity ids.

    Pitch ids must be contiguous and ascending in pitch; velocity bins likewise.
    """

    pitch_ids: range | None = None
    velocity_ids: range | None = None
    max_pitch_shift: int = 0  # semitones either way, limited so every pitch stays in range
    max_velocity_shift: int = 0  # velocity bins either way, clipped at the ends

    def __call__(self, example: Example, keys: Sequence[str], rng: np.random.Generator) -> Example:
        out = dict(example)
        if self.pitch_ids is not None and self.max_pitch_shift > 0:
            shift = self._pitch_shift([example[k] for k in keys], rng)
            for k in keys:
                out[k] = _shift_ids(out[k], self.pitch_ids, shift, clip=False)
        if self.velocity_ids is not None and self.max_velocity_shift > 0:
            shift = int(rng.integers(-self.max_velocity_shift, self.max_velocity_shift + 1))
            for k in keys:
                out[k] = _shift_ids(out[k], self.velocity_ids, shift, clip=True)
        return out

    def _pitch_shift(self, arrays: list[np.ndarray], rng: np.random.Generator) -> int:
        ids = np.concatenate([a.ravel() for a in arrays])
        pitches = ids[(ids >= self.pitch_ids.start) & (ids < self.pitch_ids.stop)]
        if pitches.size == 0:
            return 0
        low = max(-self.max_pitch_shift, self.pitch_ids.start - int(pitches.min()))
        high = min(self.max_pitch_shift, self.pitch_ids.stop - 1 - int(pitches.max()))
        return int(rng.integers(low, high + 1))


def _shift_ids(ids: np.ndarray, id_range: range, shift: int, clip: bool) -> np.ndarray:
    if shift == 0:
        return ids
    inside = (ids >= id_range.start) & (ids < id_range.stop)
    shifted = ids.astype(np.int64) + shift
    if clip:
        shifted = np.clip(shifted, id_range.start, id_range.stop - 1)
    return np.where(inside, shifted, ids).astype(ids.dtype)


class StepSampler:
    """Maps global batch positions to examples, epoch by epoch, without state."""

    def __init__(self, sampler: Sampler, seed: int, augmentation: Augmentation | None = None,
                 shuffle: bool = True):
        if len(sampler) == 0:
            raise ValueError("the sampler holds no examples: is the split or corpus empty?")
        self.sampler = sampler
        self.seed = seed
        self.augmentation = augmentation
        self.shuffle = shuffle

    @functools.lru_cache(maxsize=2)
    def _permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _PERMUTATION_STREAM, epoch])
        return rng.permutation(len(self.sampler))

    def example_index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.sampler))
        return int(self._permutation(epoch)[offset]) if self.shuffle else offset

    def example(self, position: int) -> Example:
        rng = np.random.default_rng([self.seed, _EXAMPLE_STREAM, position])
        example = self.sampler.example(self.example_index(position), rng)
        if self.augmentation is not None:
            example = self.augmentation(example, self.sampler.token_keys, rng)
        return example

    def batch(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Stack the examples at `positions` (any shape) into arrays shaped positions.shape + ..."""
        examples = [self.example(int(p)) for p in positions.ravel()]
        return {k: np.stack([e[k] for e in examples]).reshape(*positions.shape, *examples[0][k].shape)
                for k in examples[0]}


def step_positions(step: int, batch_size: int, accum_steps: int, rows: slice) -> np.ndarray:
    """Global positions of this process's rows of step `step`: [accum_steps, local rows].

    Args:
      rows: the rows of each microbatch (of batch_size // accum_steps) held by this process.
    """
    micro = batch_size // accum_steps
    first = step * batch_size + np.arange(accum_steps)[:, None] * micro
    return first + np.arange(micro)[rows][None, :]


class Prefetcher:
    """Builds host batches for consecutive steps on a background thread."""

    def __init__(self, make_batch, first_step: int, last_step: int, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._remaining = last_step - first_step
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(make_batch, first_step, last_step), daemon=True)
        self._thread.start()

    def _run(self, make_batch, first_step: int, last_step: int) -> None:
        try:
            for step in range(first_step, last_step):
                item = (step, make_batch(step))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._queue.put((None, error))

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        while self._remaining > 0:
            step, batch = self._queue.get()
            self._remaining -= 1
            if step is None:
                raise batch
            yield step, batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
