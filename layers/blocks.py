"""Pre-LayerNorm transformer blocks: self-attention, cross-attention, MLP, and their stack.

Every block computes `x + Dropout(sublayer(LayerNorm(x)))`. Attention settings (implementation,
causality, scale window, rotary) are attributes; arrays (padding masks, positions, a decoding
cache) are call arguments. Queries sit at the last positions of the key sequence: `q_offset`
defaults to S - T, which is 0 for self-attention and the Perceiver AR offset for latents
cross-attending a longer context. With `cache`, a block appends its new keys and values and
returns `(y, cache)` instead of `y`.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from layers import masks
from layers.attention import attention
from layers.cache import KVCache
from layers.rotary import apply_rotary

Dtype = Any


class MultiHeadAttention(nn.Module):
    """Query/key/value projections, rotary embeddings, `attention`, output projection.

    Keys and values are projected only for the context positions some query can see (with a
    scale window, the last W + T - 1 of S), so a windowed branch costs O(W) at any S.
    """

    num_heads: int
    head_dim: int
    q_offset: int | None = None  # None: S - T (queries are the last T key positions)
    causal: bool = True
    scale_window: int | None = None
    scale_mask: str = "sliding"  # reading of the window: "sliding" or "last" (layers.masks)
    attention_impl: str = "auto"
    rotary_fraction: float = 0.0  # share of head_dim rotated; 0 disables rotary
    rotary_base: float = 10000.0
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, context_BxSxD: jax.Array,
                 kv_mask_BxS: jax.Array | None = None, q_positions_BxT: jax.Array | None = None,
                 kv_positions_BxS: jax.Array | None = None, cache: KVCache | None = None):
        """Returns (y_BxTxD, cache); cache is None when none was given.

        `cache` is a `layers.KVCache` or `layers.cache.WindowKVCache`; the "last" scale mask
        counts its W positions back from the cache's `context_length`.
        """
        T, S = x_BxTxD.shape[1], context_BxSxD.shape[1]
        if cache is None:
            q_offset = S - T if self.q_offset is None else self.q_offset
            window, first_key = masks.scale_mask_keys(self.scale_mask, self.scale_window, S)
            first, end, hidden = _projected_keys(T, S, q_offset, self.causal, window, first_key)
            key_start = 0
        else:
            if self.q_offset is not None and self.q_offset != S - T:
                raise ValueError(f"decoding puts the {T} queries at the last positions; "
                                 f"q_offset={self.q_offset} != S - T = {S - T}")
            window, first_key = masks.scale_mask_keys(self.scale_mask, self.scale_window,
                                                      cache.context_length)
            # Later queries look back no further than these, so the skipped keys are never
            # needed: with a window, the last W + T - 1; "last", the block's last W at most.
            keep = S if window is None else min(S, window + T - 1)
            keep = keep if first_key is None else min(S, self.scale_window)
            first, end, hidden = S - keep, S, 0
            key_start, q_offset = cache.length, cache.length + S - T
        context_BxKxD = context_BxSxD[:, first:end]
        if kv_mask_BxS is not None:
            kv_mask_BxS = kv_mask_BxS[:, first:end]
        dense = functools.partial(nn.DenseGeneral, features=(self.num_heads, self.head_dim),
                                  use_bias=self.use_bias, dtype=self.dtype,
                                  param_dtype=self.param_dtype)
        q_BxTxHxD = dense(name="query")(x_BxTxD)
        k_BxKxHxD = dense(name="key")(context_BxKxD)
        v_BxKxHxD = dense(name="value")(context_BxKxD)
        if self.rotary_fraction > 0:  # absolute positions, whatever was sliced off
            q_pos = q_offset + jnp.arange(T) if q_positions_BxT is None else q_positions_BxT
            k_pos = (key_start + first + jnp.arange(end - first) if kv_positions_BxS is None
                     else kv_positions_BxS[:, first:end])
            rotate = functools.partial(apply_rotary, fraction=self.rotary_fraction,
                                       base=self.rotary_base)
            q_BxTxHxD, k_BxKxHxD = rotate(q_BxTxHxD, q_pos), rotate(k_BxKxHxD, k_pos)
        if cache is None:
            if hidden:  # "last" with W < T: keys before S - W that early queries pass over
                shown_K = jnp.arange(end - first) >= hidden
                kv_mask_BxS = shown_K[None] if kv_mask_BxS is None else kv_mask_BxS & shown_K
                kv_mask_BxS = jnp.broadcast_to(kv_mask_BxS, k_BxKxHxD.shape[:2])
            # After slicing, "last" is the plain causal offset mask over the sliced keys.
            out_BxTxHxD = attention(q_BxTxHxD, k_BxKxHxD, v_BxKxHxD, q_offset=q_offset - first,
                                    causal=self.causal, scale_window=window,
                                    kv_mask=kv_mask_BxS, impl=self.attention_impl)
        else:
            cache = cache.append(k_BxKxHxD, v_BxKxHxD, kv_mask_BxS, skip=first)
            out_BxTxHxD = cache.attend(q_BxTxHxD, causal=self.causal, scale_window=window,
                                       first_key=first_key)
        y_BxTxD = nn.DenseGeneral(features=x_BxTxD.shape[-1], axis=(-2, -1),
                                  use_bias=self.use_bias, dtype=self.dtype,
                                  param_dtype=self.param_dtype, name="out")(out_BxTxHxD)
        return y_BxTxD, cache


def _projected_keys(T: int, S: int, q_offset: int, causal: bool, window: int | None,
                    first_key: int | None) -> tuple[int, int, int]:
    """(first, end, hidden): project keys [first, end); hide the first `hidden` of them.

    The visible span, widened down to the first query's position when "last" starts above it
    (W < T), so that the sliced offset `q_offset - first` stays >= 0 for the block kernels.
    """
    span = masks.visible_key_span(T, S, q_offset=q_offset, causal=causal, scale_window=window,
                                  first_key=first_key)
    if span is None:  # no query sees any key: keep them all, the mask gives zeros
        return 0, S, 0
    first, end = span
    lowest = max(0, min(first, q_offset))
    return lowest, end, first - lowest


class FeedForward(nn.Module):
    """Dense -> GELU -> Dense, back to the input width."""

    hidden_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype)
        h_BxTxF = nn.gelu(dense(self.hidden_dim, name="hidden")(x_BxTxD))
        return dense(x_BxTxD.shape[-1], name="output")(h_BxTxF)


def _maybe_remat(cls: type[nn.Module], remat: bool) -> type[nn.Module]:
    # Only the sublayer is recomputed on the backward pass; norm, dropout and residual are cheap.
    return nn.remat(cls) if remat else cls


def _attention_kwargs(block: Any) -> dict[str, Any]:
    return dict(num_heads=block.num_heads, head_dim=block.head_dim, causal=block.causal,
                scale_window=block.scale_window, scale_mask=block.scale_mask,
                attention_impl=block.attention_impl,
                rotary_fraction=block.rotary_fraction, rotary_base=block.rotary_base,
                dtype=block.dtype, param_dtype=block.param_dtype)


def _layer_norm(block: Any, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(dtype=block.dtype, param_dtype=block.param_dtype, name=name)


class SelfAttentionBlock(nn.Module):
    """x + Dropout(SelfAttention(LayerNorm(x)))."""

    num_heads: int
    head_dim: int
    causal: bool = True
    scale_window: int | None = None
    scale_mask: str = "sliding"
    attention_impl: str = "auto"
    rotary_fraction: float = 0.0
    rotary_base: float = 10000.0
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, kv_mask_BxT: jax.Array | None = None,
                 positions_BxT: jax.Array | None = None, *, deterministic: bool = True,
                 cache: KVCache | None = None):
        """Args: kv_mask_BxT marks real tokens; positions_BxT override rotary positions."""
        h = _layer_norm(self, "norm")(x_BxTxD)
        h, cache = _maybe_remat(MultiHeadAttention, self.remat)(
            **_attention_kwargs(self), name="attention")(h, h, kv_mask_BxT, positions_BxT,
                                                         positions_BxT, cache)
        y = x_BxTxD + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return y if cache is None else (y, cache)


class CrossAttentionBlock(nn.Module):
    """x + Dropout(CrossAttention(LayerNorm(x), LayerNorm(context))).

    The T queries sit at key positions `q_offset + t` of the S-long context (default S - T:
    Perceiver AR latents are the context's last positions). Set causal=False for an encoder
    memory that every query may see.
    """

    num_heads: int
    head_dim: int
    q_offset: int | None = None
    causal: bool = True
    scale_window: int | None = None
    scale_mask: str = "sliding"
    attention_impl: str = "auto"
    rotary_fraction: float = 0.0
    rotary_base: float = 10000.0
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, context_BxSxD: jax.Array,
                 context_mask_BxS: jax.Array | None = None,
                 q_positions_BxT: jax.Array | None = None,
                 context_positions_BxS: jax.Array | None = None, *,
                 deterministic: bool = True, cache: KVCache | None = None):
        """Args: context_mask_BxS marks real context tokens; positions override rotary's."""
        h = _layer_norm(self, "norm")(x_BxTxD)
        context = _layer_norm(self, "context_norm")(context_BxSxD)
        h, cache = _maybe_remat(MultiHeadAttention, self.remat)(
            **_attention_kwargs(self), q_offset=self.q_offset, name="attention")(
                h, context, context_mask_BxS, q_positions_BxT, context_positions_BxS, cache)
        y = x_BxTxD + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return y if cache is None else (y, cache)


class MLPBlock(nn.Module):
    """x + Dropout(FeedForward(LayerNorm(x)))."""

    hidden_dim: int
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, *, deterministic: bool = True) -> jax.Array:
        h = _layer_norm(self, "norm")(x_BxTxD)
        h = _maybe_remat(FeedForward, self.remat)(self.hidden_dim, dtype=self.dtype,
                                                  param_dtype=self.param_dtype, name="mlp")(h)
        return x_BxTxD + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)


class TransformerBlock(nn.Module):
    """Self-attention (optional), cross-attention (optional), then an MLP; each pre-LN residual.

    Serves decoder stacks (causal self-attention), encoders (causal=False), decoders reading an
    encoder memory (cross_attention=True, cross_causal=False), and Perceiver-AR-style first
    layers (self_attention=False, cross_attention=True, cross_causal=True). When decoding,
    `cache` is the self-attention's KVCache; cross-attention reads the whole given context.
    """

    num_heads: int
    head_dim: int
    mlp_dim: int
    self_attention: bool = True
    cross_attention: bool = False
    causal: bool = True
    scale_window: int | None = None
    cross_causal: bool = False
    cross_scale_window: int | None = None
    cross_q_offset: int | None = None
    attention_impl: str = "auto"
    rotary_fraction: float = 0.0
    rotary_base: float = 10000.0
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, context_BxSxD: jax.Array | None = None,
                 kv_mask_BxT: jax.Array | None = None,
                 context_mask_BxS: jax.Array | None = None,
                 positions_BxT: jax.Array | None = None,
                 context_positions_BxS: jax.Array | None = None, *,
                 deterministic: bool = True, cache: KVCache | None = None):
        """Args: as the sub-blocks; returns y, or (y, cache) when a cache is given."""
        if not (self.self_attention or self.cross_attention):
            raise ValueError("TransformerBlock needs self_attention or cross_attention")
        if self.cross_attention and context_BxSxD is None:
            raise ValueError("TransformerBlock(cross_attention=True) needs context_BxSxD")
        shared = dict(num_heads=self.num_heads, head_dim=self.head_dim,
                      attention_impl=self.attention_impl, rotary_fraction=self.rotary_fraction,
                      rotary_base=self.rotary_base, dropout_rate=self.dropout_rate,
                      remat=self.remat, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.self_attention:
            out = SelfAttentionBlock(**shared, causal=self.causal, scale_window=self.scale_window,
                                     name="self_attention")(
                x_BxTxD, kv_mask_BxT, positions_BxT, deterministic=deterministic, cache=cache)
            x_BxTxD, cache = out if cache is not None else (out, None)
        if self.cross_attention:
            x_BxTxD = CrossAttentionBlock(
                **shared, q_offset=self.cross_q_offset, causal=self.cross_causal,
                scale_window=self.cross_scale_window, name="cross_attention")(
                    x_BxTxD, context_BxSxD, context_mask_BxS, positions_BxT,
                    context_positions_BxS, deterministic=deterministic)
        x_BxTxD = MLPBlock(self.mlp_dim, dropout_rate=self.dropout_rate, remat=self.remat,
                           dtype=self.dtype, param_dtype=self.param_dtype, name="mlp")(
                               x_BxTxD, deterministic=deterministic)
        return x_BxTxD if cache is None else (x_BxTxD, cache)
