"""The variational pieces of the Composer as plain functions: KL, free bits, the per-token KL
term, reparameterisation and the cyclical beta schedule. All in float32."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def kl_per_dimension(mu_BxZ: jax.Array, logvar_BxZ: jax.Array) -> jax.Array:
    """KL(N(mu, sigma^2) || N(0, 1)) of each latent dimension, in nats: [B, Z]."""
    mu_BxZ, logvar_BxZ = mu_BxZ.astype(jnp.float32), logvar_BxZ.astype(jnp.float32)
    return 0.5 * (jnp.square(mu_BxZ) + jnp.exp(logvar_BxZ) - 1.0 - logvar_BxZ)


def batch_mean_kl(kl_BxKxZ: jax.Array, used_BxK: jax.Array | None = None) -> jax.Array:
    """KL of each latent dimension averaged over the ideas that use it: [K, Z] (or [Z] for a
    [B, Z] input without a mask). `used_BxK` marks the latents an idea has (its bars)."""
    if used_BxK is None:
        return kl_BxKxZ.mean(axis=0)
    weights_BxKx1 = used_BxK[..., None].astype(jnp.float32)
    return (kl_BxKxZ * weights_BxKx1).sum(axis=0) / jnp.maximum(weights_BxKx1.sum(axis=0), 1.0)


def free_bits_kl(kl_BxZ: jax.Array, free_bits: float, used_BxK: jax.Array | None = None) -> jax.Array:
    """Sum over dimensions of max(batch-mean KL of the dimension, free_bits) (Kingma et al. 2016).

    A dimension whose KL is below `free_bits` nats gets no gradient from the KL term, so the
    optimiser has no reason to push it all the way to the prior (posterior collapse). With
    several latents per idea (kl [B, K, Z], `used_BxK`), one no idea of the batch reads costs nothing.
    """
    floored = jnp.maximum(batch_mean_kl(kl_BxZ, used_BxK), free_bits)
    if used_BxK is not None:
        floored = jnp.where(used_BxK.any(axis=0)[:, None], floored, 0.0)
    return floored.sum()


def idea_kl(kl_BxKxZ: jax.Array, used_BxK: jax.Array | None = None) -> jax.Array:
    """Nats per idea (summed over its latents and dimensions, no free bits), batch mean."""
    if used_BxK is None:
        return kl_BxKxZ.mean(axis=0).sum()
    return (kl_BxKxZ * used_BxK[..., None]).sum() / kl_BxKxZ.shape[0]


def per_token_kl(kl_BxZ: jax.Array, free_bits: float, target_tokens_B: jax.Array,
                 used_BxK: jax.Array | None = None) -> jax.Array:
    """The KL term of the per-token ELBO: free-bits KL in nats per idea / target tokens per idea.

    The reconstruction loss is a mean per target token, so the KL must be divided by the same
    tokens for beta to mean what it says: one nat stored in z then costs beta nats and can save
    up to one nat of the idea's reconstruction. (A mean over latent dimensions instead makes the
    effective beta beta x T / Z, several times 1, and pins every dimension at the free-bits floor.)
    """
    mean_tokens = jnp.maximum(target_tokens_B.astype(jnp.float32).mean(), 1.0)
    return free_bits_kl(kl_BxZ, free_bits, used_BxK) / mean_tokens


def reparameterize(mu_BxZ: jax.Array, logvar_BxZ: jax.Array, eps_BxZ: jax.Array,
                   strength: float | jax.Array = 1.0) -> jax.Array:
    """z = mu + strength * sigma * eps; strength 1 samples the posterior, 0 gives its mean.

    A strength between 0 and 1 is a variation that stays closer to the encoded idea.
    """
    sigma_BxZ = jnp.exp(0.5 * logvar_BxZ.astype(jnp.float32))
    return mu_BxZ.astype(jnp.float32) + strength * sigma_BxZ * eps_BxZ.astype(jnp.float32)


def cycle_steps_for(train_steps: int, warmup_steps: int, cycles: int) -> int:
    """Steps per beta cycle so that `cycles` cycles fill the run after the warm-up (0 = flat beta).

    A run too short for its warm-up and cycles (a smoke test of a few steps) gets 1-step
    cycles, which keep beta at 0: it trains as a plain autoencoder.
    """
    if cycles <= 0:
        return 0
    return max((train_steps - warmup_steps) // cycles, 1)


def cyclical_beta(step: jax.Array | int, *, beta_max: float, warmup_steps: int, cycle_steps: int,
                  ramp_fraction: float) -> jax.Array:
    """KL weight at `step`: 0 during the zero-KL warm-up, then cycles (Fu et al. 2019).

    Each cycle of `cycle_steps` rises linearly from 0 to `beta_max` over its first
    `ramp_fraction` and stays there for the rest of the cycle. `cycle_steps == 0` turns the
    cycles off: beta is `beta_max` from the end of the warm-up on.
    """
    step = jnp.asarray(step, jnp.float32)
    after_warmup = step - warmup_steps
    if cycle_steps <= 0:
        return jnp.where(after_warmup < 0, 0.0, beta_max).astype(jnp.float32)
    phase = jnp.mod(jnp.maximum(after_warmup, 0.0), cycle_steps) / cycle_steps
    ramp = jnp.minimum(phase / ramp_fraction, 1.0) if ramp_fraction > 0 else jnp.ones_like(phase)
    return jnp.where(after_warmup < 0, 0.0, beta_max * ramp).astype(jnp.float32)


def dimensions_above(kl_BxZ: jax.Array, free_bits: float, used_BxK: jax.Array | None = None) -> jax.Array:
    """Latent dimensions whose batch-mean KL exceeds the free-bits floor: the ones that pay
    for carrying information (with several latents per idea, counted over all their dimensions).
    (A Var(mu) > 0.01 "active units" count reads every dimension as active even when each
    holds only its free 0.25 nats, so it cannot show collapse.)"""
    return (batch_mean_kl(kl_BxZ, used_BxK) > free_bits).sum().astype(jnp.float32)


def interpolate(z_a_Z: jax.Array, z_b_Z: jax.Array, num_points: int) -> jax.Array:
    """`num_points` latents on the straight line from z_a to z_b, both ends included: [N, ...]
    (z_a and z_b of one shape: [Z], or [K, Z] with several latents per idea)."""
    weights = jnp.linspace(0.0, 1.0, num_points, dtype=jnp.float32).reshape((-1,) + (1,) * z_a_Z.ndim)
    return (1.0 - weights) * z_a_Z[None] + weights * z_b_Z[None]
