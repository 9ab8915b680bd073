"""Step-indexed, deterministic batches: the batch of step k is a pure function of
(seed, k, process index), so resuming needs only the step and any host can recompute
any batch.

Global position `p = k * batch_size + row` names one slot of the global batch; epoch
`p // N` visits the N examples of the sampler in a permutation seeded by (seed, epoch).
Each process draws only the rows its devices hold. `BucketedStepSampler` instead makes each
step's batch out of examples of one context-length bucket, cropped to that length, so that
short contexts are not padded to the full length; still a pure function of (seed, step, rows).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from training.task import Example, Sampler

_EXAMPLE_STREAM = 1  # rng stream ids, so example and permutation draws never collide
_PERMUTATION_STREAM = 2
_BUCKET_STREAM = 3


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


SPLIT_MODES = ("file", "folder", "top")  # what a piece's side of the split is a hash of


def split_key(file: str, mode: str = "file") -> str:
    """The path whose hash puts `file` on its side of the split.

    "file": the file's own relative path. "folder": its parent folder's, so every file of a
    folder (all performances of a piece and its score) lands on the same side; a file at the
    top of its source is its own key (a folder of loose files is not one piece). "top": its
    first folder's, so a whole performer's folder goes to one side (Groove's `drummerN/`).
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode {mode!r}: expected one of {', '.join(SPLIT_MODES)}")
    if mode == "top":
        return file.replace(os.sep, "/").split("/")[0]
    return (os.path.dirname(file) or file) if mode == "folder" else file


def split_pieces(store, valid_fraction: float, mode: str = "file") -> tuple[PieceView, PieceView]:
    """(train, valid) views of `store`, chosen by `is_validation` on each piece's `split_key`."""
    valid = np.array([is_validation(split_key(f, mode), valid_fraction) for f in store.files], bool)
    return PieceView(store, np.flatnonzero(~valid)), PieceView(store, np.flatnonzero(valid))


def content_hash(pieces) -> str:
    """A hash of the pieces' paths, lengths and tokens: names the data a run trains on.

    A token store's tokens are named by the SHA-256 its meta.json records (checked when the
    store was opened), so they are not read twice; other pieces are hashed here.
    """
    digest = hashlib.sha256("\n".join(pieces.files).encode("utf-8"))
    digest.update(np.asarray(pieces.lengths(), "<i8").tobytes())
    meta = getattr(pieces, "meta", None)
    recorded = (meta.get("checksums") or {}).get("tokens.u16") if isinstance(meta, dict) else None
    tokens = getattr(pieces, "tokens", None)
    if recorded:
        digest.update(recorded["sha256"].encode())
    elif isinstance(tokens, np.ndarray) and tokens.ndim == 1:
        for start in range(0, len(tokens), 1 << 24):
            digest.update(np.ascontiguousarray(tokens[start:start + (1 << 24)]))
    else:
        for index in range(len(pieces)):
            digest.update(np.ascontiguousarray(pieces.piece(index)))
    return digest.hexdigest()[:16]


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


class BucketedStepSampler(StepSampler):
    """Step k's batch holds examples of one length bucket only, cropped to that length.

    Epoch e: each example goes to the shortest bucket its real context fits; each bucket, in a
    permutation seeded by (seed, e), is cut into batches of `batch_size`; a bucket's last
    partial batch is carried up into the next (its examples fit a longer length too); the last
    bucket's remainder is topped up with filler rows (copies of the batch's first example that
    count no target). The epoch's batches are then shuffled, so lengths interleave. Step k is
    batch k mod `steps_per_epoch` of epoch k // `steps_per_epoch`; position k * batch_size +
    slot names its row, as for `StepSampler`. Every example is in exactly one batch per epoch.

    Args:
      sampler: a `Sampler` that also has `context_lengths()`, `crop(example, length)` and
        `without_targets(example)` (e.g. `perceivers.segmentation`'s effective and fixed).
      lengths: the bucket lengths; the longest must hold every example (e.g. L/8 .. L).
    """

    def __init__(self, sampler: Sampler, seed: int, batch_size: int, lengths: Sequence[int],
                 augmentation: Augmentation | None = None, shuffle: bool = True):
        super().__init__(sampler, seed, augmentation, shuffle)
        missing = [m for m in ("context_lengths", "crop", "without_targets")
                   if not hasattr(sampler, m)]
        if missing:
            raise ValueError(f"{type(sampler).__name__} cannot be length-bucketed: it has no "
                             f"{', '.join(missing)} (set data.buckets=1)")
        self.batch_size, self.lengths = batch_size, tuple(sorted(int(n) for n in lengths))
        self.fill = np.asarray(sampler.context_lengths(), np.int64)
        if self.fill.max() > self.lengths[-1]:
            raise ValueError(f"an example has {self.fill.max()} context positions, more than "
                             f"the longest bucket {self.lengths[-1]}")
        self.bucket = np.searchsorted(self.lengths, self.fill)  # the first length >= fill
        pool, steps = 0, 0
        for count in np.bincount(self.bucket, minlength=len(self.lengths)):
            pool += int(count)
            steps, pool = steps + pool // batch_size, pool % batch_size
        self.steps_per_epoch = steps + (pool > 0)

    @functools.lru_cache(maxsize=2)
    def _plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(length of each batch [steps], example of each row [steps, batch]; -1 = filler)."""
        rng = np.random.default_rng([self.seed, _BUCKET_STREAM, epoch])
        rows, lengths, carry = [], [], np.zeros(0, np.int64)
        for bucket, length in enumerate(self.lengths):
            members = np.flatnonzero(self.bucket == bucket)
            pool = np.concatenate([carry, rng.permutation(members) if self.shuffle else members])
            full = len(pool) // self.batch_size
            rows += list(pool[:full * self.batch_size].reshape(full, self.batch_size))
            lengths += [length] * full
            carry = pool[full * self.batch_size:]
        if len(carry):
            rows.append(np.concatenate([carry, np.full(self.batch_size - len(carry), -1)]))
            lengths.append(self.lengths[-1])
        order = rng.permutation(len(rows)) if self.shuffle else np.arange(len(rows))
        return np.asarray(lengths, np.int64)[order], np.stack(rows)[order]

    def _locate(self, position: int) -> tuple[int, np.ndarray, int]:
        """(batch length, the batch's example indices, this row's slot) of a position."""
        step, slot = divmod(position, self.batch_size)
        epoch, batch = divmod(step, self.steps_per_epoch)
        lengths, rows = self._plan(epoch)
        return int(lengths[batch]), rows[batch], slot

    def example_index(self, position: int) -> int:
        _, rows, slot = self._locate(position)
        return int(rows[slot])

    def example(self, position: int) -> Example:
        length, rows, slot = self._locate(position)
        rng = np.random.default_rng([self.seed, _EXAMPLE_STREAM, position])
        index = int(rows[slot])
        example = self.sampler.example(index if index >= 0 else int(rows[0]), rng)
        if index < 0:
            example = self.sampler.without_targets(example)
        example = self.sampler.crop(example, length)
        if self.augmentation is not None:
            example = self.augmentation(example, self.sampler.token_keys, rng)
        return example

    def step_length(self, step: int) -> int:
        """The context length of step `step`'s batch (its compiled shape)."""
        return self._locate(step * self.batch_size)[0]

    def real_tokens(self, step: int) -> int:
        """Real (unpadded) context tokens of step `step`'s whole batch: throughput's numerator."""
        _, rows, _ = self._locate(step * self.batch_size)
        return int(self.fill[rows[rows >= 0]].sum())

    def epoch_report(self) -> dict[str, float | int | dict[int, int]]:
        """Padding of one epoch (the same every epoch), bucketed and as if all ran at the
        longest length: fractions of the context positions computed that are padding."""
        lengths, rows = self._plan(0)
        computed = int(lengths.sum()) * self.batch_size
        real = int(self.fill.sum())
        unbucketed = -(-len(self.fill) // self.batch_size) * self.batch_size * self.lengths[-1]
        return {"steps_per_epoch": self.steps_per_epoch, "padding_fraction": 1 - real / computed,
                "padding_fraction_unbucketed": 1 - real / unbucketed,
                "compute_fraction_of_unbucketed": computed / unbucketed,
                "filler_rows": int((rows < 0).sum()),
                "steps_per_length": {int(n): int((lengths == n).sum()) for n in self.lengths}}


def train_step_sampler(sampler: Sampler, seed: int, batch_size: int, buckets: int = 1,
                       augmentation: Augmentation | None = None) -> StepSampler:
    """The training data of a run: `BucketedStepSampler` over `sampler.bucket_lengths(buckets)`
    when `buckets` > 1 and the sampler can be bucketed, else a plain `StepSampler`."""
    if buckets > 1 and hasattr(sampler, "bucket_lengths"):
        return BucketedStepSampler(sampler, seed, batch_size, sampler.bucket_lengths(buckets),
                                   augmentation)
    return StepSampler(sampler, seed, augmentation)


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
