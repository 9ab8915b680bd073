"""Segmentations of tokenized pieces into Perceiver AR examples, as `training.Sampler`s.

A piece of n tokens is read as the sequence BOS, t_1 .. t_n, EOS: input position p (0..n)
predicts target p, the next token, so a piece has n + 1 targets. Every example is an input
window `start .. end - 1` of at most L positions (L = the context length; `start` is
max(0, end - L) unless said otherwise), left padded to L, whose last N positions (N = the
query length) are the latents; it carries
the N targets of the latents and a weight per target (1 = counted, 0 = padding or a target
counted in another example). Coverage, for a piece with n + 1 = P targets:

  effective    examples (piece, k) for k < ceil(P / N); end = min((k + 1) N, P); weighted
               targets kN .. end - 1. Every target exactly once per epoch; contexts grow
               N, 2N, ... up to L. (PerceiverS.)
  fixed        examples (piece, c) for c < ceil(P / L): the chunk of inputs cL .. min((c + 1) L,
               P) - 1 alone (no context from earlier chunks); weighted targets: the chunk's
               last min(N, chunk length). Targets cL .. cL + L - N - 1 of every full chunk
               are never trained on.
  random_crop  the same examples (piece, k) as effective, so an epoch has the same size, but
               `end` drawn uniformly from min(N, P) .. P by the example's rng; weighted targets
               the last min(N, end). Each target is counted in expectation, not exactly once.

Length buckets (`bucket_lengths`): an effective or fixed example's real context (`end - start`,
the rest of its L positions is left padding) is known from the table alone, so the harness can
batch examples of similar context together and run each batch at a shorter static length
(`crop`), e.g. L/8, L/4, L/2, L (`training.data.BucketedStepSampler`). Cropping drops only
left padding, so the cropped example is the same example. random_crop draws its end per
position, so all its examples stay in the L bucket.
"""
from __future__ import annotations

import numpy as np

# As training.task.Example; `pieces` arguments are training.task.Pieces (duck-typed, so that
# the model package imports only layers and pertok).
Example = dict[str, np.ndarray]
SEGMENTATIONS = ("effective", "fixed", "random_crop")


def sequence_slice(tokens: np.ndarray, start: int, stop: int, bos_id: int,
                   eos_id: int) -> np.ndarray:
    """Positions start .. stop - 1 of BOS, tokens, EOS, without copying the whole piece."""
    n = len(tokens)
    body = np.asarray(tokens[max(start - 1, 0): max(min(stop - 1, n), 0)], np.int32)
    head = [bos_id] if start <= 0 < stop else []
    tail = [eos_id] if start <= n + 1 < stop else []
    return np.concatenate([np.asarray(head, np.int32), body, np.asarray(tail, np.int32)])


def window_example(tokens: np.ndarray, start: int, end: int, first_target: int,
                   context_length: int, query_length: int, pad_id: int, bos_id: int,
                   eos_id: int) -> Example:
    """The example of inputs start .. end - 1 whose targets from `first_target` on count.

    Returns: inputs int32 [L] (left padded), targets int32 [N], weights float32 [N].
    """
    L, N = context_length, query_length
    if not 0 <= start < end <= start + L:
        raise ValueError(f"window {start}..{end} must be non-empty and at most {L} long")
    window = sequence_slice(tokens, start, end + 1, bos_id, eos_id)  # inputs and one more target
    inputs = np.full(L, pad_id, np.int32)
    inputs[L - (end - start):] = window[:-1]
    targets = np.full(N, pad_id, np.int32)
    real = min(N, end - start)
    targets[N - real:] = window[len(window) - real:]
    positions = end - N + np.arange(N)  # target position of each latent
    weights = ((positions >= first_target) & (positions >= start)).astype(np.float32)
    return {"inputs": inputs, "targets": targets, "weights": weights}


class _Segmentation:
    """Shared state: the pieces, the shapes and ids, the example table (piece, k)."""

    token_keys = ("inputs", "targets")

    def __init__(self, pieces, context_length: int, query_length: int, pad_id: int,
                 bos_id: int, eos_id: int):
        if not 0 < query_length <= context_length:
            raise ValueError(f"query_length={query_length} must lie in 1..context_length="
                             f"{context_length}")
        self.pieces, self.context_length, self.query_length = pieces, context_length, query_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.num_targets = pieces.lengths() + 1
        per_piece = -(-self.num_targets // self.stride)
        self.table = np.stack([np.repeat(np.arange(len(pieces)), per_piece),
                               _ranges(per_piece)], axis=1).astype(np.int64)

    @property
    def stride(self) -> int:
        """Targets per example slot: N (effective, random_crop) or L (fixed)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.table)

    def context_lengths(self) -> np.ndarray:
        """Real (unpadded) input positions of every example, int64 [len(self)]; never more
        than L. Read from the table, no tokens."""
        return np.full(len(self.table), self.context_length, np.int64)

    def crop(self, example: Example, length: int) -> Example:
        """The example at context length `length` (its last positions: only padding goes)."""
        if not self.query_length <= length <= self.context_length:
            raise ValueError(f"bucket length {length} must lie in query_length="
                             f"{self.query_length} .. context_length={self.context_length}")
        return dict(example, inputs=example["inputs"][..., -length:])

    def bucket_lengths(self, buckets: int) -> tuple[int, ...]:
        """The context lengths of `buckets` length buckets for these examples (L/2^(b-1) .. L)."""
        return bucket_lengths(self.context_length, self.query_length, buckets)

    def without_targets(self, example: Example) -> Example:
        """The example counting no target: a filler row that tops up a batch."""
        return dict(example, weights=np.zeros_like(example["weights"]))

    def _example(self, piece: int, end: int, first_target: int,
                 start: int | None = None) -> Example:
        start = max(end - self.context_length, 0) if start is None else start
        return window_example(self.pieces.piece(piece), start, end, first_target,
                              self.context_length, self.query_length, self.pad_id, self.bos_id,
                              self.eos_id)


class EffectiveSampler(_Segmentation):
    """PerceiverS effective segmentation: every target exactly once per epoch."""

    @property
    def stride(self) -> int:
        return self.query_length

    def context_lengths(self) -> np.ndarray:
        piece, k = self.table[:, 0], self.table[:, 1]
        end = np.minimum((k + 1) * self.query_length, self.num_targets[piece])
        return np.minimum(end, self.context_length)

    def example(self, index: int, rng: np.random.Generator) -> Example:
        del rng  # segments are fixed; augmentation is the harness's
        piece, k = (int(v) for v in self.table[index])
        first = k * self.query_length
        end = min(first + self.query_length, int(self.num_targets[piece]))
        return self._example(piece, end, first)


class FixedSampler(_Segmentation):
    """Consecutive L-long chunks, each trained on its last N targets only."""

    @property
    def stride(self) -> int:
        return self.context_length

    def context_lengths(self) -> np.ndarray:
        piece, c = self.table[:, 0], self.table[:, 1]
        start = c * self.context_length
        return np.minimum(start + self.context_length, self.num_targets[piece]) - start

    def example(self, index: int, rng: np.random.Generator) -> Example:
        del rng
        piece, c = (int(v) for v in self.table[index])
        start = c * self.context_length
        end = min(start + self.context_length, int(self.num_targets[piece]))
        return self._example(piece, end, first_target=start, start=start)


class RandomCropSampler(_Segmentation):
    """Perceiver AR: a random end point, context up to L, at least N targets (or the piece)."""

    @property
    def stride(self) -> int:
        return self.query_length

    def example(self, index: int, rng: np.random.Generator) -> Example:
        piece = int(self.table[index, 0])
        total = int(self.num_targets[piece])
        end = int(rng.integers(min(self.query_length, total), total + 1))
        return self._example(piece, end, first_target=0)


def make_sampler(segmentation: str, pieces, context_length: int, query_length: int,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> _Segmentation:
    """The sampler named `segmentation` ("effective", "fixed" or "random_crop")."""
    classes = {"effective": EffectiveSampler, "fixed": FixedSampler,
               "random_crop": RandomCropSampler}
    if segmentation not in classes:
        raise ValueError(f"data.segmentation={segmentation!r}; expected one of {SEGMENTATIONS}")
    return classes[segmentation](pieces, context_length, query_length, pad_id, bos_id, eos_id)


def bucket_lengths(context_length: int, query_length: int, buckets: int) -> tuple[int, ...]:
    """Context lengths of `buckets` halvings of L, ascending, none below N: 4 -> L/8 .. L."""
    if buckets < 1:
        raise ValueError(f"data.buckets={buckets} must be >= 1 (1 = every example at L)")
    return tuple(sorted({max(context_length >> halvings, query_length)
                         for halvings in range(buckets)}))


def _ranges(counts: np.ndarray) -> np.ndarray:
    """0 .. c - 1 for every count c, concatenated."""
    if len(counts) == 0:
        return np.zeros(0, np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
