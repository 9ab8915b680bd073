"""The Performer: a bidirectional transformer that fills masked MicroTiming and Velocity slots."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from layers import TransformerBlock
from performer.slots import MICROTIMING_SLOT, NUM_SLOT_KINDS, VELOCITY_SLOT

Dtype = Any
PAD_ID = 0
_NEVER = -1e9  # finite, so a fully restricted row never turns into NaN


def restrict_logits(logits_BxTxV: jax.Array, kinds_BxT: jax.Array, microtiming_ids: tuple[int, int],
                    velocity_ids: tuple[int, int]) -> jax.Array:
    """Logits of a MicroTiming slot outside the MicroTiming ids (and of a Velocity slot outside
    the Velocity ids) set to a large negative value; other positions unchanged. float32.

    Args:
      microtiming_ids, velocity_ids: [first, stop) id range of each token type.
    """
    vocab_V = jnp.arange(logits_BxTxV.shape[-1])
    in_microtiming_V = (vocab_V >= microtiming_ids[0]) & (vocab_V < microtiming_ids[1])
    in_velocity_V = (vocab_V >= velocity_ids[0]) & (vocab_V < velocity_ids[1])
    kinds_BxTx1 = kinds_BxT[..., None]
    allowed_BxTxV = jnp.where(kinds_BxTx1 == MICROTIMING_SLOT, in_microtiming_V,
                              jnp.where(kinds_BxTx1 == VELOCITY_SLOT, in_velocity_V, True))
    return jnp.where(allowed_BxTxV, logits_BxTxV.astype(jnp.float32), _NEVER)


class Performer(nn.Module):
    """(ids [B, T] with MASK in the slots to fill, slot kinds [B, T]) -> restricted float32
    logits [B, T, V].

    The slot kind is embedded and added to the token embedding, so the model knows which of
    the two MASKs after a note is its timing and which its loudness, and that the first
    position (LEVEL_SLOT) holds the piece's dynamic level. Slots that hold a value are given
    performance the others condition on.
    """

    vocab_size: int
    microtiming_ids: tuple[int, int]
    velocity_ids: tuple[int, int]
    d_model: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    rotary_fraction: float = 0.5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, kinds_BxT: jax.Array, *,
                 deterministic: bool = True) -> jax.Array:
        # Unit-variance embeddings, so neither the token nor the slot kind drowns the other.
        embed = lambda size, name: nn.Embed(  # noqa: E731
            size, self.d_model, embedding_init=nn.initializers.normal(stddev=1.0),
            dtype=self.dtype, param_dtype=self.param_dtype, name=name)
        x_BxTxD = embed(self.vocab_size, "embed")(ids_BxT) + embed(NUM_SLOT_KINDS, "slot_embed")(kinds_BxT)
        real_BxT = ids_BxT != PAD_ID
        for index in range(self.num_layers):
            x_BxTxD = TransformerBlock(
                num_heads=self.num_heads, head_dim=self.d_model // self.num_heads,
                mlp_dim=self.mlp_dim, causal=False, rotary_fraction=self.rotary_fraction,
                dropout_rate=self.dropout, dtype=self.dtype, param_dtype=self.param_dtype,
                name=f"layer_{index}")(x_BxTxD, kv_mask_BxT=real_BxT, deterministic=deterministic)
        x_BxTxD = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x_BxTxD)
        logits_BxTxV = nn.Dense(self.vocab_size, dtype=jnp.float32, param_dtype=self.param_dtype,
                                name="logits")(x_BxTxD.astype(jnp.float32))
        return restrict_logits(logits_BxTxV, kinds_BxT, self.microtiming_ids, self.velocity_ids)


def flops_per_token(model, vocab_size: int, context_length: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + bidirectional attention."""
    matmul_params = model.num_layers * (4 * model.d_model ** 2 + 2 * model.d_model * model.mlp_dim)
    matmul_params += model.d_model * vocab_size
    return 6.0 * matmul_params + 6.0 * model.num_layers * 2 * context_length * model.d_model
