"""Multi-head attention with queries at the end of the key sequence, in five implementations.

`attention` is the single entry point. All implementations compute the same function and the
same gradients with respect to q, k and v:
  xla        dense logits [B, H, T, S], masked; the reference.
  blockwise  pure-JAX flash attention over a static block schedule (`layers.blockwise`).
  pallas     Pallas flash kernels: Triton on GPU, interpreter on CPU (`layers.pallas_attention`).
  splash     JAX's block-sparse TPU kernel: Mosaic on TPU, the interpreter on CPU (`layers.splash`).
  cudnn      `jax.nn.dot_product_attention(implementation="cudnn")` with an explicit mask; GPU.
"auto" picks by the platform the program is lowered for (`layers.platforms`), not the host:
pallas on cuda, splash on tpu, xla or blockwise (by size) on cpu. A query row that sees no key
at all (possible with key padding) outputs zeros, and passes no gradient, in every implementation.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from layers import masks
from layers.blockwise import blockwise_attention
from layers.pallas_attention import pallas_attention
from layers.platforms import PLATFORMS, PlatformError, by_platform, platform_name
from layers.splash import splash_attention

IMPLEMENTATIONS = ("auto", "xla", "blockwise", "pallas", "splash", "cudnn")

# Finite, so that a fully masked row gives a uniform (then zeroed) softmax instead of NaN.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)

# Off GPU, dense XLA attention wins only while [T, S] is tiny: on CPU (B=4, H=4, D=64,
# forward + backward) they tie at T = S = 256 and blockwise is 1.5x faster at 512 x 1024.
_DENSE_LOGITS_LIMIT = 256 * 256
# Which platforms each kernel runs on compiled (elsewhere: the interpreter on CPU, else an error).
_KERNEL_PLATFORM = {"pallas": ("cuda", "rocm"), "splash": ("tpu",)}


def attention(
    q_BxTxHxD: jax.Array,
    k_BxSxHxD: jax.Array,
    v_BxSxHxD: jax.Array,
    *,
    q_offset: int | jax.Array = 0,
    causal: bool = True,
    scale_window: int | None = None,
    kv_mask: jax.Array | None = None,
    impl: str = "auto",
    scale: float | None = None,
    block_q: int | None = None,
    block_k: int | None = None,
    platform: str | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """Attention of T queries at key positions `q_offset + t` over S keys; returns [B, T, H, D].

    Args:
      q_BxTxHxD: queries.
      k_BxSxHxD: keys; v_BxSxHxD: values, same shape.
      q_offset: absolute key position of query 0; Perceiver AR latents use S - T. Must be a
        static int except for impl="xla" (the decoding cache passes its traced length).
      causal: key j visible to query t iff j <= q_offset + t; False for encoders.
      scale_window: PerceiverS scale window W: additionally j > q_offset + t - W.
      kv_mask: [B, S] bool, True = real key (left-padded contexts keep q_offset static).
      impl: "auto", "xla", "blockwise", "pallas", "splash" or "cudnn".
      scale: logit scale, default 1 / sqrt(D).
      block_q, block_k: tile sizes for blockwise / pallas / splash (defaults per implementation).
      platform: "cpu", "cuda" ("gpu") or "tpu" fixes the platform at trace time; None (default)
        decides when lowering, so cross-lowering and AOT export get the target's kernel.
      interpret: pallas / splash only: True runs the Pallas interpreter on any platform.
    """
    _check_inputs(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask, causal, scale_window, impl)
    T, S, D = q_BxTxHxD.shape[1], k_BxSxHxD.shape[1], q_BxTxHxD.shape[3]
    if isinstance(q_offset, (int, np.integer)):
        q_offset = int(q_offset)
    platform = None if platform is None else platform_name(platform)
    blocks = {name: size for name, size in (("block_q", block_q), ("block_k", block_k))
              if size is not None}
    settings = dict(q_offset=q_offset, causal=causal, scale_window=scale_window,
                    scale=1.0 / math.sqrt(D) if scale is None else scale, blocks=blocks,
                    interpret=interpret)
    args = (q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask)
    if impl != "auto":
        return _implementation(impl, *args, platform=platform, **settings)
    static = isinstance(q_offset, int)
    if platform is not None:
        impl = choose_implementation(platform, T, S, D, scale_window, static_offset=static)
        return _implementation(impl, *args, platform=platform, **settings)
    branches = {p: functools.partial(_implementation, choose_implementation(
        p, T, S, D, scale_window, static_offset=static), platform=p, **settings)
        for p in PLATFORMS}
    if len({b.args[0] for b in branches.values()}) == 1:  # e.g. a traced offset: xla anywhere
        return branches["cpu"](*args)
    return by_platform(*args, **branches)


def _implementation(impl: str, q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask, *, platform, q_offset,
                    causal, scale_window, scale, blocks, interpret) -> jax.Array:
    """Run one implementation; `platform` (None: decided when lowering) picks the kernel or
    its interpreter."""
    shared = dict(q_offset=q_offset, causal=causal, scale_window=scale_window, scale=scale)
    if impl == "xla":
        return xla_attention(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask, **shared)
    if impl == "cudnn":
        return cudnn_attention(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask, **shared)
    if not isinstance(q_offset, int) or q_offset < 0:
        raise ValueError(f"impl={impl!r} needs a static int q_offset >= 0 (its block schedule "
                         f"is built at trace time), got {q_offset!r}; use impl='xla'")
    if impl == "blockwise":
        return _on_visible_keys(blockwise_attention, q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask,
                                **shared, **blocks)
    if interpret is None and platform is not None:
        if platform != "cpu" and platform not in _KERNEL_PLATFORM[impl]:
            raise PlatformError(f"impl={impl!r} does not run on {platform}: pallas is the "
                                f"Triton kernel for GPUs, splash the Mosaic kernel for TPUs; "
                                f"use impl='auto'")
        interpret = platform == "cpu"
    fn = pallas_attention if impl == "pallas" else splash_attention
    return _on_visible_keys(fn, q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask, **shared, **blocks,
                            interpret=interpret)


def _on_visible_keys(fn, q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask, *, q_offset, causal,
                     scale_window, **kwargs) -> jax.Array:
    """Run a blocked implementation on the keys some query sees; no query sees any: zeros.

    Slicing first makes a window branch cost the same, copies included, whatever S is.
    """
    span = masks.visible_key_span(q_BxTxHxD.shape[1], k_BxSxHxD.shape[1], q_offset=q_offset,
                                  causal=causal, scale_window=scale_window)
    if span is None:
        return jnp.zeros_like(q_BxTxHxD)
    first, end = span  # slicing shifts every key position down by `first`
    kv_mask = None if kv_mask is None else kv_mask[:, first:end]
    return fn(q_BxTxHxD, k_BxSxHxD[:, first:end], v_BxSxHxD[:, first:end], kv_mask,
              q_offset=q_offset - first, causal=causal, scale_window=scale_window, **kwargs)


def choose_implementation(
    backend: str, query_length: int, key_length: int, head_dim: int,
    scale_window: int | None, *, static_offset: bool = True,
) -> str:
    """The implementation "auto" picks for a platform ("cpu", "cuda"/"gpu", "tpu") and shape.

    cuda: the Pallas (Triton) kernel, which skips hidden blocks and never builds [T, S] (not
    yet timed against cuDNN on a GPU: benchmarks/accelerator.py measures it). tpu: splash, the
    block-sparse Mosaic kernel made for these masks. cpu and others: dense XLA while [T, S] is
    small, blockwise beyond. A traced offset rules out a static schedule: xla everywhere.
    """
    platform = platform_name(backend)
    if not static_offset:
        return "xla"
    if platform == "cuda" and head_dim <= 256:
        return "pallas"
    if platform == "tpu":
        return "splash"
    if query_length * key_length <= _DENSE_LOGITS_LIMIT:
        return "xla"
    return "blockwise"


def xla_attention(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask_BxS, *, q_offset, causal,
                  scale_window, scale) -> jax.Array:
    """Dense masked attention: the reference every other implementation is tested against."""
    T, S = q_BxTxHxD.shape[1], k_BxSxHxD.shape[1]
    mask = masks.attention_mask(T, S, q_offset=q_offset, causal=causal,
                                scale_window=scale_window, kv_mask=kv_mask_BxS)
    logits_BxHxTxS = jnp.einsum("bthd,bshd->bhts", q_BxTxHxD, k_BxSxHxD,
                                preferred_element_type=jnp.float32) * scale
    logits_BxHxTxS = jnp.where(mask, logits_BxHxTxS, _MASK_VALUE)
    weights_BxHxTxS = jax.nn.softmax(logits_BxHxTxS, axis=-1)
    out_BxTxHxD = jnp.einsum("bhts,bshd->bthd", weights_BxHxTxS.astype(v_BxSxHxD.dtype),
                             v_BxSxHxD, preferred_element_type=jnp.float32)
    return _zero_unseen_rows(out_BxTxHxD, mask).astype(q_BxTxHxD.dtype)


def cudnn_attention(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, kv_mask_BxS, *, q_offset, causal,
                    scale_window, scale) -> jax.Array:
    """cuDNN fused attention with our explicit mask (its own causal flag aligns q0 with k0).

    Tracing it needs cuDNN on the host (JAX checks its version then), so unlike the Pallas
    kernels it cannot be cross-lowered from a CPU machine.
    """
    if jax.default_backend() != "gpu":
        raise ValueError(f"impl='cudnn' needs a GPU (cuDNN is checked when tracing); this "
                         f"backend is {jax.default_backend()!r}")
    if q_BxTxHxD.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError(f"impl='cudnn' takes bfloat16 or float16, got {q_BxTxHxD.dtype}")
    T, S = q_BxTxHxD.shape[1], k_BxSxHxD.shape[1]
    mask = masks.attention_mask(T, S, q_offset=q_offset, causal=causal,
                                scale_window=scale_window, kv_mask=kv_mask_BxS)
    out_BxTxHxD = jax.nn.dot_product_attention(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, mask=mask,
                                               scale=scale, implementation="cudnn")
    return _zero_unseen_rows(out_BxTxHxD, mask).astype(q_BxTxHxD.dtype)


def _zero_unseen_rows(out_BxTxHxD: jax.Array, mask_Bx1xTxS: jax.Array) -> jax.Array:
    seen_Bx1xT = mask_Bx1xTxS.any(axis=-1)
    return jnp.where(jnp.swapaxes(seen_Bx1xT, 1, 2)[..., None], out_BxTxHxD, 0)


def _check_inputs(q, k, v, kv_mask, causal, scale_window, impl) -> None:
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl={impl!r}; expected one of {IMPLEMENTATIONS}")
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape:
        raise ValueError(f"expected q [B, T, H, D] and k, v [B, S, H, D], got q {q.shape}, "
                         f"k {k.shape}, v {v.shape}")
    if (q.shape[0], q.shape[2], q.shape[3]) != (k.shape[0], k.shape[2], k.shape[3]):
        raise ValueError(f"q {q.shape} and k {k.shape} differ in batch, heads or head dim")
    if kv_mask is not None and kv_mask.shape != k.shape[:2]:
        raise ValueError(f"kv_mask shape {kv_mask.shape}; expected [B, S] = {k.shape[:2]}")
    if scale_window is not None:
        masks.check_scale_window(causal, scale_window)
