"""Rotary position embeddings (RoPE), full or on a fraction of the head dimension."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def rotary_dim(head_dim: int, fraction: float) -> int:
    """Number of leading head channels rotated for `fraction` of `head_dim` (even, may be 0)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rotary fraction must be in [0, 1], got {fraction}")
    rotated = int(round(head_dim * fraction))
    if rotated % 2:
        raise ValueError(f"rotary fraction {fraction} of head_dim {head_dim} gives {rotated} "
                         "channels; it must be even (channels rotate in pairs)")
    return rotated


def apply_rotary(
    x_BxTxHxD: jax.Array,
    positions: jax.Array | int,
    *,
    fraction: float = 1.0,
    base: float = 10000.0,
) -> jax.Array:
    """Rotate the first `fraction` of each head's channels by angles proportional to position.

    Positions are explicit so that offsets (Perceiver AR latents) and decoding caches line up:
    dot products of rotated queries and keys then depend only on position differences.

    Args:
      x_BxTxHxD: queries or keys.
      positions: [B, T] or [T] absolute positions, or an int T meaning 0..T-1.
      fraction: share of the head dimension to rotate; the rest passes through unchanged.
      base: wavelength base of the channel frequencies.
    """
    head_dim = x_BxTxHxD.shape[-1]
    rotated = rotary_dim(head_dim, fraction)
    if rotated == 0:
        return x_BxTxHxD
    if isinstance(positions, int):
        positions = jnp.arange(positions)
    positions_BxT = jnp.broadcast_to(jnp.asarray(positions), x_BxTxHxD.shape[:2])
    inv_freq_F = base ** (-jnp.arange(0, rotated, 2, dtype=jnp.float32) / rotated)
    angles_BxTx1xF = (positions_BxT.astype(jnp.float32)[..., None] * inv_freq_F)[:, :, None, :]
    sin, cos = jnp.sin(angles_BxTx1xF), jnp.cos(angles_BxTx1xF)
    # Rotate in float32: bfloat16 angles lose the low frequencies at long positions.
    x = x_BxTxHxD[..., :rotated].astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)  # channel i pairs with i + rotated / 2 (NeoX layout)
    rotated_x = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return jnp.concatenate([rotated_x.astype(x_BxTxHxD.dtype), x_BxTxHxD[..., rotated:]], axis=-1)
