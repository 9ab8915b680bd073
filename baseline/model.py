"""A self-contained pre-LN causal transformer (Linen); to be replaced by `layers` blocks."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Block(nn.Module):
    """Pre-LN self-attention and MLP with residuals."""

    num_heads: int
    mlp_dim: int
    dropout: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array, mask_Bx1xTxT: jax.Array, train: bool) -> jax.Array:
        h_BxTxD = nn.LayerNorm(dtype=self.dtype)(x_BxTxD)
        h_BxTxD = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dtype=self.dtype, dropout_rate=self.dropout,
            deterministic=not train, force_fp32_for_softmax=True)(h_BxTxD, mask=mask_Bx1xTxT)
        x_BxTxD = x_BxTxD + nn.Dropout(self.dropout, deterministic=not train)(h_BxTxD)
        h_BxTxD = nn.LayerNorm(dtype=self.dtype)(x_BxTxD)
        h_BxTxF = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype)(h_BxTxD))
        h_BxTxD = nn.Dense(x_BxTxD.shape[-1], dtype=self.dtype)(h_BxTxF)
        return x_BxTxD + nn.Dropout(self.dropout, deterministic=not train)(h_BxTxD)


class CausalTransformer(nn.Module):
    """Token ids [B, T] -> float32 logits [B, T, V]; tied input and output embeddings."""

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, ids_BxT: jax.Array, train: bool = False) -> jax.Array:
        embed = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype)
        positions_TxD = self.param("positions", nn.initializers.normal(0.02),
                                   (self.context_length, self.d_model))
        x_BxTxD = embed(ids_BxT) + positions_TxD[: ids_BxT.shape[1]].astype(self.dtype)
        mask_Bx1xTxT = nn.make_causal_mask(ids_BxT)
        for _ in range(self.num_layers):
            x_BxTxD = Block(self.num_heads, self.mlp_dim, self.dropout, self.dtype)(
                x_BxTxD, mask_Bx1xTxT, train)
        x_BxTxD = nn.LayerNorm(dtype=self.dtype)(x_BxTxD)
        return x_BxTxD.astype(jnp.float32) @ embed.embedding.T  # logits in float32


def flops_per_token(d_model: int, num_layers: int, mlp_dim: int, vocab_size: int,
                    context_length: int) -> float:
    """Training FLOPs per token, 6 N + 12 L T d (PaLM, appendix B): N matmul parameters,
    attention scores and values over the whole context (no causal halving)."""
    matmul_params = num_layers * (4 * d_model * d_model + 2 * d_model * mlp_dim)
    matmul_params += d_model * vocab_size  # output projection (tied)
    return 6.0 * matmul_params + 12.0 * num_layers * context_length * d_model
