"""PerceiverS: Perceiver AR latents over a long context, plus a windowed second cross-attention.

The last T positions of an S-long context are the latents (T = query_length, S up to the
context length L). They cross-attend the whole context with the causal offset mask (query t
sits at key position S - T + t), then a stack of causal self-attention blocks runs over the
latents only, and the logits of the T latent positions come out. PerceiverS adds a second
cross-attention "limited to the last W tokens" (`scale_window`), combined with the first by
`cascade` (its output is the second's query input), `sum` or `concat` + projection.
`scale_window=None` is plain Perceiver AR. `scale_mask` picks the reading of the limit:
"sliding", each latent sees the W tokens ending at its own position; "last", every latent sees
only the context's last W positions, causally (with W = N: causal self-attention over the
latents' own positions).
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from layers import MLPBlock, MultiHeadAttention, TransformerBlock
from layers.masks import SCALE_MASKS

Dtype = Any
COMBINATIONS = ("cascade", "sum", "concat")


def context_dropout_mask(rng: jax.Array, context_mask_BxS: jax.Array, query_length: int,
                         rate: float) -> jax.Array:
    """Drop each prefix key with probability `rate`; the T latent positions are always kept.

    Perceiver AR's cross-attend dropout, applied to the key mask so that positions, offsets
    and the causal and scale structure stay as they are.
    """
    B, S = context_mask_BxS.shape
    keep_BxS = jax.random.bernoulli(rng, 1.0 - rate, (B, S))
    is_latent_S = jnp.arange(S) >= S - query_length
    return context_mask_BxS & (keep_BxS | is_latent_S)


class MultiScaleCrossAttention(nn.Module):
    """Latents attend all of the context ("global") and, with `scale_window`, its recent part
    ("scale")."""

    num_heads: int
    head_dim: int
    scale_window: int | None = None
    scale_mask: str = "sliding"
    combination: str = "cascade"
    attention_impl: str = "auto"
    rotary_fraction: float = 0.5
    dropout_rate: float = 0.0
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, latents_BxTxD: jax.Array, context_BxSxD: jax.Array,
                 context_mask_BxS: jax.Array | None = None, *, deterministic: bool = True,
                 cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """Returns (latents, cache); cache holds "global" (and "scale") when decoding, else None."""
        if self.combination not in COMBINATIONS:
            raise ValueError(f"combination={self.combination!r}; expected one of {COMBINATIONS}")
        if self.scale_mask not in SCALE_MASKS:
            raise ValueError(f"scale_mask={self.scale_mask!r}; expected one of {SCALE_MASKS}")
        norm = functools.partial(nn.LayerNorm, dtype=self.dtype, param_dtype=self.param_dtype)
        drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
        context_BxSxD = norm(name="context_norm")(context_BxSxD)
        attention_cls = nn.remat(MultiHeadAttention) if self.remat else MultiHeadAttention
        new_cache = {}

        def attend(name: str, window: int | None, x_BxTxD: jax.Array) -> jax.Array:
            out_BxTxD, new_cache[name] = attention_cls(
                num_heads=self.num_heads, head_dim=self.head_dim, scale_window=window,
                scale_mask=self.scale_mask, attention_impl=self.attention_impl, rotary_fraction=self.rotary_fraction,
                dtype=self.dtype, param_dtype=self.param_dtype, name=name)(
                    x_BxTxD, context_BxSxD, context_mask_BxS, None, None,
                    None if cache is None else cache[name])
            return out_BxTxD

        x_BxTxD = latents_BxTxD
        query_BxTxD = norm(name="global_norm")(x_BxTxD)
        global_BxTxD = attend("global", None, query_BxTxD)
        if self.scale_window is None:
            x_BxTxD = x_BxTxD + drop(global_BxTxD)
        elif self.combination == "cascade":
            x_BxTxD = x_BxTxD + drop(global_BxTxD)
            x_BxTxD = x_BxTxD + drop(attend("scale", self.scale_window,
                                            norm(name="scale_norm")(x_BxTxD)))
        else:
            scale_BxTxD = attend("scale", self.scale_window, query_BxTxD)
            if self.combination == "sum":
                x_BxTxD = x_BxTxD + drop(global_BxTxD + scale_BxTxD)
            else:
                both_BxTx2D = jnp.concatenate([global_BxTxD, scale_BxTxD], axis=-1)
                x_BxTxD = x_BxTxD + drop(nn.Dense(
                    x_BxTxD.shape[-1], use_bias=False, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="combine")(both_BxTx2D))
        return x_BxTxD, (None if cache is None else new_cache)


class PerceiverS(nn.Module):
    """Token ids [B, S] -> float32 logits [B, T, V] of the last T positions.

    With `cache` (see `perceivers.cache.init_cache`) the call appends the S given tokens to the
    decoding caches, its T latents being the last T of them, and returns (logits, cache).
    """

    vocab_size: int
    query_length: int  # N: latents in training; a call may ask for fewer
    d_model: int
    num_heads: int
    num_layers: int  # self-attention blocks over the latents
    mlp_dim: int
    scale_window: int | None = None  # W; None = plain Perceiver AR
    scale_mask: str = "sliding"  # "sliding" or "last": the reading of "the last W tokens"
    combination: str = "cascade"
    rotary_fraction: float = 0.5  # share of each head rotated (Perceiver AR: 0.5 or 0.25)
    context_dropout: float = 0.0  # probability of dropping a prefix key in training
    dropout_rate: float = 0.0
    attention_impl: str = "auto"
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, ids_BxS: jax.Array, context_mask_BxS: jax.Array | None = None, *,
                 query_length: int | None = None, deterministic: bool = True,
                 cache: dict | None = None):
        """Args:
          context_mask_BxS: True = real token (contexts are left padded); default all real.
          query_length: latents T of this call (default `self.query_length`).
        """
        T, S = query_length or self.query_length, ids_BxS.shape[1]
        if T > S:
            raise ValueError(f"query_length {T} exceeds the {S} tokens given")
        if context_mask_BxS is None:
            context_mask_BxS = jnp.ones(ids_BxS.shape, bool)
        shared = dict(attention_impl=self.attention_impl, rotary_fraction=self.rotary_fraction,
                      dropout_rate=self.dropout_rate, remat=self.remat, dtype=self.dtype,
                      param_dtype=self.param_dtype)
        x_BxSxD = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="embed")(ids_BxS)
        latent_mask_BxT = context_mask_BxS[:, S - T:]
        cross_mask_BxS = context_mask_BxS
        if self.context_dropout > 0 and not deterministic:
            cross_mask_BxS = context_dropout_mask(self.make_rng("dropout"), context_mask_BxS, T,
                                                  self.context_dropout)
        latents_BxTxD, cross_cache = MultiScaleCrossAttention(
            num_heads=self.num_heads, head_dim=self.d_model // self.num_heads,
            scale_window=self.scale_window, scale_mask=self.scale_mask,
            combination=self.combination, **shared,
            name="cross_attention")(x_BxSxD[:, S - T:], x_BxSxD, cross_mask_BxS,
                                    deterministic=deterministic,
                                    cache=None if cache is None else cache["cross"])
        latents_BxTxD = MLPBlock(self.mlp_dim, dropout_rate=self.dropout_rate, remat=self.remat,
                                 dtype=self.dtype, param_dtype=self.param_dtype,
                                 name="cross_mlp")(latents_BxTxD, deterministic=deterministic)
        layer_caches = []
        for index in range(self.num_layers):
            out = TransformerBlock(
                num_heads=self.num_heads, head_dim=self.d_model // self.num_heads,
                mlp_dim=self.mlp_dim, causal=True, **shared, name=f"layer_{index}")(
                    latents_BxTxD, None, latent_mask_BxT, deterministic=deterministic,
                    cache=None if cache is None else cache["latents"][index])
            latents_BxTxD = out if cache is None else out[0]
            layer_caches.append(None if cache is None else out[1])
        latents_BxTxD = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype,
                                     name="final_norm")(latents_BxTxD)
        logits_BxTxV = nn.Dense(self.vocab_size, dtype=jnp.float32, param_dtype=self.param_dtype,
                                name="logits")(latents_BxTxD.astype(jnp.float32))
        if cache is None:
            return logits_BxTxV
        return logits_BxTxV, {"cross": cross_cache, "latents": tuple(layer_caches)}


def _seen_keys(context_length: int, query_length: int, lowest_key) -> int:
    """Keys seen in all by latents t = 0..N-1 at positions L - N + t, each seeing the keys
    from `lowest_key(position)` up to its own position (causal)."""
    L, N = context_length, query_length
    return sum(max(0, L - N + t + 1 - lowest_key(L - N + t)) for t in range(N))


def flops_per_token(model: PerceiverS, context_length: int) -> float:
    """Training FLOPs (forward and backward, 3x forward) per target token, i.e. per latent.

    Counts useful work only, at 2 FLOPs per multiply-add: attention scores and weighted values
    for the keys each latent sees (causal; the scale branch's window), key and value
    projections for the context positions some latent sees (globally L, in the scale branch
    N + W - 1 "sliding" or W "last"), shared out over the N latents.
    """
    L, N, D, F = context_length, model.query_length, model.d_model, model.mlp_dim
    branches = [(L, _seen_keys(L, N, lambda q: 0))]  # (keys projected, scores computed)
    if model.scale_window is not None:
        W = model.scale_window
        if model.scale_mask == "last":
            branches.append((min(W, L), _seen_keys(L, N, lambda q: max(0, L - W))))
        else:
            branches.append((min(N + W - 1, L), _seen_keys(L, N, lambda q: max(0, q - W + 1))))
    per_example = 0.0
    for projected, seen in branches:
        per_example += 2 * 2 * N * D * D  # query and output projections
        per_example += 2 * 2 * projected * D * D  # key and value projections
        per_example += 2 * 2 * seen * D  # scores and weighted values
    if model.scale_window is not None and model.combination == "concat":
        per_example += 2 * N * 2 * D * D
    per_example += 2 * 2 * N * D * F  # the cross-attention's MLP
    causal_pairs = N * (N + 1) // 2  # the latents' causal self-attention
    per_example += model.num_layers * (2 * 4 * N * D * D + 2 * 2 * N * D * F
                                       + 2 * 2 * causal_pairs * D)
    per_example += 2 * N * D * model.vocab_size  # logits
    return 3.0 * per_example / N
