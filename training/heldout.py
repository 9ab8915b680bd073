"""Held-out likelihood that does not depend on how a model was trained.

Every target of every held-out piece (BOS, t_1 .. t_n, EOS: n + 1 targets) is predicted once,
in blocks of `stride` targets: block k holds targets kS .. min((k + 1)S, n + 1) - 1 and is scored
from one example whose window ends at its last target, with as much context before it as the
model's own length allows. So a PerceiverS of query length N evaluated at stride N sees the
same windows as effective segmentation, whatever segmentation it trained with, and a causal LM
evaluated at the same stride scores exactly the same targets: the two report the same numbers
in the same units. Results are bits per token overall and by the target's position in its
piece (buckets with edges, e.g. 256, 512, 1024, 2048), because how well early positions are
predicted is what Effective Segmentation claims to change.

A task takes part by providing two methods (the LM and PerceiverS do):
  heldout_example(tokens, first_target, stop) -> Example with "positions" (int32, the target
      index of each scored slot in its piece, -1 for slots not scored) besides its inputs;
  token_losses(params, batch) -> float32 [B, T] cross-entropy in nats of every slot.
"""
from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from training.task import Batch, Example, Params, Pieces


@runtime_checkable
class HeldoutTask(Protocol):
    def heldout_example(self, tokens: np.ndarray, first_target: int, stop: int) -> Example: ...

    def token_losses(self, params: Params, batch: Batch) -> jax.Array: ...


def blocks(lengths: np.ndarray, stride: int) -> np.ndarray:
    """[K, 3] (piece, first target, stop) of every block of every piece (n + 1 targets each)."""
    if stride < 1:
        raise ValueError(f"stride={stride} must be at least 1")
    targets = np.asarray(lengths, np.int64) + 1
    per_piece = -(-targets // stride)
    piece = np.repeat(np.arange(len(targets)), per_piece)
    first = (np.arange(per_piece.sum()) - np.repeat(np.cumsum(per_piece) - per_piece, per_piece)) * stride
    return np.stack([piece, first, np.minimum(first + stride, targets[piece])], axis=1)


def chosen_pieces(pieces: Pieces, max_tokens: int) -> list[int]:
    """The held-out pieces scored: all of them (max_tokens 0), else the first pieces in their order
    while the tokens taken stay within max_tokens (at least one): the same subset for every run
    of the same data, whatever its model."""
    lengths = np.asarray(pieces.lengths(), np.int64)
    if not max_tokens:
        return list(range(len(lengths)))
    within = np.flatnonzero(np.cumsum(lengths + 1) <= max_tokens)
    return list(range(max(len(within), 1)))


def bucket_names(edges: tuple[int, ...]) -> list[str]:
    bounds = [0, *edges]
    return [f"{low}-{high}" for low, high in zip(bounds, bounds[1:])] + [f"{bounds[-1]}+"]


def evaluate(task: Any, params: Params, pieces: Pieces, stride: int, batch_size: int,
             edges: tuple[int, ...] = (), max_tokens: int = 0) -> dict:
    """Bits per token of every scored target, overall and by position bucket (see the module doc)."""
    if not isinstance(task, HeldoutTask):
        raise TypeError(f"{type(task).__name__} has no heldout_example/token_losses")
    if list(edges) != sorted(set(edges)) or (edges and edges[0] <= 0):
        raise ValueError(f"position bucket edges {edges} must be positive and increasing")
    chosen = chosen_pieces(pieces, max_tokens)
    table = blocks(np.asarray(pieces.lengths())[chosen], stride)
    losses = jax.jit(task.token_losses)
    edges_array = np.asarray(edges, np.int64)
    nats, counts = np.zeros(len(edges) + 1), np.zeros(len(edges) + 1, np.int64)
    filler = None
    for start in range(0, len(table), batch_size):
        rows = [task.heldout_example(pieces.piece(chosen[piece]), first, stop)
                for piece, first, stop in table[start:start + batch_size]]
        filler = filler or {key: np.zeros_like(value) - (key == "positions") for key, value in rows[0].items()}
        rows += [filler] * (batch_size - len(rows))  # one compiled shape; filler slots score nothing
        batch = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
        positions = batch.pop("positions")
        values = np.asarray(losses(params, batch), np.float64)
        scored = positions >= 0
        bucket = np.searchsorted(edges_array, positions[scored], side="right")
        nats += np.bincount(bucket, weights=values[scored], minlength=len(nats))
        counts += np.bincount(bucket, minlength=len(counts))
    expected = int(np.asarray(pieces.lengths())[chosen].sum() + len(chosen))
    if counts.sum() != expected:  # every target exactly once, or the numbers mean nothing
        raise AssertionError(f"scored {counts.sum()} targets, expected {expected}: heldout_example is wrong")
    per_bucket = {name: {"targets": int(count), "bits_per_token": float(total / count / math.log(2)) if count else None}
                  for name, count, total in zip(bucket_names(tuple(edges)), counts, nats)}
    return {"pieces": len(chosen), "targets": int(counts.sum()), "stride": stride,
            "bits_per_token": float(nats.sum() / counts.sum() / math.log(2)), "by_position": per_bucket}
