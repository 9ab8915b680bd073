"""The Composer VAE's two halves: a bidirectional encoder and an in-attention decoder.

They are separate Linen modules with separate parameters ({"encoder": ..., "decoder": ...}),
so sampling applies the decoder alone. Both use rotary position embeddings.

The decoder reads a conditioning prefix before BOS: the idea's TimeSig, its Programs and its
bar count (`composer.ideas.prefix_ids`), so meter and instruments are given, not guessed.

The latent is [B, K, Z]: K = 1 latent for the whole idea, or one per bar (as in MuseMorphose)
or per equal part of each bar, each position reading the latent of the part it is in
(`composer.segments`: the encoder pools each part's positions, the decoder adds each
position's latent).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from composer.ideas import Conditions, prefix_ids
from composer.segments import Segments, used_latents
from layers import KVCache, TransformerBlock

Dtype = Any
PAD_ID, BOS_ID = 0, 1  # PerTok's; the model only needs to know which ids are padding
# Unit-variance token embeddings (Linen's default is 1/sqrt(vocab)): the latent added before
# every decoder layer has unit scale too, and would otherwise drown the tokens at the start.
EMBED_INIT = nn.initializers.normal(stddev=1.0)


def _add_positions(module: Any, x_BxTxD: jax.Array, positions_BxT: jax.Array | None) -> jax.Array:
    """x plus the embedding of each token's onset position in its bar, when the module has them:
    PerTok's time-shifts are relative, so without it a position must be summed from the history."""
    if not module.num_positions:
        return x_BxTxD
    if positions_BxT is None:
        raise ValueError("this model embeds onset positions: pass positions_BxT (Segments.positions)")
    return x_BxTxD + nn.Embed(module.num_positions, module.d_model, embedding_init=EMBED_INIT,
                              dtype=module.dtype, param_dtype=module.param_dtype,
                              name="onset_embed")(positions_BxT)


def _block(module: Any, causal: bool, name: str) -> TransformerBlock:
    return TransformerBlock(
        num_heads=module.num_heads, head_dim=module.d_model // module.num_heads,
        mlp_dim=module.mlp_dim, causal=causal, rotary_fraction=module.rotary_fraction,
        dropout_rate=module.dropout,
        dtype=module.dtype, param_dtype=module.param_dtype, name=name)


class IdeaEncoder(nn.Module):
    """(token ids [B, T] (BOS first), latent of each position [B, T]) -> (hidden [B, T, D],
    mu [B, K, Z], logvar [B, K, Z]).

    Every position sees every real token (no causal mask). With one latent (K = 1) the BOS
    position, which sees the whole idea, is pooled into the posterior's mean and log-variance;
    with more, the mean of the positions given to each latent (`ComposerModel.pooling_index`;
    a latent given none pools to 0).
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
    num_latents: int = 1  # K: 1 for the whole idea, or one per bar or part of a bar
    num_positions: int = 0  # onset positions in a bar, embedded and added (0 = none)

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, latents_BxT: jax.Array, positions_BxT: jax.Array | None = None,
                 *, deterministic: bool = True):
        x_BxTxD = nn.Embed(self.vocab_size, self.d_model, embedding_init=EMBED_INIT, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="embed")(ids_BxT)
        x_BxTxD = _add_positions(self, x_BxTxD, positions_BxT)
        real_BxT = ids_BxT != PAD_ID
        for index in range(self.num_layers):
            x_BxTxD = _block(self, False, f"layer_{index}")(
                x_BxTxD, kv_mask_BxT=real_BxT, deterministic=deterministic)
        x_BxTxD = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x_BxTxD)
        pooled_BxKxD = self._pool(x_BxTxD.astype(jnp.float32), latents_BxT, real_BxT)
        stats_BxKx2Z = nn.Dense(2 * self.latent_dim, dtype=jnp.float32, param_dtype=self.param_dtype,
                                name="posterior")(pooled_BxKxD)
        mu_BxKxZ, logvar_BxKxZ = jnp.split(stats_BxKx2Z, 2, axis=-1)
        return x_BxTxD, mu_BxKxZ, logvar_BxKxZ

    def _pool(self, x_BxTxD: jax.Array, latents_BxT: jax.Array, real_BxT: jax.Array) -> jax.Array:
        if self.num_latents == 1:
            return x_BxTxD[:, :1]
        member_BxTxK = ((latents_BxT[..., None] == jnp.arange(self.num_latents))
                        & real_BxT[..., None]).astype(jnp.float32)
        sums_BxKxD = jnp.einsum("btk,btd->bkd", member_BxTxK, x_BxTxD)
        return sums_BxKxD / jnp.maximum(member_BxTxK.sum(axis=1), 1.0)[..., None]


class IdeaDecoder(nn.Module):
    """(token ids [B, T], z [B, K, Z]) -> float32 logits [B, T, V], autoregressive.

    Ids may also be the `condition_ids` beyond the vocabulary (a prefix's bar count): they
    have embeddings but are never predicted.

    In-attention conditioning (MuseMorphose): one shared projection of z is added to the
    hidden state before every layer, the first included, so no layer can ignore the latent.
    Each position adds the projection of its latent, `latents_BxT` (`composer.segments`).
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
    num_positions: int = 0  # onset positions in a bar, embedded and added (0 = none)

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, z_BxKxZ: jax.Array, latents_BxT: jax.Array,
                 positions_BxT: jax.Array | None = None, *, deterministic: bool = True,
                 caches: list[KVCache] | None = None):
        x_BxTxD = nn.Embed(self.vocab_size + self.condition_ids, self.d_model,
                           embedding_init=EMBED_INIT, dtype=self.dtype,
                           param_dtype=self.param_dtype, name="embed")(ids_BxT)
        x_BxTxD = _add_positions(self, x_BxTxD, positions_BxT)
        latent_BxKxD = nn.Dense(self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
                                name="latent_projection")(z_BxKxZ)
        latent_BxTxD = jnp.take_along_axis(latent_BxKxD, latents_BxT[..., None], axis=1)
        new_caches = []
        for index in range(self.num_layers):
            x_BxTxD = x_BxTxD + latent_BxTxD.astype(x_BxTxD.dtype)
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
    segments: Segments

    @classmethod
    def from_config(cls, model, tokenizer, max_bars: int) -> ComposerModel:
        """Args: model: the config block (`latents_per_bar` absent, as in runs saved before it
        existed, = one latent per idea); max_bars: the longest idea (the bar counts embedded)."""
        shared = dict(vocab_size=tokenizer.vocab_size, d_model=model.d_model, num_heads=model.num_heads,
                      mlp_dim=model.mlp_dim, dropout=model.dropout,
                      rotary_fraction=model.rotary_fraction, dtype=jnp.dtype(model.dtype))
        segments = Segments.for_tokenizer(tokenizer, max_bars, model.get("latents_per_bar", 0))
        shared["num_positions"] = segments.num_positions if model.get("onset_embedding", False) else 0
        return cls(IdeaEncoder(num_layers=model.encoder_layers, latent_dim=model.latent_dim,
                               num_latents=segments.num_latents, **shared),
                   IdeaDecoder(num_layers=model.decoder_layers, condition_ids=max_bars, **shared),
                   model.max_programs, max_bars, segments)

    @property
    def embeds_positions(self) -> bool:
        return self.decoder.num_positions > 0

    def onset_positions(self, ids_BxT: jax.Array) -> jax.Array | None:
        """int32 [B, T] onset positions of ideas from BOS on, or None for a model without them."""
        return self.segments.positions(ids_BxT, xp=jnp) if self.embeds_positions else None

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(K, Z) of one idea's latent: K = 1, or one per bar or part of a bar."""
        return self.encoder.num_latents, self.encoder.latent_dim

    def latent_index(self, ids_BxT: jax.Array) -> jax.Array:
        """int32 [B, T]: the latent each token of ideas [BOS, tokens..., PAD...] reads."""
        return self.segments.index(ids_BxT, xp=jnp)

    def pooling_index(self, ids_BxT: jax.Array) -> jax.Array:
        """int32 [B, T]: the latent the encoder pools each token into: the one the decoder
        predicts it from (that of the token before it; BOS: the first). A time-shift into a
        later part is predicted while the decoder still reads the earlier part's latent, so
        that latent must hold it."""
        index_BxT = self.latent_index(ids_BxT)
        return jnp.concatenate([jnp.zeros_like(index_BxT[:, :1]), index_BxT[:, :-1]], axis=1)

    def latent_mask(self, ids_BxT: jax.Array) -> jax.Array:
        """bool [B, K]: the latents some token of each idea [BOS, tokens..., PAD...] reads."""
        return used_latents(self.latent_index(ids_BxT), ids_BxT != PAD_ID, self.encoder.num_latents, jnp)

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
        z_BxKxZ = jnp.zeros((batch, *self.latent_shape), jnp.float32)
        decoder_ids = jnp.concatenate([self.open_prefix(batch), ids_BxT], axis=1)
        zeros = jnp.zeros(decoder_ids.shape, jnp.int32)
        return {"encoder": self.encoder.init(encoder_rng, ids_BxT, self.pooling_index(ids_BxT),
                                             self.onset_positions(ids_BxT))["params"],
                "decoder": self.decoder.init(decoder_rng, decoder_ids, z_BxKxZ, zeros, zeros)["params"]}

    def encode(self, params: dict, ids_BxT: jax.Array, *, deterministic: bool = True,
               rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Posterior (mu, logvar) [B, K, Z] of ideas given as [BOS, tokens..., PAD...]."""
        rngs = {"dropout": rng} if rng is not None else {}
        _, mu_BxKxZ, logvar_BxKxZ = self.encoder.apply(
            {"params": params["encoder"]}, ids_BxT, self.pooling_index(ids_BxT),
            self.onset_positions(ids_BxT), deterministic=deterministic, rngs=rngs)
        return mu_BxKxZ, logvar_BxKxZ

    def decode(self, params: dict, ids_BxT: jax.Array, z_BxKxZ: jax.Array,
               prefix_BxP: jax.Array | None = None, *, latents_BxT: jax.Array | None = None,
               positions_BxT: jax.Array | None = None, deterministic: bool = True,
               rng: jax.Array | None = None, caches: list[KVCache] | None = None):
        """Next-token logits [B, T, V] of `ids` (and the caches when given).

        Without caches the ids start at BOS and `prefix_BxP` is required (None = every field
        open). With caches the ids continue what the caches hold (see `prefill`); a prefix
        given then is decoded first and its logits left out. `latents_BxT` / `positions_BxT`:
        each id's latent and onset position (`latent_index`, `onset_positions` of ids from BOS
        on), which cached calls must give (with K > 1 / a model that embeds positions).
        """
        rngs = {"dropout": rng} if rng is not None else {}
        if caches is None:
            latents_BxT = self.latent_index(ids_BxT) if latents_BxT is None else latents_BxT
            positions_BxT = self.onset_positions(ids_BxT) if positions_BxT is None else positions_BxT
        elif latents_BxT is None and self.latent_shape[0] > 1:
            raise ValueError("cached decoding with several latents per idea needs latents_BxT "
                             "(each new token's latent: Segments.current)")
        latents_BxT = jnp.zeros(ids_BxT.shape, jnp.int32) if latents_BxT is None else latents_BxT
        if prefix_BxP is None and caches is None:
            prefix_BxP = self.open_prefix(ids_BxT.shape[0])
        if prefix_BxP is not None:  # the prefix reads the first latent, at position 0
            ids_BxT = jnp.concatenate([jnp.asarray(prefix_BxP, jnp.int32), ids_BxT], axis=1)
            zeros_BxP = jnp.zeros(prefix_BxP.shape, jnp.int32)
            latents_BxT = jnp.concatenate([zeros_BxP, latents_BxT], axis=1)
            if positions_BxT is not None:
                positions_BxT = jnp.concatenate([zeros_BxP, positions_BxT], axis=1)
        out = self.decoder.apply({"params": params["decoder"]}, ids_BxT, z_BxKxZ, latents_BxT,
                                 positions_BxT, deterministic=deterministic, caches=caches, rngs=rngs)
        skip = 0 if prefix_BxP is None else prefix_BxP.shape[1]
        if caches is None:
            return out[:, skip:]
        return out[0][:, skip:], out[1]

    def empty_caches(self, batch: int, max_length: int) -> list[KVCache]:
        """One empty KVCache per decoder layer for `max_length` tokens after the prefix."""
        d = self.decoder
        return [KVCache.init(batch, self.prefix_length + max_length, d.num_heads,
                             d.d_model // d.num_heads, d.dtype) for _ in range(d.num_layers)]

    def prefill(self, params: dict, prefix_BxP: jax.Array, z_BxKxZ: jax.Array,
                max_length: int) -> list[KVCache]:
        """Caches that hold the prefix (its keys depend on the first latent through
        in-attention), with room for `max_length` more tokens: feed BOS next, then each
        sampled token (with its latent, `Segments.current`)."""
        caches = self.empty_caches(prefix_BxP.shape[0], max_length)
        zeros_BxP = jnp.zeros(prefix_BxP.shape, jnp.int32)
        _, caches = self.decoder.apply({"params": params["decoder"]}, jnp.asarray(prefix_BxP, jnp.int32),
                                       z_BxKxZ, zeros_BxP, zeros_BxP, caches=caches)
        return caches


def flops_per_token(model, vocab_size: int, context_length: int) -> float:
    """Training FLOPs per decoder target token: 6 x matmul parameters + attention, both halves."""
    per_layer = 4 * model.d_model ** 2 + 2 * model.d_model * model.mlp_dim
    layers = model.encoder_layers + model.decoder_layers
    matmul_params = layers * per_layer + model.d_model * vocab_size
    attention = layers * 2 * context_length * model.d_model
    return 6.0 * matmul_params + 6.0 * attention
