"""The Composer VAE's two halves: a bidirectional encoder and an in-attention decoder.

They are separate Linen modules with separate parameters ({"encoder": ..., "decoder": ...}),
so sampling applies the decoder alone. Both use rotary position embeddings.

The decoder reads a conditioning prefix before BOS: the idea's TimeSig, its Programs and its
bar count (`composer.ideas.prefix_ids`), so meter and instruments are given, not guessed.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from composer.ideas import Conditions, prefix_ids
from layers import KVCache, TransformerBlock

Dtype = Any
PAD_ID, BOS_ID = 0, 1  # PerTok's; the model only needs to know which ids are padding
# Unit-variance token embeddings (Linen's default is 1/sqrt(vocab)): the latent added before
# every decoder layer has unit scale too, and would otherwise drown the tokens at the start.
EMBED_INIT = nn.initializers.normal(stddev=1.0)


def _block(module: Any, causal: bool, name: str) -> TransformerBlock:
    return TransformerBlock(
        num_heads=module.num_heads, head_dim=module.d_model // module.num_heads,
        mlp_dim=module.mlp_dim, causal=causal, rotary_fraction=module.rotary_fraction,
        dropout_rate=module.dropout,
        dtype=module.dtype, param_dtype=module.param_dtype, name=name)


class IdeaEncoder(nn.Module):
    """Token ids [B, T] (BOS first) -> (hidden [B, T, D], mu [B, Z], logvar [B, Z]).

    Every position sees every real token (no causal mask); the BOS position, which sees the
    whole idea, is pooled into the posterior's mean and log-variance.
    """

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    latent_dim: int
    dropout: float = 0.0
    rotary_fraction: float = 0.5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, *, deterministic: bool = True):
        x_BxTxD = nn.Embed(self.vocab_size, self.d_model, embedding_init=EMBED_INIT, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="embed")(ids_BxT)
        real_BxT = ids_BxT != PAD_ID
        for index in range(self.num_layers):
            x_BxTxD = _block(self, False, f"layer_{index}")(
                x_BxTxD, kv_mask_BxT=real_BxT, deterministic=deterministic)
        x_BxTxD = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x_BxTxD)
        pooled_BxD = x_BxTxD[:, 0].astype(jnp.float32)
        stats_Bx2Z = nn.Dense(2 * self.latent_dim, dtype=jnp.float32, param_dtype=self.param_dtype,
                              name="posterior")(pooled_BxD)
        mu_BxZ, logvar_BxZ = jnp.split(stats_Bx2Z, 2, axis=-1)
        return x_BxTxD, mu_BxZ, logvar_BxZ


class IdeaDecoder(nn.Module):
    """(token ids [B, T], z [B, Z]) -> float32 logits [B, T, V], autoregressive.

    Ids may also be the `condition_ids` beyond the vocabulary (a prefix's bar count): they
    have embeddings but are never predicted.

    In-attention conditioning (MuseMorphose): one shared projection of z is added to the
    hidden state before every layer, the first included, so no layer can ignore the latent.
    With `caches` (one KVCache per layer) the ids are the next tokens after the cached ones
    and the call returns (logits, caches).
    """

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    rotary_fraction: float = 0.5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    condition_ids: int = 0  # embedded ids past the vocabulary (bar counts of the prefix)

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, z_BxZ: jax.Array, *, deterministic: bool = True,
                 caches: list[KVCache] | None = None):
        x_BxTxD = nn.Embed(self.vocab_size + self.condition_ids, self.d_model,
                           embedding_init=EMBED_INIT, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="embed")(ids_BxT)
        latent_BxD = nn.Dense(self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
                              name="latent_projection")(z_BxZ)
        new_caches = []
        for index in range(self.num_layers):
            x_BxTxD = x_BxTxD + latent_BxD[:, None, :].astype(x_BxTxD.dtype)
            block = _block(self, True, f"layer_{index}")
            if caches is None:
                x_BxTxD = block(x_BxTxD, deterministic=deterministic)
            else:
                x_BxTxD, cache = block(x_BxTxD, deterministic=deterministic, cache=caches[index])
                new_caches.append(cache)
        x_BxTxD = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x_BxTxD)
        # Untied from the unit-scale input embedding, so the initial logits stay small.
        logits_BxTxV = nn.Dense(self.vocab_size, dtype=jnp.float32, param_dtype=self.param_dtype,
                                name="logits")(x_BxTxD.astype(jnp.float32))
        return logits_BxTxV if caches is None else (logits_BxTxV, new_caches)


@dataclasses.dataclass(frozen=True)
class ComposerModel:
    """The encoder and decoder built from one `model` config block, and the decoder's prefix.

    The decoder always reads `prefix_length` conditioning ids before BOS (fields left open
    are UNKNOWN), so every call that decodes passes `prefix_BxP`, or `prefill`s a cache with it.
    """

    encoder: IdeaEncoder
    decoder: IdeaDecoder
    max_programs: int
    max_bars: int

    @classmethod
    def from_config(cls, model, vocab_size: int, max_bars: int) -> ComposerModel:
        """Args: model: the config block; max_bars: the longest idea (the bar counts embedded)."""
        shared = dict(vocab_size=vocab_size, d_model=model.d_model, num_heads=model.num_heads,
                      mlp_dim=model.mlp_dim, dropout=model.dropout,
                      rotary_fraction=model.rotary_fraction, dtype=jnp.dtype(model.dtype))
        return cls(IdeaEncoder(num_layers=model.encoder_layers, latent_dim=model.latent_dim, **shared),
                   IdeaDecoder(num_layers=model.decoder_layers, condition_ids=max_bars, **shared),
                   model.max_programs, max_bars)

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    @property
    def prefix_length(self) -> int:
        """Conditioning ids before BOS: TimeSig, max_programs Programs, bar count."""
        return self.max_programs + 2

    def prefix_ids(self, conditions: Conditions) -> np.ndarray:
        """int32 [prefix_length]: the decoder's prefix for `conditions` (see ideas.prefix_ids)."""
        return prefix_ids(conditions, vocab_size=self.decoder.vocab_size,
                          max_programs=self.max_programs, max_bars=self.max_bars)

    def open_prefix(self, batch: int) -> jax.Array:
        """int32 [B, prefix_length] with every field open: an idea of any meter and instruments."""
        return jnp.full((batch, self.prefix_length), PAD_ID, jnp.int32)

    def init(self, rng: jax.Array, ids_BxT: jax.Array) -> dict:
        encoder_rng, decoder_rng = jax.random.split(rng)
        batch = ids_BxT.shape[0]
        z_BxZ = jnp.zeros((batch, self.latent_dim), jnp.float32)
        decoder_ids = jnp.concatenate([self.open_prefix(batch), ids_BxT], axis=1)
        return {"encoder": self.encoder.init(encoder_rng, ids_BxT)["params"],
                "decoder": self.decoder.init(decoder_rng, decoder_ids, z_BxZ)["params"]}

    def encode(self, params: dict, ids_BxT: jax.Array, *, deterministic: bool = True,
               rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Posterior (mu, logvar) [B, Z] of ideas given as [BOS, tokens..., PAD...]."""
        rngs = {"dropout": rng} if rng is not None else {}
        _, mu_BxZ, logvar_BxZ = self.encoder.apply({"params": params["encoder"]}, ids_BxT,
                                                   deterministic=deterministic, rngs=rngs)
        return mu_BxZ, logvar_BxZ

    def decode(self, params: dict, ids_BxT: jax.Array, z_BxZ: jax.Array,
               prefix_BxP: jax.Array | None = None, *, deterministic: bool = True,
               rng: jax.Array | None = None, caches: list[KVCache] | None = None):
        """Next-token logits [B, T, V] of `ids` (and the caches when given).

        Without caches the ids start at BOS and `prefix_BxP` is required (None = every field
        open). With caches the ids continue what the caches hold (see `prefill`); a prefix
        given then is decoded first and its logits left out.
        """
        rngs = {"dropout": rng} if rng is not None else {}
        if prefix_BxP is None and caches is None:
            prefix_BxP = self.open_prefix(ids_BxT.shape[0])
        if prefix_BxP is not None:
            ids_BxT = jnp.concatenate([jnp.asarray(prefix_BxP, jnp.int32), ids_BxT], axis=1)
        out = self.decoder.apply({"params": params["decoder"]}, ids_BxT, z_BxZ,
                                 deterministic=deterministic, caches=caches, rngs=rngs)
        skip = 0 if prefix_BxP is None else prefix_BxP.shape[1]
        if caches is None:
            return out[:, skip:]
        return out[0][:, skip:], out[1]

    def empty_caches(self, batch: int, max_length: int) -> list[KVCache]:
        """One empty KVCache per decoder layer for `max_length` tokens after the prefix."""
        d = self.decoder
        return [KVCache.init(batch, self.prefix_length + max_length, d.num_heads,
                             d.d_model // d.num_heads, d.dtype) for _ in range(d.num_layers)]

    def prefill(self, params: dict, prefix_BxP: jax.Array, z_BxZ: jax.Array,
                max_length: int) -> list[KVCache]:
        """Caches that hold the prefix (its keys depend on z through in-attention), with room
        for `max_length` more tokens: feed BOS next, then each sampled token."""
        caches = self.empty_caches(prefix_BxP.shape[0], max_length)
        _, caches = self.decoder.apply({"params": params["decoder"]}, jnp.asarray(prefix_BxP, jnp.int32),
                                       z_BxZ, caches=caches)
        return caches


def flops_per_token(model, vocab_size: int, context_length: int) -> float:
    """Training FLOPs per decoder target token: 6 x matmul parameters + attention, both halves."""
    per_layer = 4 * model.d_model ** 2 + 2 * model.d_model * model.mlp_dim
    layers = model.encoder_layers + model.decoder_layers
    matmul_params = layers * per_layer + model.d_model * vocab_size
    attention = layers * 2 * context_length * model.d_model
    return 6.0 * matmul_params + 6.0 * attention
