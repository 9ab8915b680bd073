"""Static block schedules: exact against the dense mask, packed without loss, flat in S."""
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from layers.schedule import (BlockGeometry, key_block_ranges, pack_lanes, query_block_ranges,
                             traced_key_block_range, traced_query_block_range)


@st.composite
def geometries(draw):
    T = draw(st.integers(1, 70))
    S = draw(st.integers(1, 90))
    causal = draw(st.booleans())
    return BlockGeometry(
        query_length=T, key_length=S,
        block_q=draw(st.sampled_from([1, 4, 8, 16])), block_k=draw(st.sampled_from([1, 4, 8, 32])),
        q_offset=draw(st.integers(0, S + 10)), causal=causal,
        scale_window=draw(st.one_of(st.none(), st.integers(1, 100))) if causal else None)


def _visible_blocks(g: BlockGeometry) -> np.ndarray:
    """[num_q_blocks, num_k_blocks]: does the block pair hold at least one visible key?"""
    # The definition, in numpy (masks.visible is checked against literals elsewhere).
    q_pos, k_pos = g.q_offset + np.arange(g.query_length)[:, None], np.arange(g.key_length)
    mask = np.ones((g.query_length, g.key_length), bool)
    if g.causal:
        mask &= k_pos <= q_pos
    if g.scale_window is not None:
        mask &= k_pos > q_pos - g.scale_window
    padded = np.zeros((g.num_q_blocks * g.block_q, g.num_k_blocks * g.block_k), bool)
    padded[:g.query_length, :g.key_length] = mask
    return padded.reshape(g.num_q_blocks, g.block_q, g.num_k_blocks, g.block_k).any(axis=(1, 3))


def _as_matrix(lo, hi, rows, cols):
    m = np.zeros((rows, cols), bool)
    for r in range(rows):
        if lo[r] <= hi[r]:  # a negative hi would slice from the end
            m[r, lo[r]:hi[r] + 1] = True
    return m


@settings(max_examples=150, deadline=None)
@given(geometries())
def test_ranges_are_exactly_the_visible_blocks(g):
    visible = _visible_blocks(g)
    lo, hi = key_block_ranges(g)
    np.testing.assert_array_equal(_as_matrix(lo, hi, g.num_q_blocks, g.num_k_blocks), visible)
    lo, hi = query_block_ranges(g)
    np.testing.assert_array_equal(_as_matrix(lo, hi, g.num_k_blocks, g.num_q_blocks), visible.T)


@settings(max_examples=25, deadline=None)
@given(geometries())
def test_kernel_side_ranges_cover_the_static_ones(g):
    # The Pallas kernels compute ranges from program ids; they must never miss a visible block
    # and must equal the static ranges wherever those are non-empty.
    for ranges, traced, n in ((key_block_ranges, traced_key_block_range, g.num_q_blocks),
                              (query_block_ranges, traced_query_block_range, g.num_k_blocks)):
        lo, hi = ranges(g)
        for row in range(n):
            t_lo, t_end = (int(x) for x in traced(jnp.int32(row), g))
            if lo[row] <= hi[row]:
                assert (t_lo, t_end) == (lo[row], hi[row] + 1), (row, g)
            else:
                assert t_end <= t_lo or (t_lo, t_end) == (lo[row], hi[row] + 1), (row, g)


@settings(max_examples=100, deadline=None)
@given(geometries())
def test_lanes_visit_each_visible_pair_once(g):
    lo, hi = key_block_ranges(g)
    lanes = pack_lanes(lo, hi)
    pairs = sorted(zip(lanes.rows[lanes.valid].tolist(), lanes.cols[lanes.valid].tolist()))
    expected = sorted((r, c) for r in range(len(lo)) for c in range(lo[r], hi[r] + 1))
    assert pairs == expected
    written = lanes.write[lanes.write < lanes.num_rows]
    assert sorted(written.tolist()) == sorted({r for r, _ in expected})  # each row once
    # A row's steps are contiguous in one lane, starting at its `first` flag.
    assert lanes.first.sum() == len(written)


def test_square_causal_pairs_long_and_short_rows():
    g = BlockGeometry(64, 64, 8, 8, 0, True, None)
    lanes = pack_lanes(*key_block_ranges(g))
    # Rows of 1..8 blocks pack first-fit into lanes of 8: (8), (7, 1), (6, 2), (5, 3), (4):
    # 40 block steps for the 36 visible blocks, where one row per lane would take 64.
    assert lanes.rows.shape == (8, 5)
    assert lanes.valid.sum() == 36


def test_window_schedule_is_flat_in_key_length():
    # PerceiverS: T = 1024 latents at the end of S keys, scale window W = 1024.
    work = []
    for S in (2048, 8192, 32768):
        g = BlockGeometry(1024, S, 256, 256, S - 1024, True, 1024)
        lanes = pack_lanes(*key_block_ranges(g))
        work.append(lanes.rows.size)
    assert work[0] == work[1] == work[2] == 4 * 5


def test_key_side_lanes_are_capped_for_few_queries():
    # Perceiver AR: 4 query blocks against 128 key blocks. The dk/dv pass has 128 short rows;
    # capped at 4 lanes, a step holds 4 block pairs (T x block_k logits), not 128.
    g = BlockGeometry(1024, 32768, 256, 256, 32768 - 1024, True, None)
    lanes = pack_lanes(*query_block_ranges(g), max_lanes=g.num_q_blocks)
    assert lanes.rows.shape[1] <= 5
    assert lanes.valid.sum() == sum(hi - lo + 1 for lo, hi in zip(*query_block_ranges(g)))
