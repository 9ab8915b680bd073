"""TPU attention through JAX's block-sparse splash kernel, with our masks and key padding.

`jax.experimental.pallas.ops.tpu.splash_attention` takes heads-major [H, T, D] queries for one
example, a static structure mask and segment ids. Our masks map onto it exactly:
  offset causal   CausalMask(shape, offset=q_offset)   (query t sees key j iff j <= q_offset + t)
  scale window    LocalMask(shape, window_size=(W - 1, 0), offset=q_offset)
  non-causal      FullMask(shape)
  key padding     segment ids: every query in segment 1, real keys 1, padded keys 0.
Splash skips the block pairs its structure mask hides, forward and backward (its own
custom_vjp). The wrapper transposes to heads-major, pads T and S to whole 128-wide blocks (the
TPU's lane width), vmaps over the batch and zeroes the rows that see no key, as every `layers`
implementation does (splash would give a uniform average there). Compiled with Mosaic on TPU;
on CPU it runs in the Pallas TPU interpreter, which is how CI checks its values and gradients.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from layers.platforms import by_platform, unavailable

LANES = 128  # TPU lane width: splash's block sizes must be multiples of it
_DEFAULT_BLOCK = 512  # query and key tile, clipped to the padded lengths (MaxText's default)


def splash_attention(
    q_BxTxHxD: jax.Array,
    k_BxSxHxD: jax.Array,
    v_BxSxHxD: jax.Array,
    kv_mask_BxS: jax.Array | None,
    *,
    q_offset: int,
    causal: bool,
    scale_window: int | None,
    scale: float,
    block_q: int = _DEFAULT_BLOCK,
    block_k: int = _DEFAULT_BLOCK,
    interpret: bool | None = None,
) -> jax.Array:
    """Splash attention; same values and gradients as the dense reference.

    Args:
      block_q, block_k: tile sizes, rounded up to multiples of 128 and clipped to the lengths.
      interpret: True runs the Pallas TPU interpreter on any platform; None (default): Mosaic
        when lowered for TPU, the interpreter on CPU, and an error on GPU.
    """
    B, T, H, D = q_BxTxHxD.shape
    S = k_BxSxHxD.shape[1]
    block_q, block_k = _block(block_q, T), _block(block_k, S)
    T_pad, S_pad = _round_up(T, block_q), _round_up(S, block_k)
    if kv_mask_BxS is None:
        kv_mask_BxS = jnp.ones((B, S), bool)
    # Heads-major, padded: padded keys sit in segment 0, which no query belongs to; padded
    # queries (after the last) see what the last one sees and are sliced off.
    heads_major = lambda x, n: jnp.pad(jnp.transpose(x, (0, 2, 1, 3)),  # noqa: E731
                                       ((0, 0), (0, 0), (0, n), (0, 0)))
    q_BxHxTxD = heads_major(q_BxTxHxD * jnp.asarray(scale, q_BxTxHxD.dtype), T_pad - T)
    k_BxHxSxD, v_BxHxSxD = heads_major(k_BxSxHxD, S_pad - S), heads_major(v_BxSxHxD, S_pad - S)
    kv_segment_BxS = jnp.pad(kv_mask_BxS.astype(jnp.int32), ((0, 0), (0, S_pad - S)))
    q_segment_BxT = jnp.ones((B, T_pad), jnp.int32)
    kernel = functools.partial(_kernel, shape=(T_pad, S_pad), heads=H, q_offset=q_offset,
                               causal=causal, scale_window=scale_window, blocks=(block_q, block_k))
    args = (q_BxHxTxD, k_BxHxSxD, v_BxHxSxD, q_segment_BxT, kv_segment_BxS)
    if interpret is None:
        out_BxHxTxD = by_platform(*args, cpu=kernel(True), cuda=_refuse_on_gpu, tpu=kernel(False),
                                  default=_refuse_on_gpu)
    else:
        out_BxHxTxD = kernel(bool(interpret))(*args)
    out_BxTxHxD = jnp.transpose(out_BxHxTxD[:, :, :T], (0, 2, 1, 3))
    seen_BxT = rows_with_keys(T, S, q_offset=q_offset, causal=causal, scale_window=scale_window,
                              kv_mask_BxS=kv_mask_BxS)
    return jnp.where(seen_BxT[:, :, None, None], out_BxTxHxD, 0).astype(q_BxTxHxD.dtype)


def _refuse_on_gpu(q_BxHxTxD: jax.Array, *_) -> jax.Array:
    return unavailable(q_BxHxTxD, "impl='splash' is the TPU (Mosaic) kernel and does not run "
                       "on GPU; use impl='pallas' (Triton) or impl='auto'")


def _kernel(interpret: bool, *, shape, heads, q_offset, causal, scale_window, blocks):
    """A function of (q, k, v, q_segment, kv_segment) with a batch axis: the vmapped kernel."""
    if not causal:
        structure = splash.FullMask(shape)
    elif scale_window is None:
        structure = splash.CausalMask(shape, offset=q_offset)
    else:
        structure = splash.LocalMask(shape, window_size=(scale_window - 1, 0), offset=q_offset)
    block_q, block_k = blocks
    sizes = splash.BlockSizes(block_q=block_q, block_kv=block_k, block_kv_compute=block_k,
                              block_q_dkv=block_q, block_kv_dkv=block_k,
                              block_kv_dkv_compute=block_k, block_q_dq=block_q,
                              block_kv_dq=block_k)
    kernel = splash.make_splash_mha(splash.MultiHeadMask([structure] * heads),
                                    block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                    interpret=interpret)

    def one_example(q, k, v, q_segment, kv_segment):
        return kernel(q, k, v, splash.SegmentIds(q=q_segment, kv=kv_segment))

    return jax.vmap(one_example)


def rows_with_keys(query_length: int, key_length: int, *, q_offset: int, causal: bool,
                   scale_window: int | None, kv_mask_BxS: jax.Array) -> jax.Array:
    """[B, T] bool: query t sees at least one real key. O(B x (S + T)), never T x S.

    Query t sees the contiguous key range lo..hi (causal: up to q_offset + t; window: from
    q_offset + t - W + 1); a prefix count of real keys tells whether that range holds one.
    """
    T, S = query_length, key_length
    position_T = q_offset + np.arange(T)
    hi_T = np.minimum(position_T, S - 1) if causal else np.full(T, S - 1)
    lo_T = np.zeros(T, np.int64) if scale_window is None else np.clip(
        position_T - scale_window + 1, 0, S)
    real_before_Bx1pS = jnp.pad(jnp.cumsum(kv_mask_BxS.astype(jnp.int32), axis=1),
                                ((0, 0), (1, 0)))
    count_BxT = real_before_Bx1pS[:, np.maximum(hi_T + 1, 0)] - real_before_Bx1pS[:, lo_T]
    return (count_BxT > 0) & jnp.asarray(lo_T <= hi_T)[None, :]


def _block(size: int, length: int) -> int:
    return min(_round_up(max(size, 1), LANES), _round_up(length, LANES))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
