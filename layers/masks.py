"""Attention masks as pure functions: True means "this query may see this key".

Queries sit at the last positions of the key sequence: query t of T is at absolute key position
`q_offset + t` (Perceiver AR latents: `q_offset = S - T`; self-attention: `q_offset = 0`).
`jax.nn.dot_product_attention`'s `is_causal` and `local_window_size` align query 0 with key 0,
which is wrong whenever T != S, so every implementation in `layers` builds its masks from here.

The PerceiverS scale mask has two readings of "limited to the last W tokens" (`SCALE_MASKS`):
"sliding", each query sees the W keys ending at its own position; "last", every query sees
only the last W positions of the whole context (`first_key = S - W`), causally.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

ArrayLike = jax.typing.ArrayLike
SCALE_MASKS = ("sliding", "last")


def visible(
    q_position: ArrayLike, k_position: ArrayLike, *, causal: bool, scale_window: int | None,
    first_key: ArrayLike | None = None,
) -> jax.Array:
    """Elementwise visibility of keys from queries, both given as absolute positions.

    Args:
      q_position: absolute query positions, broadcastable against `k_position`.
      k_position: absolute key positions.
      causal: key j visible iff `j <= q_position`.
      scale_window: if set (requires `causal`), additionally `j > q_position - scale_window`.
      first_key: if set, additionally `j >= first_key` (the "last" scale mask: S - W).
    """
    q_position = jnp.asarray(q_position)
    k_position = jnp.asarray(k_position)
    seen = jnp.ones(jnp.broadcast_shapes(q_position.shape, k_position.shape), bool)
    if causal:
        seen = seen & (k_position <= q_position)
    if scale_window is not None:
        check_scale_window(causal, scale_window)
        seen = seen & (k_position > q_position - scale_window)
    if first_key is not None:
        seen = seen & (k_position >= first_key)
    return seen


def causal_mask(query_length: int, key_length: int, q_offset: ArrayLike = 0) -> jax.Array:
    """[T, S] causal mask with the queries at key positions `q_offset + t`."""
    q_pos_T, k_pos_S = _positions(query_length, key_length, q_offset)
    return visible(q_pos_T[:, None], k_pos_S[None, :], causal=True, scale_window=None)


def scale_window_mask(
    query_length: int, key_length: int, scale_window: int, q_offset: ArrayLike = 0
) -> jax.Array:
    """[T, S] PerceiverS scale mask: causal and `j > q_offset + t - scale_window`."""
    q_pos_T, k_pos_S = _positions(query_length, key_length, q_offset)
    return visible(q_pos_T[:, None], k_pos_S[None, :], causal=True, scale_window=scale_window)


def last_window_mask(
    query_length: int, key_length: int, scale_window: int, q_offset: ArrayLike = 0
) -> jax.Array:
    """[T, S] PerceiverS scale mask, "last" reading: causal and `j >= S - scale_window`.

    With W = T and `q_offset = S - T` it is causal self-attention over the queries' own
    positions.
    """
    check_scale_window(True, scale_window)
    q_pos_T, k_pos_S = _positions(query_length, key_length, q_offset)
    return visible(q_pos_T[:, None], k_pos_S[None, :], causal=True, scale_window=None,
                   first_key=key_length - scale_window)


def scale_mask_keys(scale_mask: str, scale_window: int | None,
                    context_length: int) -> tuple[int | None, int | None]:
    """(scale_window, first_key) arguments of `visible` for a scale mask reading.

    "sliding" keeps the window per query; "last" hides the keys before `context_length - W`.
    """
    if scale_mask not in SCALE_MASKS:
        raise ValueError(f"scale_mask={scale_mask!r}; expected one of {SCALE_MASKS}")
    if scale_window is None or scale_mask == "sliding":
        return scale_window, None
    check_scale_window(True, scale_window)
    return None, context_length - scale_window


def bidirectional_mask(query_length: int, key_length: int) -> jax.Array:
    """[T, S] all-visible mask, for the encoders."""
    return jnp.ones((query_length, key_length), bool)


def left_padding_mask(lengths_B: ArrayLike, key_length: int) -> jax.Array:
    """[B, S] key mask for left-padded contexts: the last `lengths[b]` keys are real.

    Left padding keeps the last token at position S - 1, so `q_offset = S - T` stays static.
    """
    lengths_B = jnp.asarray(lengths_B)
    return jnp.arange(key_length)[None, :] >= key_length - lengths_B[:, None]


def padding_mask(kv_mask_BxS: ArrayLike, q_mask_BxT: ArrayLike | None = None) -> jax.Array:
    """[B, 1, T or 1, S] mask from key (and optionally query) validity, True = real token."""
    kv_mask_BxS = jnp.asarray(kv_mask_BxS, bool)
    mask_Bx1x1xS = kv_mask_BxS[:, None, None, :]
    if q_mask_BxT is None:
        return mask_Bx1x1xS
    return mask_Bx1x1xS & jnp.asarray(q_mask_BxT, bool)[:, None, :, None]


def attention_mask(
    query_length: int,
    key_length: int,
    *,
    q_offset: ArrayLike = 0,
    causal: bool = True,
    scale_window: int | None = None,
    kv_mask: ArrayLike | None = None,
    first_key: ArrayLike | None = None,
) -> jax.Array:
    """Full [B or 1, 1, T, S] mask: structure (causal, window) and key padding combined.

    Args:
      query_length: T.
      key_length: S.
      q_offset: absolute key position of query 0 (may be traced, e.g. a cache length).
      causal: causal with offset; False gives a bidirectional mask.
      scale_window: PerceiverS scale window W (requires `causal`).
      kv_mask: optional [B, S] bool, True = real key.
      first_key: keys before this absolute position are hidden ("last" scale mask: S - W).
    """
    q_pos_T, k_pos_S = _positions(query_length, key_length, q_offset)
    mask_TxS = visible(q_pos_T[:, None], k_pos_S[None, :], causal=causal,
                       scale_window=scale_window, first_key=first_key)
    mask_1x1xTxS = mask_TxS[None, None]
    if kv_mask is None:
        return mask_1x1xTxS
    return mask_1x1xTxS & padding_mask(kv_mask)


def visible_key_span(
    query_length: int, key_length: int, *, q_offset: int, causal: bool, scale_window: int | None,
    first_key: int | None = None,
) -> tuple[int, int] | None:
    """[first, end): the smallest key range holding every key some query sees; None if none.

    With a scale window only keys from `q_offset - W + 1` on can be seen (with `first_key`,
    from there on), so slicing to this span makes a window branch's cost independent of S.
    """
    first = 0 if scale_window is None else max(0, q_offset - scale_window + 1)
    first = first if first_key is None else max(first, first_key)
    end = min(key_length, q_offset + query_length) if causal else key_length
    return (first, end) if first < end else None


def _positions(query_length: int, key_length: int,
               q_offset: ArrayLike) -> tuple[jax.Array, jax.Array]:
    return q_offset + jnp.arange(query_length), jnp.arange(key_length)


def check_scale_window(causal: bool, scale_window: int) -> None:
    """Raise a clear error for a window without causality or below 1."""
    if not causal:
        raise ValueError(f"scale_window={scale_window} needs causal=True: the window looks back")
    if isinstance(scale_window, int) and scale_window < 1:
        raise ValueError(f"scale_window must be >= 1, got {scale_window}")
