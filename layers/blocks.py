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

from layers.attention import attention
from layers.cache import KVCache
from layers.rotary import apply_rotary

Dtype = Any


class MultiHeadAttention(nn.Module):
    """Query/key/value projections, rotary embeddings, `attention`, output projection."""

    num_heads: int
    head_dim: int
    q_offset: int | None = None  # None: S - T (queries are the last T key positions)
    causal: bool = True
    scale_window: int | None = None
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
        """Returns (y_BxTxD, cache); cache is None when none was given."""
        dense = functools.partial(nn.DenseGeneral, features=(self.num_heads, self.head_dim),
                                  use_bias=self.use_bias, dtype=self.dtype,
                                  param_dtype=self.param_dtype)
        q_BxTxHxD = dense(name="query")(x_BxTxD)
        k_BxSxHxD = dense(name="key")(context_BxSxD)
        v_BxSxHxD = dense(name="value")(context_BxSxD)
        T, S = x_BxTxD.shape[1], context_BxSxD.shape[1]
        # Absolute key position of the first new key, and of query 0 (traced when decoding).
        key_start = 0 if cache is None else cache.length
        q_offset = (S - T if self.q_offset is None else self.q_offset) + key_start
        if self.rotary_fraction > 0:
            q_pos = q_offset + jnp.arange(T) if q_positions_BxT is None else q_positions_BxT
            k_pos = key_start + jnp.arange(S) if kv_positions_BxS is None else kv_positions_BxS
            rotate = functools.partial(apply_rotary, fraction=self.rotary_fraction,
                                       base=self.rotary_base)
            q_BxTxHxD, k_BxSxHxD = rotate(q_BxTxHxD, q_pos), rotate(k_BxSxHxD, k_pos)
        if cache is None:
            out_BxTxHxD = attention(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, q_offset=q_offset,
                                    causal=self.causal, scale_window=self.scale_window,
                                    kv_mask=kv_mask_BxS, impl=self.attention_impl)
        else:
            if self.q_offset is not None and self.q_offset != S - T:
                raise ValueError(f"decoding puts the {T} queries at the last positions; "
                                 f"q_offset={self.q_offset} != S - T = {S - T}")
            cache = cache.append(k_BxSxHxD, v_BxSxHxD, kv_mask_BxS)
            out_BxTxHxD = cache.attend(q_BxTxHxD, causal=self.causal,
                                       scale_window=self.scale_window)
        y_BxTxD = nn.DenseGeneral(features=x_BxTxD.shape[-1], axis=(-2, -1),
                                  use_bias=self.use_bias, dtype=self.dtype,
                                  param_dtype=self.param_dtype, name="out")(out_BxTxHxD)
        return y_BxTxD, cache


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
                scale_window=block.scale_window, attention_impl=block.attention_impl,
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
