"""Key/value caches for incremental decoding: append keys and values, attend from new queries.

Both caches keep keys and values with batch and heads merged in front, [B * H, S, D]: a
decoding step's two attention matmuls then read the cache buffer as it is, with one batch
dimension and contiguous key rows. Stored [B, S, H, D], the compiled step transposed the whole
cache on every token (one token over 8,192 keys, H = 8, D = 64, append included: 14.9x slower
on 2 CPU cores); stored [B, H, S, D], XLA merges (B, H) for the matmul through a view and then
copies the whole cache to write the new key. `tests/perceivers/test_decode_hlo.py` checks the
compiled step.

`KVCache` holds every key of a context; `WindowKVCache` is a ring buffer of the last `span`
keys, for attention that never looks further back (a scale window). Both take the same
`append` and `attend`, so `layers.MultiHeadAttention` serves either.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from layers import masks

# Finite, so that a fully masked row gives a uniform (then zeroed) softmax, as in `attention`.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attend_heads_first(q_BxTxHxD: jax.Array, k_BHxSxD: jax.Array, v_BHxSxD: jax.Array,
                       mask_BxTxS: jax.Array, scale: float | None = None) -> jax.Array:
    """Dense masked attention over keys and values stored [B * H, S, D]; returns [B, T, H, D].

    Equal to `layers.attention(impl="xla")` on the same keys in [B, S, H, D]; only the T new
    queries and their outputs change layout. A query row that sees no key outputs zeros.
    """
    B, T, H, D = q_BxTxHxD.shape
    S = k_BHxSxD.shape[1]
    scale = D ** -0.5 if scale is None else scale
    q_BHxTxD = jnp.swapaxes(q_BxTxHxD, 1, 2).reshape(B * H, T, D)
    logits_BHxTxS = jnp.einsum("ntd,nsd->nts", q_BHxTxD, k_BHxSxD,
                               preferred_element_type=jnp.float32) * scale
    logits_BxHxTxS = jnp.where(mask_BxTxS[:, None], logits_BHxTxS.reshape(B, H, T, S),
                               _MASK_VALUE)
    weights_BHxTxS = jax.nn.softmax(logits_BxHxTxS, axis=-1).reshape(B * H, T, S)
    out_BHxTxD = jnp.einsum("nts,nsd->ntd", weights_BHxTxS.astype(v_BHxSxD.dtype), v_BHxSxD,
                            preferred_element_type=jnp.float32)
    seen_Bx1xTx1 = mask_BxTxS.any(axis=-1)[:, None, :, None]
    out_BxHxTxD = jnp.where(seen_Bx1xTx1, out_BHxTxD.reshape(B, H, T, D), 0)
    return jnp.swapaxes(out_BxHxTxD, 1, 2).astype(q_BxTxHxD.dtype)


def _heads_first(x_BxNxHxD: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """New keys [B, N, H, D] -> [B * H, N, D], the caches' layout (N is small: a copy of them)."""
    B, N, H, D = x_BxNxHxD.shape
    return jnp.swapaxes(x_BxNxHxD, 1, 2).reshape(B * H, N, D).astype(dtype)


def _empty(batch: int, slots: int, num_heads: int, head_dim: int, dtype: jnp.dtype):
    shape = (batch * num_heads, slots, head_dim)
    return (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch, slots), bool),
            jnp.zeros((), jnp.int32))


@struct.dataclass
class KVCache:
    """Preallocated keys and values of one attention layer, a pytree.

    Keys are written at positions `0 .. length - 1`; new queries sit at the last positions,
    so their offset is `length - T`, exactly as in the uncached attention.
    """

    k_BHxSxD: jax.Array
    v_BHxSxD: jax.Array
    kv_mask_BxS: jax.Array  # True = real key; False beyond `length`, on padding and skips
    length: jax.Array       # int32 scalar, key positions passed so far

    @classmethod
    def init(cls, batch: int, max_length: int, num_heads: int, head_dim: int,
             dtype: jnp.dtype = jnp.float32) -> KVCache:
        """An empty cache with room for `max_length` keys."""
        return cls(*_empty(batch, max_length, num_heads, head_dim, dtype))

    @property
    def max_length(self) -> int:
        return self.k_BHxSxD.shape[1]

    @property
    def context_length(self) -> int:
        """Length of the whole context the cache stands for (the "last" mask counts from it)."""
        return self.max_length

    def append(self, k_BxNxHxD: jax.Array, v_BxNxHxD: jax.Array,
               kv_mask_BxN: jax.Array | None = None, *, skip: int = 0) -> KVCache:
        """Write N new keys and values (N static, e.g. 1 or a prompt) after `skip` positions.

        `skip` positions (static) are passed over unwritten, hidden: keys no query will see.
        Writing past `max_length` is not checked at run time (the length is traced); size the
        cache for the longest sequence.
        """
        if kv_mask_BxN is None:
            kv_mask_BxN = jnp.ones(k_BxNxHxD.shape[:2], bool)
        at = self.length + skip

        def write(cache: jax.Array, new: jax.Array) -> jax.Array:
            return jax.lax.dynamic_update_slice_in_dim(cache, new, at, axis=1)

        return KVCache(write(self.k_BHxSxD, _heads_first(k_BxNxHxD, self.k_BHxSxD.dtype)),
                       write(self.v_BHxSxD, _heads_first(v_BxNxHxD, self.v_BHxSxD.dtype)),
                       jax.lax.dynamic_update_slice_in_dim(self.kv_mask_BxS,
                                                           kv_mask_BxN.astype(bool), at, axis=1),
                       at + k_BxNxHxD.shape[1])

    def attend(self, q_BxTxHxD: jax.Array, *, causal: bool = True,
               scale_window: int | None = None, first_key: int | None = None,
               scale: float | None = None) -> jax.Array:
        """Attention of T new queries (the last T positions written) over the cache.

        With a scale window only the last `W + T - 1` cached keys are read, so a decoding step
        costs O(W), not O(max_length). `first_key` hides the keys before that position.
        """
        T = q_BxTxHxD.shape[1]
        k, v, kv_mask, start = self.k_BHxSxD, self.v_BHxSxD, self.kv_mask_BxS, 0
        span = None if scale_window is None else scale_window + T - 1
        if span is not None and span < self.max_length:
            # dynamic_slice clamps the start into range; recompute it to place the window.
            start = jnp.clip(self.length - T - scale_window + 1, 0, self.max_length - span)
            k = jax.lax.dynamic_slice_in_dim(k, start, span, axis=1)
            v = jax.lax.dynamic_slice_in_dim(v, start, span, axis=1)
            kv_mask = jax.lax.dynamic_slice_in_dim(kv_mask, start, span, axis=1)
        k_pos_S = start + jnp.arange(k.shape[1])
        q_pos_T = self.length - T + jnp.arange(T)
        mask_TxS = masks.visible(q_pos_T[:, None], k_pos_S[None, :], causal=causal,
                                 scale_window=scale_window, first_key=first_key)
        return attend_heads_first(q_BxTxHxD, k, v, mask_TxS[None] & kv_mask[:, None], scale)


@struct.dataclass
class WindowKVCache:
    """The keys of the last `span` positions in a ring buffer, heads-first; a pytree.

    Position p lives in slot `p % span`, so a decoding step writes one slot in place and
    never shifts the buffer. Exact for attention that never looks more than `span` positions
    back from its oldest query (a scale window W with T queries: `span >= W + T - 1`).
    """

    k_BHxRxD: jax.Array
    v_BHxRxD: jax.Array
    kv_mask_BxR: jax.Array  # True = real key; False on padding, skips and unwritten slots
    length: jax.Array       # int32 scalar, key positions passed so far (absolute)
    context_length: int = struct.field(pytree_node=False, default=0)  # for the "last" mask

    @classmethod
    def init(cls, batch: int, span: int, num_heads: int, head_dim: int,
             dtype: jnp.dtype = jnp.float32, context_length: int = 0) -> WindowKVCache:
        """An empty ring of `span` slots for a context of `context_length` positions."""
        return cls(*_empty(batch, span, num_heads, head_dim, dtype), context_length)

    @property
    def span(self) -> int:
        return self.k_BHxRxD.shape[1]

    def slot_positions(self, length: jax.Array | int | None = None) -> jax.Array:
        """[R] absolute position held by each slot after `length` positions (< 0: none yet)."""
        length = self.length if length is None else length
        slots_R = jnp.arange(self.span)
        return length - 1 - jnp.mod(length - 1 - slots_R, self.span)

    def append(self, k_BxNxHxD: jax.Array, v_BxNxHxD: jax.Array,
               kv_mask_BxN: jax.Array | None = None, *, skip: int = 0) -> WindowKVCache:
        """Write N new keys (N static) after `skip` hidden positions, over the oldest slots."""
        if kv_mask_BxN is None:
            kv_mask_BxN = jnp.ones(k_BxNxHxD.shape[:2], bool)
        N = k_BxNxHxD.shape[1]
        new_length = self.length + skip + N
        if N > self.span:  # only the last `span` can stay
            k_BxNxHxD, v_BxNxHxD = k_BxNxHxD[:, -self.span:], v_BxNxHxD[:, -self.span:]
            kv_mask_BxN, N = kv_mask_BxN[:, -self.span:], self.span
        k_new = _heads_first(k_BxNxHxD, self.k_BHxRxD.dtype)
        v_new = _heads_first(v_BxNxHxD, self.v_BHxRxD.dtype)
        kv_mask_BxN = kv_mask_BxN.astype(bool)
        if N == 1 and skip == 0:  # a decoding step: one slot, updated in place
            slot = jnp.mod(self.length, self.span)
            k = jax.lax.dynamic_update_slice_in_dim(self.k_BHxRxD, k_new, slot, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(self.v_BHxRxD, v_new, slot, axis=1)
            kv_mask = jax.lax.dynamic_update_slice_in_dim(self.kv_mask_BxR, kv_mask_BxN, slot,
                                                          axis=1)
        else:
            slots_N = jnp.mod(new_length - N + jnp.arange(N), self.span)
            k = self.k_BHxRxD.at[:, slots_N].set(k_new, unique_indices=True)
            v = self.v_BHxRxD.at[:, slots_N].set(v_new, unique_indices=True)
            # A slot keeps its old key only if no new or skipped position replaced it.
            kept_R = self.slot_positions(new_length) < self.length
            kv_mask = (self.kv_mask_BxR & kept_R).at[:, slots_N].set(kv_mask_BxN,
                                                                    unique_indices=True)
        return self.replace(k_BHxRxD=k, v_BHxRxD=v, kv_mask_BxR=kv_mask, length=new_length)

    def attend(self, q_BxTxHxD: jax.Array, *, causal: bool = True,
               scale_window: int | None = None, first_key: int | None = None,
               scale: float | None = None) -> jax.Array:
        """Attention of the T newest positions over the ring; order does not matter, each
        slot's absolute position goes into the mask."""
        T = q_BxTxHxD.shape[1]
        k_pos_R = self.slot_positions()
        q_pos_T = self.length - T + jnp.arange(T)
        mask_TxR = masks.visible(q_pos_T[:, None], k_pos_R[None, :], causal=causal,
                                 scale_window=scale_window, first_key=first_key)
        mask_TxR = mask_TxR & (k_pos_R >= 0)[None, :]
        return attend_heads_first(q_BxTxHxD, self.k_BHxRxD, self.v_BHxRxD,
                                  mask_TxR[None] & self.kv_mask_BxR[:, None], scale)
