"""Static block schedules for the flash-style attention implementations.

A block schedule says, for each query block, which key blocks hold at least one visible key
under the causal-with-offset and scale-window masks (and the reverse, for the key-side backward
pass). It depends only on static Python ints, so it is built once at trace time. Key padding
is data, not structure: it is masked inside the blocks and never changes the schedule.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@dataclasses.dataclass(frozen=True)
class BlockGeometry:
    """Static shape of a blocked attention problem (real, unpadded lengths)."""

    query_length: int
    key_length: int
    block_q: int
    block_k: int
    q_offset: int
    causal: bool
    scale_window: int | None

    @property
    def num_q_blocks(self) -> int:
        return -(-self.query_length // self.block_q)

    @property
    def num_k_blocks(self) -> int:
        return -(-self.key_length // self.block_k)


def key_block_ranges(g: BlockGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive [lo, hi] key-block range per query block; empty where lo > hi."""
    i = np.arange(g.num_q_blocks)
    first_q = g.q_offset + i * g.block_q
    last_q = g.q_offset + np.minimum((i + 1) * g.block_q, g.query_length) - 1
    hi = np.full_like(i, g.num_k_blocks - 1)
    if g.causal:
        hi = np.minimum(hi, np.floor_divide(last_q, g.block_k))  # floor: negative means empty
    lo = np.zeros_like(i)
    if g.scale_window is not None:
        first_seen_k = first_q - g.scale_window + 1
        lo = np.maximum(0, first_seen_k) // g.block_k
        hi = np.where(first_seen_k > g.key_length - 1, -1, hi)  # window past the real keys
    return lo, hi


def query_block_ranges(g: BlockGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive [lo, hi] query-block range per key block; empty where lo > hi."""
    j = np.arange(g.num_k_blocks)
    first_k = j * g.block_k
    last_k = np.minimum((j + 1) * g.block_k, g.key_length) - 1
    lo = np.zeros_like(j)
    hi = np.full_like(j, g.num_q_blocks - 1)
    if g.causal:
        first_seeing_q = first_k - g.q_offset
        lo = np.maximum(0, first_seeing_q) // g.block_q
        hi = np.where(first_seeing_q > g.query_length - 1, -1, hi)  # seen by padding only
    if g.scale_window is not None:
        # The last query that still sees the block's last key sits W - 1 positions after it.
        last_seeing_q = last_k + g.scale_window - 1 - g.q_offset
        hi = np.minimum(hi, np.floor_divide(last_seeing_q, g.block_q))
    return lo, hi


def traced_key_block_range(i: jax.Array, g: BlockGeometry) -> tuple[jax.Array, jax.Array]:
    """`key_block_ranges` for one traced query block (kernel side, half-open [lo, end)).

    Only non-negative integer division is used: Triton has no floor division.
    """
    first_q = g.q_offset + i * g.block_q
    last_q = g.q_offset + lax.min((i + 1) * g.block_q, g.query_length) - 1
    end = g.num_k_blocks
    if g.causal:
        end = lax.min(end, lax.div(last_q, g.block_k) + 1)  # last_q >= 0 as q_offset >= 0
    lo = 0
    if g.scale_window is not None:
        first_seen_k = first_q - g.scale_window + 1
        lo = lax.div(lax.max(0, first_seen_k), g.block_k)
        end = jnp.where(first_seen_k > g.key_length - 1, 0, end)
    return lo, end


def traced_query_block_range(j: jax.Array, g: BlockGeometry) -> tuple[jax.Array, jax.Array]:
    """`query_block_ranges` for one traced key block (kernel side, half-open [lo, end))."""
    first_k = j * g.block_k
    last_k = lax.min((j + 1) * g.block_k, g.key_length) - 1
    lo, end = 0, g.num_q_blocks
    if g.causal:
        first_seeing_q = first_k - g.q_offset
        lo = lax.div(lax.max(0, first_seeing_q), g.block_q)
        end = jnp.where(first_seeing_q > g.query_length - 1, 0, end)
    if g.scale_window is not None:
        last_seeing_q = last_k + g.scale_window - 1 - g.q_offset
        # A negative numerator means no query sees the block; clamp keeps the loop empty.
        end = lax.min(end, jnp.where(last_seeing_q >= 0,
                                     lax.div(lax.max(last_seeing_q, 0), g.block_q) + 1, 0))
    return lo, end


@dataclasses.dataclass(frozen=True)
class LaneSchedule:
    """Rows (blocks carrying an accumulator) packed into lanes that run in lockstep.

    Each lane visits its rows one after another; at step s lane p works on block pair
    (rows[s, p], cols[s, p]). Rows are never split across lanes, so every accumulator is
    reset once (`first`) and written once (`write`, which is `num_rows`, a dummy, elsewhere).
    """

    rows: np.ndarray   # [steps, lanes] int32
    cols: np.ndarray   # [steps, lanes] int32
    valid: np.ndarray  # [steps, lanes] bool, False on the padding steps at a lane's end
    first: np.ndarray  # [steps, lanes] bool
    write: np.ndarray  # [steps, lanes] int32
    num_rows: int


def pack_lanes(lo: np.ndarray, hi: np.ndarray, max_lanes: int | None = None) -> LaneSchedule:
    """Pack rows with column ranges [lo, hi] into lanes by first-fit decreasing.

    Lane capacity is the longest row, so a balanced schedule (a scale window, Perceiver AR
    latents) keeps one row per lane and a triangular one (square causal) pairs long rows with
    short ones: total work stays within one row's length of the visible block count.

    Args:
      max_lanes: raise the capacity so that about this many lanes suffice; bounds the work
        (and memory) per step when there are many short rows, as key blocks for few queries.
    """
    counts = np.maximum(hi - lo + 1, 0)
    capacity = max(int(counts.max(initial=0)), 1)
    if max_lanes is not None:
        capacity = max(capacity, -(-int(counts.sum()) // max_lanes))
    lanes: list[list[int]] = []
    loads: list[int] = []
    for row in np.argsort(-counts, kind="stable"):
        if counts[row] == 0:
            continue  # nothing visible: its output stays zero
        fit = next((p for p, load in enumerate(loads) if load + counts[row] <= capacity), None)
        if fit is None:
            lanes.append([])
            loads.append(0)
            fit = len(lanes) - 1
        lanes[fit].append(int(row))
        loads[fit] += int(counts[row])
    num_lanes, num_rows = max(len(lanes), 1), len(lo)
    shape = (max(loads, default=1), num_lanes)
    rows, cols = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    valid, first = np.zeros(shape, bool), np.zeros(shape, bool)
    write = np.full(shape, num_rows, np.int32)
    for p, lane in enumerate(lanes):
        s = 0
        for row in lane:
            n = int(counts[row])
            rows[s:s + n, p], cols[s:s + n, p] = row, np.arange(lo[row], lo[row] + n)
            valid[s:s + n, p], first[s, p], write[s + n - 1, p] = True, True, row
            s += n
        rows[s:, p], cols[s:, p] = rows[s - 1, p], cols[s - 1, p]  # padding: masked out
    return LaneSchedule(rows, cols, valid, first, write, num_rows)
