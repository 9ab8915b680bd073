"""Decoding caches of a PerceiverS model: the context's keys for both cross-attentions and the
latents' keys for every self-attention layer.

The global cross-attention keeps every context key of the window (`layers.KVCache`); the scale
branch only ever looks `scale_window` tokens back, so it keeps a sliding buffer of its window
(`WindowCache`) plus room for the queries of a reset (`reset_fill - 1` more keys).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from layers import KVCache, attention


@struct.dataclass
class WindowCache:
    """The last `span` keys and values, oldest first; duck-types `layers.KVCache` for
    `layers.MultiHeadAttention`.

    The newest key always sits in the last slot, so new queries have the static offset
    `span - T` in the buffer whatever the absolute position is.
    """

    k_BxRxHxD: jax.Array
    v_BxRxHxD: jax.Array
    kv_mask_BxR: jax.Array  # True = real key; False on padding and slots not yet written
    length: jax.Array       # int32 scalar, keys appended so far (the absolute position count)

    @classmethod
    def init(cls, batch: int, span: int, num_heads: int, head_dim: int,
             dtype: jnp.dtype = jnp.float32) -> WindowCache:
        """An empty buffer of `span` keys."""
        shape = (batch, span, num_heads, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype),
                   jnp.zeros((batch, span), bool), jnp.zeros((), jnp.int32))

    @property
    def span(self) -> int:
        return self.k_BxRxHxD.shape[1]

    def append(self, k_BxNxHxD: jax.Array, v_BxNxHxD: jax.Array,
               kv_mask_BxN: jax.Array | None = None) -> WindowCache:
        """Append N keys (N static) and drop the oldest, keeping the last `span`."""
        if kv_mask_BxN is None:
            kv_mask_BxN = jnp.ones(k_BxNxHxD.shape[:2], bool)
        keep = self.span

        def shift(old, new):
            return jnp.concatenate([old, new.astype(old.dtype)], axis=1)[:, -keep:]

        return WindowCache(shift(self.k_BxRxHxD, k_BxNxHxD), shift(self.v_BxRxHxD, v_BxNxHxD),
                           shift(self.kv_mask_BxR, kv_mask_BxN.astype(bool)),
                           self.length + k_BxNxHxD.shape[1])

    def attend(self, q_BxTxHxD: jax.Array, *, causal: bool = True,
               scale_window: int | None = None, scale: float | None = None) -> jax.Array:
        """Attention of the T newest positions over the buffer, with the scale window.

        Exact while every key a query may see is still held: `span >= scale_window + T - 1`,
        or the whole sequence fits in the buffer (`init_cache` sizes it so).
        """
        if scale_window is None:
            raise ValueError("WindowCache serves a scale-window attention; got scale_window=None")
        T = q_BxTxHxD.shape[1]
        return attention(q_BxTxHxD, self.k_BxRxHxD, self.v_BxRxHxD, q_offset=self.span - T,
                         causal=causal, scale_window=scale_window, kv_mask=self.kv_mask_BxR,
                         impl="xla", scale=scale)


def init_cache(model, batch: int, context_length: int, max_queries: int) -> dict:
    """Empty caches of `model` (a `perceivers.PerceiverS`) for windows of `context_length`.

    Args:
      max_queries: most latents a single call appends at once (the reset fill).
    """
    heads, head_dim = model.num_heads, model.d_model // model.num_heads
    dtype = jnp.dtype(model.dtype)
    cross = {"global": KVCache.init(batch, context_length, heads, head_dim, dtype)}
    if model.scale_window is not None:
        span = min(model.scale_window + max_queries - 1, context_length)
        cross["scale"] = WindowCache.init(batch, span, heads, head_dim, dtype)
    latents = tuple(KVCache.init(batch, model.query_length, heads, head_dim, dtype)
                    for _ in range(model.num_layers))
    return {"cross": cross, "latents": latents}
