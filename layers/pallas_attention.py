"""Pallas flash attention with the query offset, the scale window and key padding built in.

Three kernels under one `custom_vjp`: the forward pass (output and log-sum-exp), dq (one
program per query block) and dk/dv (one program per key block). Each program loops only over
the blocks its `BlockGeometry` range says hold a visible key. The kernels use only generic
Pallas (ref slices, `lax.dot_general`), so the same code lowers to Triton on GPU and runs with
`interpret=True` on CPU, which is how the tests exercise it. Which of the two runs is decided by
the platform the program is lowered for (`layers.platforms`), not by the host; on TPU these
Triton kernels are refused with one clear error (TPU attention is `layers.splash`).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from layers import masks
from layers.platforms import by_platform, unavailable
from layers.schedule import BlockGeometry, traced_key_block_range, traced_query_block_range

_NT = (((1,), (1,)), ((), ()))  # a @ b.T
_TN = (((0,), (0,)), ((), ()))  # a.T @ b


@dataclasses.dataclass(frozen=True)
class _Config:
    geometry: BlockGeometry
    scale: float
    interpret: bool
    num_warps: int = 4
    num_stages: int = 2


def pallas_attention(
    q_BxTxHxD: jax.Array,
    k_BxSxHxD: jax.Array,
    v_BxSxHxD: jax.Array,
    kv_mask_BxS: jax.Array | None,
    *,
    q_offset: int,
    causal: bool,
    scale_window: int | None,
    scale: float,
    block_q: int = 64,
    block_k: int = 64,
    interpret: bool | None = None,
) -> jax.Array:
    """Flash attention as Pallas kernels; same values and gradients as the dense reference.

    Args:
      block_q, block_k: tile sizes, powers of two (clipped to the padded lengths).
      interpret: True runs the Pallas interpreter on any platform; None (default): Triton
        when lowered for GPU, the interpreter on CPU, and an error on TPU.
    """
    B, T, H, D = q_BxTxHxD.shape
    S = k_BxSxHxD.shape[1]
    # Triton tiles are powers of two: zero-pad the head dim (zeros change neither the logits
    # nor, once sliced off, the output) and the lengths to whole blocks.
    head_dim = max(16, pl.next_power_of_2(D))
    block_q = min(block_q, max(16, pl.next_power_of_2(T)))  # tl.dot needs tiles >= 16
    block_k = min(block_k, max(16, pl.next_power_of_2(S)))
    g = BlockGeometry(T, S, block_q, block_k, q_offset, causal, scale_window)
    pad_q, pad_k = g.num_q_blocks * block_q - T, g.num_k_blocks * block_k - S
    pad = lambda x, n: jnp.pad(x, ((0, 0), (0, n), (0, 0), (0, head_dim - D)))  # noqa: E731
    if kv_mask_BxS is None:
        kv_mask_BxS = jnp.ones((B, S), bool)
    kv_mask = jnp.pad(kv_mask_BxS.astype(jnp.int32), ((0, 0), (0, pad_k)))  # padded keys: 0
    cfg = functools.partial(_Config, g, float(scale), num_warps=4 if head_dim <= 64 else 8)
    args = (pad(q_BxTxHxD, pad_q), pad(k_BxSxHxD, pad_k), pad(v_BxSxHxD, pad_k), kv_mask)
    run = lambda interpret_: functools.partial(_run, cfg=cfg(interpret=interpret_))  # noqa: E731
    if interpret is None:
        out = by_platform(*args, cpu=run(True), cuda=run(False), tpu=_refuse_on_tpu,
                          default=run(False))
    else:
        out = run(bool(interpret))(*args)
    return out[:, :T, :, :D]


def _run(q, k, v, kv_mask, *, cfg: _Config) -> jax.Array:
    return _flash(q, k, v, kv_mask, cfg)


def _refuse_on_tpu(q: jax.Array, *_) -> jax.Array:
    return unavailable(q, "impl='pallas' is the Triton (GPU) kernel and does not run on TPU; "
                       "use impl='splash' or impl='auto' there")


def _call(kernel, cfg: _Config, grid, in_specs, out_specs, out_shape, name):
    params = {}
    if not cfg.interpret:
        from jax.experimental.pallas import triton as plgpu  # GPU only
        params["compiler_params"] = plgpu.CompilerParams(
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return pl.pallas_call(functools.partial(kernel, cfg=cfg), grid=grid, in_specs=in_specs,
                          out_specs=out_specs, out_shape=out_shape, interpret=cfg.interpret,
                          name=name, **params)


def _block_mask(q_block, k_block, kv_ok_K, g: BlockGeometry):
    """[Q, K] visibility of one block pair, from block indices and the key-padding row."""
    q_pos = g.q_offset + q_block * g.block_q + jnp.arange(g.block_q)
    k_pos = k_block * g.block_k + jnp.arange(g.block_k)
    seen = masks.visible(q_pos[:, None], k_pos[None, :], causal=g.causal,
                         scale_window=g.scale_window)
    return seen & (kv_ok_K[None, :] != 0)


def _forward_kernel(q_ref, k_ref, v_ref, mask_ref, o_ref, lse_ref, *, cfg: _Config):
    g = cfg.geometry
    i = pl.program_id(0)
    q = q_ref[...]

    def body(j, carry):
        acc, m_prev, l_prev = carry
        keys = pl.ds(j * g.block_k, g.block_k)
        v = v_ref[keys, :]
        logits = lax.dot_general(q, k_ref[keys, :], _NT,
                                 preferred_element_type=jnp.float32) * cfg.scale
        logits = jnp.where(_block_mask(i, j, mask_ref[keys], g), logits, -jnp.inf)
        m_next = jnp.maximum(m_prev, jnp.max(logits, axis=1))
        m_safe = jnp.where(m_next == -jnp.inf, 0.0, m_next)  # nothing seen yet in this row
        p = jnp.exp(logits - m_safe[:, None])
        correction = jnp.exp(m_prev - m_safe)
        pv = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
        return acc * correction[:, None] + pv, m_next, l_prev * correction + jnp.sum(p, axis=1)

    init = (jnp.zeros(q.shape, jnp.float32), jnp.full((g.block_q,), -jnp.inf, jnp.float32),
            jnp.zeros((g.block_q,), jnp.float32))
    lo, end = traced_key_block_range(i, g)
    acc, m, l = lax.fori_loop(lo, end, body, init)
    empty = l == 0.0  # fully masked query row: zeros out, lse +inf so that p = 0 backward
    o_ref[...] = (acc / jnp.where(empty, 1.0, l)[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, jnp.inf, m + jnp.log(jnp.where(empty, 1.0, l)))


def _forward(q, k, v, kv_mask, cfg: _Config):
    g = cfg.geometry
    B, Tp, H, D = q.shape
    Sp = k.shape[1]
    q_spec = pl.BlockSpec((None, g.block_q, None, D), lambda i, b, h: (b, i, h, 0))
    kv_spec = pl.BlockSpec((None, Sp, None, D), lambda i, b, h: (b, 0, h, 0))
    mask_spec = pl.BlockSpec((None, Sp), lambda i, b, h: (b, 0))
    lse_spec = pl.BlockSpec((None, None, g.block_q), lambda i, b, h: (b, h, i))
    out_shape = (jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((B, H, Tp), jnp.float32))
    return _call(_forward_kernel, cfg, (g.num_q_blocks, B, H),
                 [q_spec, kv_spec, kv_spec, mask_spec], (q_spec, lse_spec), out_shape,
                 "attention_forward")(q, k, v, kv_mask)


def _dq_kernel(q_ref, k_ref, v_ref, mask_ref, do_ref, lse_ref, delta_ref, dq_ref, *, cfg):
    g = cfg.geometry
    i = pl.program_id(0)
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]

    def body(j, dq):
        keys = pl.ds(j * g.block_k, g.block_k)
        k, v = k_ref[keys, :], v_ref[keys, :]
        logits = lax.dot_general(q, k, _NT, preferred_element_type=jnp.float32) * cfg.scale
        logits = jnp.where(_block_mask(i, j, mask_ref[keys], g), logits, -jnp.inf)
        p = jnp.exp(logits - lse[:, None])
        dp = lax.dot_general(do, v, _NT, preferred_element_type=jnp.float32)
        ds = p * (dp - delta[:, None])
        return dq + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

    lo, end = traced_key_block_range(i, g)
    dq = lax.fori_loop(lo, end, body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * cfg.scale).astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, mask_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref, *,
                cfg):
    g = cfg.geometry
    j = pl.program_id(0)
    k, v, kv_ok = k_ref[...], v_ref[...], mask_ref[...]

    def body(i, carry):
        dk, dv = carry
        rows = pl.ds(i * g.block_q, g.block_q)
        q, do = q_ref[rows, :], do_ref[rows, :]
        logits = lax.dot_general(q, k, _NT, preferred_element_type=jnp.float32) * cfg.scale
        logits = jnp.where(_block_mask(i, j, kv_ok, g), logits, -jnp.inf)
        p = jnp.exp(logits - lse_ref[rows][:, None])
        dv = dv + lax.dot_general(p.astype(do.dtype), do, _TN, preferred_element_type=jnp.float32)
        dp = lax.dot_general(do, v, _NT, preferred_element_type=jnp.float32)
        ds = p * (dp - delta_ref[rows][:, None])
        return dk + lax.dot_general(ds.astype(q.dtype), q, _TN,
                                    preferred_element_type=jnp.float32), dv

    lo, end = traced_query_block_range(j, g)
    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = lax.fori_loop(lo, end, body, (zeros, zeros))
    dk_ref[...] = (dk * cfg.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _backward(cfg: _Config, residuals, d_out):
    q, k, v, kv_mask, out, lse = residuals
    g = cfg.geometry
    B, Tp, H, D = q.shape
    Sp = k.shape[1]
    # delta_t = sum_d dO * O: the softmax Jacobian's row term; elementwise, so plain XLA.
    delta = jnp.einsum("bthd,bthd->bht", d_out.astype(jnp.float32), out.astype(jnp.float32))
    d_out = d_out.astype(q.dtype)
    args = (q, k, v, kv_mask, d_out, lse, delta)
    full = lambda n: pl.BlockSpec((None, n, None, D), lambda x, b, h: (b, 0, h, 0))  # noqa
    full_row = lambda n: pl.BlockSpec((None, None, n), lambda x, b, h: (b, h, 0))  # noqa
    q_block = pl.BlockSpec((None, g.block_q, None, D), lambda i, b, h: (b, i, h, 0))
    q_row = pl.BlockSpec((None, None, g.block_q), lambda i, b, h: (b, h, i))
    mask_full = pl.BlockSpec((None, Sp), lambda x, b, h: (b, 0))
    dq = _call(_dq_kernel, cfg, (g.num_q_blocks, B, H),
               [q_block, full(Sp), full(Sp), mask_full, q_block, q_row, q_row], q_block,
               jax.ShapeDtypeStruct(q.shape, q.dtype), "attention_dq")(*args)
    k_block = pl.BlockSpec((None, g.block_k, None, D), lambda j, b, h: (b, j, h, 0))
    mask_block = pl.BlockSpec((None, g.block_k), lambda j, b, h: (b, j))
    dk, dv = _call(_dkv_kernel, cfg, (g.num_k_blocks, B, H),
                   [full(Tp), k_block, k_block, mask_block, full(Tp), full_row(Tp),
                    full_row(Tp)], (k_block, k_block),
                   (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)),
                   "attention_dkv")(*args)
    return dq, dk, dv, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q, k, v, kv_mask, cfg: _Config):
    return _forward(q, k, v, kv_mask, cfg)[0]


def _flash_fwd(q, k, v, kv_mask, cfg):
    out, lse = _forward(q, k, v, kv_mask, cfg)
    return out, (q, k, v, kv_mask, out, lse)


_flash.defvjp(_flash_fwd, _backward)
