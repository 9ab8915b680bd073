"""Blockwise (flash-style) attention in pure JAX, with a static block schedule.

Forward: online softmax over key blocks, rows = query blocks. Backward (`custom_vjp`): one
pass over key blocks that recomputes each block's probabilities from the saved log-sum-exp and
accumulates dk, dv per key block and dq into a [T]-sized buffer. Both passes scan over a
`LaneSchedule`, so they touch only block pairs holding a visible key, and they hold
O(T x block_k) logits at a time, never T x S.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from layers import masks
from layers.schedule import (BlockGeometry, LaneSchedule, key_block_ranges, pack_lanes,
                             query_block_ranges)


@dataclasses.dataclass(frozen=True)
class _Config:
    geometry: BlockGeometry
    scale: float


def blockwise_attention(
    q_BxTxHxD: jax.Array,
    k_BxSxHxD: jax.Array,
    v_BxSxHxD: jax.Array,
    kv_mask_BxS: jax.Array | None,
    *,
    q_offset: int,
    causal: bool,
    scale_window: int | None,
    scale: float,
    block_q: int = 256,
    block_k: int = 256,
) -> jax.Array:
    """Masked attention by key blocks; same values and gradients as the dense reference.

    Args:
      block_q: query rows per block (clipped to T); lengths are padded to whole blocks.
      block_k: keys per block (clipped to S); memory is O(T x block_k).
    """
    B, T, H, D = q_BxTxHxD.shape
    S = k_BxSxHxD.shape[1]
    block_q, block_k = min(block_q, T), min(block_k, S)
    g = BlockGeometry(T, S, block_q, block_k, q_offset, causal, scale_window)
    if kv_mask_BxS is None:
        kv_mask_BxS = jnp.ones((B, S), bool)
    pad_q, pad_k = g.num_q_blocks * block_q - T, g.num_k_blocks * block_k - S
    q = jnp.pad(q_BxTxHxD, ((0, 0), (0, pad_q), (0, 0), (0, 0)))
    k = jnp.pad(k_BxSxHxD, ((0, 0), (0, pad_k), (0, 0), (0, 0)))
    v = jnp.pad(v_BxSxHxD, ((0, 0), (0, pad_k), (0, 0), (0, 0)))
    kv_mask = jnp.pad(kv_mask_BxS.astype(bool), ((0, 0), (0, pad_k)))  # padded keys: invisible
    out, _ = _flash(q, k, v, kv_mask, _Config(g, float(scale)))
    return out[:, :T]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q, k, v, kv_mask, cfg: _Config):
    return _forward(q, k, v, kv_mask, cfg)


def _to_blocks(mask_BxN: jax.Array, block: int) -> jax.Array:
    """[B, N] -> [N / block, B, block]: block index leading, for cheap gathers."""
    B, N = mask_BxN.shape
    return jnp.swapaxes(mask_BxN.reshape(B, N // block, block), 0, 1)


def _to_head_blocks(x_BxNxHxD: jax.Array, block: int) -> jax.Array:
    """[B, N, H, D] -> [N / block, B, H, block, D]: the dots' batch dims (lane, B, H) lead."""
    B, N, H, D = x_BxNxHxD.shape
    return jnp.transpose(x_BxNxHxD.reshape(B, N // block, block, H, D), (1, 0, 3, 2, 4))


def _from_head_blocks(x_RxBxHxNxD: jax.Array) -> jax.Array:
    R, B, H, N, D = x_RxBxHxNxD.shape
    return jnp.transpose(x_RxBxHxNxD, (1, 0, 3, 2, 4)).reshape(B, R * N, H, D)


def _dot(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _masked_logits(q_LxBxHxQxD, k_LxBxHxKxD, q_rows_L, k_cols_L, kv_mask_LxBxK, valid_L, cfg):
    """Scaled logits [L, B, H, Q, K] in float32, -inf where the key is hidden."""
    g = cfg.geometry
    logits = _dot("lbhqd,lbhkd->lbhqk", q_LxBxHxQxD, k_LxBxHxKxD) * cfg.scale
    q_pos_LxQ = g.q_offset + q_rows_L[:, None] * g.block_q + jnp.arange(g.block_q)
    k_pos_LxK = k_cols_L[:, None] * g.block_k + jnp.arange(g.block_k)
    seen_LxQxK = masks.visible(q_pos_LxQ[:, :, None], k_pos_LxK[:, None, :],
                               causal=g.causal, scale_window=g.scale_window)
    seen = (seen_LxQxK[:, None, None] & kv_mask_LxBxK[:, :, None, None, :]
            & valid_L[:, None, None, None, None])
    return jnp.where(seen, logits, -jnp.inf)


def _lane_scan(lanes: LaneSchedule, init_state, step, finalize, buffers, shared=None):
    """Scan `step` over the lanes' block pairs; returns (row buffers, shared accumulator).

    Each row's lane state is reset at its first pair and `finalize(state)` is written to the
    row's buffer after its last pair. `shared` is carried whole (the dq accumulator).
    """
    xs = tuple(jnp.asarray(a) for a in (lanes.rows, lanes.cols, lanes.valid, lanes.first,
                                         lanes.write))

    def body(carry, x):
        state, bufs, shared = carry
        rows_L, cols_L, valid_L, first_L, write_L = x
        state = jax.tree.map(
            lambda init, s: jnp.where(first_L.reshape((-1,) + (1,) * (s.ndim - 1)), init, s),
            init_state, state)
        state, shared = step(state, shared, rows_L, cols_L, valid_L)
        bufs = jax.tree.map(lambda b, f: b.at[write_L].set(f.astype(b.dtype)), bufs,
                            finalize(state))
        return (state, bufs, shared), None

    (_, bufs, shared), _ = jax.lax.scan(body, (init_state, buffers, shared), xs)
    return jax.tree.map(lambda b: b[:lanes.num_rows], bufs), shared  # drop the dummy row


def _forward(q, k, v, kv_mask, cfg: _Config):
    g = cfg.geometry
    lanes = pack_lanes(*key_block_ranges(g))
    B, _, H, D = q.shape
    L = lanes.rows.shape[1]
    q_blocks, k_blocks = _to_head_blocks(q, g.block_q), _to_head_blocks(k, g.block_k)
    v_blocks, mask_blocks = _to_head_blocks(v, g.block_k), _to_blocks(kv_mask, g.block_k)

    def step(state, shared, rows, cols, valid):
        acc, m_prev, l_prev = state
        logits = _masked_logits(q_blocks[rows], k_blocks[cols], rows, cols, mask_blocks[cols],
                                valid, cfg)
        m_next = jnp.maximum(m_prev, logits.max(-1))
        m_safe = jnp.where(m_next == -jnp.inf, 0.0, m_next)  # a row with nothing seen yet
        p = jnp.exp(logits - m_safe[..., None])
        correction = jnp.exp(m_prev - m_safe)
        pv = _dot("lbhqk,lbhkd->lbhqd", p.astype(v.dtype), v_blocks[cols])
        return (acc * correction[..., None] + pv, m_next,
                l_prev * correction + p.sum(-1)), shared

    def finalize(state):
        acc, m, l = state
        empty = l == 0.0  # fully masked query row: output zeros, lse +inf (so p = 0 in bwd)
        out = acc / jnp.where(empty, 1.0, l)[..., None]
        return out, jnp.where(empty, jnp.inf, m + jnp.log(jnp.where(empty, 1.0, l)))

    rows_shape = (g.num_q_blocks + 1, B, H, g.block_q)
    init = (jnp.zeros((L, B, H, g.block_q, D), jnp.float32),
            jnp.full((L, B, H, g.block_q), -jnp.inf, jnp.float32),
            jnp.zeros((L, B, H, g.block_q), jnp.float32))
    buffers = (jnp.zeros(rows_shape + (D,), q.dtype), jnp.full(rows_shape, jnp.inf, jnp.float32))
    (out_RxBxHxQxD, lse_RxBxHxQ), _ = _lane_scan(lanes, init, step, finalize, buffers)
    return _from_head_blocks(out_RxBxHxQxD), lse_RxBxHxQ


def _flash_fwd(q, k, v, kv_mask, cfg):
    out, lse = _forward(q, k, v, kv_mask, cfg)
    return (out, lse), (q, k, v, kv_mask, out, lse)


def _flash_bwd(cfg: _Config, residuals, cotangents):
    q, k, v, kv_mask, out, lse_RxBxHxQ = residuals
    d_out, _ = cotangents  # lse is an auxiliary output; its cotangent is ignored
    g = cfg.geometry
    B, _, H, D = q.shape
    # delta_t = sum_d dO * O: the softmax Jacobian's row term.
    delta_BxHxT = jnp.einsum("bthd,bthd->bht", d_out.astype(jnp.float32), out.astype(jnp.float32))
    q_blocks, do_blocks = _to_head_blocks(q, g.block_q), _to_head_blocks(d_out.astype(q.dtype),
                                                                          g.block_q)
    k_blocks, v_blocks = _to_head_blocks(k, g.block_k), _to_head_blocks(v, g.block_k)
    mask_blocks = _to_blocks(kv_mask, g.block_k)
    delta_blocks = jnp.moveaxis(delta_BxHxT.reshape(B, H, g.num_q_blocks, g.block_q), 2, 0)
    # One pass over key blocks (rows) and the query blocks that see them (cols): dk, dv are
    # lane state; dq is scatter-added into a buffer, so dS is computed once per block pair.
    # As many lanes as query blocks keeps each step's logits at O(T x block_k), not S x block_q.
    lanes = pack_lanes(*query_block_ranges(g), max_lanes=g.num_q_blocks)
    L = lanes.rows.shape[1]

    def step(state, dq_buf, rows, cols, valid):
        dk, dv = state
        q_blk, do_blk, k_blk = q_blocks[cols], do_blocks[cols], k_blocks[rows]
        logits = _masked_logits(q_blk, k_blk, cols, rows, mask_blocks[rows], valid, cfg)
        p = jnp.exp(logits - lse_RxBxHxQ[cols][..., None])
        dp = _dot("lbhqd,lbhkd->lbhqk", do_blk, v_blocks[rows])
        ds = p * (dp - delta_blocks[cols][..., None])
        dv = dv + _dot("lbhqk,lbhqd->lbhkd", p.astype(do_blk.dtype), do_blk)
        dk = dk + _dot("lbhqk,lbhqd->lbhkd", ds.astype(q.dtype), q_blk) * cfg.scale
        dq_buf = dq_buf.at[cols].add(_dot("lbhqk,lbhkd->lbhqd", ds.astype(k.dtype), k_blk)
                                     * cfg.scale)
        return (dk, dv), dq_buf

    zeros_state = jnp.zeros((L, B, H, g.block_k, D), jnp.float32)
    zeros_buf = jnp.zeros((g.num_k_blocks + 1, B, H, g.block_k, D), jnp.float32)
    (dk, dv), dq = _lane_scan(lanes, (zeros_state, zeros_state), step, lambda s: s,
                              (zeros_buf, zeros_buf),
                              shared=jnp.zeros((g.num_q_blocks, B, H, g.block_q, D), jnp.float32))
    return (_from_head_blocks(dq).astype(q.dtype), _from_head_blocks(dk).astype(k.dtype),
            _from_head_blocks(dv).astype(v.dtype), None)


_flash.defvjp(_flash_fwd, _flash_bwd)
