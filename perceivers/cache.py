"""Decoding caches of a PerceiverS model: the context's keys for both cross-attentions and the
latents' keys for every self-attention layer, all heads-first (see `layers.cache`).

The global cross-attention keeps every context key of the window (`layers.KVCache`); the scale
branch never looks further back than its window, so it keeps a ring buffer
(`layers.cache.WindowKVCache`) of W keys plus room for the queries of a reset
(`reset_fill - 1` more), under either reading of the scale mask.
"""
from __future__ import annotations

import jax.numpy as jnp

from layers import KVCache
from layers.cache import WindowKVCache

# The scale branch's cache; the name PerceiverS code has always used.
WindowCache = WindowKVCache


def init_cache(model, batch: int, context_length: int, max_queries: int) -> dict:
    """Empty caches of `model` (a `perceivers.PerceiverS`) for windows of `context_length`.

    Args:
      max_queries: most latents a single call appends at once (the reset fill).
    """
    heads, head_dim = model.num_heads, model.d_model // model.num_heads
    dtype = jnp.dtype(model.dtype)
    cross = {"global": KVCache.init(batch, context_length, heads, head_dim, dtype)}
    if model.scale_window is not None:
        # "sliding": the oldest query looks W - 1 back; "last": W <= this span is enough.
        span = min(model.scale_window + max_queries - 1, context_length)
        cross["scale"] = WindowKVCache.init(batch, span, heads, head_dim, dtype, context_length)
    latents = tuple(KVCache.init(batch, model.query_length, heads, head_dim, dtype)
                    for _ in range(model.num_layers))
    return {"cross": cross, "latents": latents}
