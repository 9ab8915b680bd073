"""Key/value cache for incremental decoding: append keys and values, attend from new queries."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from layers.attention import attention


@struct.dataclass
class KVCache:
    """Preallocated keys and values of one attention layer, a pytree.

    Keys are written at positions `0 .. length - 1`; new queries sit at the last positions,
    so their offset is `length - T`, exactly as in the uncached attention.
    """

    k_BxSxHxD: jax.Array
    v_BxSxHxD: jax.Array
    kv_mask_BxS: jax.Array  # True = real key; False beyond `length` and on padding
    length: jax.Array       # int32 scalar, keys written so far

    @classmethod
    def init(cls, batch: int, max_length: int, num_heads: int, head_dim: int,
             dtype: jnp.dtype = jnp.float32) -> KVCache:
        """An empty cache with room for `max_length` keys."""
        shape = (batch, max_length, num_heads, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype),
                   jnp.zeros((batch, max_length), bool), jnp.zeros((), jnp.int32))

    @property
    def max_length(self) -> int:
        return self.k_BxSxHxD.shape[1]

    def append(self, k_BxNxHxD: jax.Array, v_BxNxHxD: jax.Array,
               kv_mask_BxN: jax.Array | None = None) -> KVCache:
        """Write N new keys and values after the current ones (N static, e.g. 1 or a prompt).

        Writing past `max_length` is not checked at run time (the length is traced); size the
        cache for the longest sequence.
        """
        if kv_mask_BxN is None:
            kv_mask_BxN = jnp.ones(k_BxNxHxD.shape[:2], bool)
        def write(cache: jax.Array, new: jax.Array) -> jax.Array:
            at = (0, self.length) + (0,) * (cache.ndim - 2)
            return jax.lax.dynamic_update_slice(cache, new.astype(cache.dtype), at)

        return KVCache(write(self.k_BxSxHxD, k_BxNxHxD), write(self.v_BxSxHxD, v_BxNxHxD),
                       write(self.kv_mask_BxS, kv_mask_BxN), self.length + k_BxNxHxD.shape[1])

    def attend(self, q_BxTxHxD: jax.Array, *, causal: bool = True,
               scale_window: int | None = None, scale: float | None = None) -> jax.Array:
        """Attention of T new queries (the last T positions written) over the cache.

        With a scale window only the last `W + T - 1` cached keys are read, so a decoding step
        costs O(W), not O(max_length).
        """
        T = q_BxTxHxD.shape[1]
        q_offset = self.length - T
        k, v, kv_mask = self.k_BxSxHxD, self.v_BxSxHxD, self.kv_mask_BxS
        span = None if scale_window is None else scale_window + T - 1
        if span is not None and span < self.max_length:
            # dynamic_slice clamps the start into range; recompute it to place the window.
            start = jnp.clip(q_offset - scale_window + 1, 0, self.max_length - span)
            k = jax.lax.dynamic_slice_in_dim(k, start, span, axis=1)
            v = jax.lax.dynamic_slice_in_dim(v, start, span, axis=1)
            kv_mask = jax.lax.dynamic_slice_in_dim(kv_mask, start, span, axis=1)
            q_offset = q_offset - start
        return attention(q_BxTxHxD, k, v, q_offset=q_offset, causal=causal,
                         scale_window=scale_window, kv_mask=kv_mask, impl="xla", scale=scale)
