"""The VAE's plain functions: KL (closed form and Monte Carlo), free bits, the per-token KL term,
reparameterisation, the cyclical beta schedule and its length, dimensions above free bits,
interpolation, top-p."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composer import (cyclical_beta, dimensions_above, free_bits_kl, interpolate, kl_per_dimension,
                      per_token_kl, reparameterize, top_p_logits, variation_latents)
from composer.vae import batch_mean_kl, cycle_steps_for, idea_kl


def test_kl_equals_the_closed_form_with_sigma():
    mu = np.array([[0.0, 1.0, -2.0, 0.5]], np.float32)
    sigma = np.array([[1.0, 1.0, 0.5, 3.0]], np.float32)
    expected = np.log(1 / sigma) + (sigma**2 + mu**2) / 2 - 0.5
    got = kl_per_dimension(jnp.asarray(mu), jnp.asarray(2 * np.log(sigma)))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert float(got[0, 0]) == 0.0  # the prior itself


def test_kl_equals_a_monte_carlo_estimate():
    mu, logvar = jnp.array([0.7, -1.2, 0.0]), jnp.array([-0.5, 0.8, -2.0])
    z = reparameterize(mu[None], logvar[None], jax.random.normal(jax.random.key(0), (200_000, 3)))
    log_q = -0.5 * (jnp.square(z - mu) / jnp.exp(logvar) + logvar + jnp.log(2 * jnp.pi))
    log_p = -0.5 * (jnp.square(z) + jnp.log(2 * jnp.pi))
    samples = np.asarray(log_q - log_p)
    standard_error = samples.std(0) / np.sqrt(len(samples))
    closed = np.asarray(kl_per_dimension(mu[None], logvar[None])[0])
    assert np.all(np.abs(samples.mean(0) - closed) < 4 * standard_error + 1e-4)


def test_free_bits_clamp_the_batch_mean_per_dimension_and_stop_its_gradient():
    kl = jnp.array([[0.1, 2.0], [0.3, 4.0]])  # batch means 0.2 and 3.0
    assert float(free_bits_kl(kl, 0.5)) == pytest.approx(0.5 + 3.0)
    assert float(free_bits_kl(kl, 0.0)) == pytest.approx(0.2 + 3.0)
    gradient = jax.grad(free_bits_kl)(kl, 0.5)
    np.testing.assert_array_equal(gradient, [[0.0, 0.5], [0.0, 0.5]])


def test_reparameterize_strength_scales_the_noise():
    mu, logvar, eps = jnp.array([[1.0, -1.0]]), jnp.log(jnp.array([[4.0, 0.25]])), jnp.array([[1.0, 2.0]])
    np.testing.assert_allclose(reparameterize(mu, logvar, eps, 0.0), mu)
    np.testing.assert_allclose(reparameterize(mu, logvar, eps), [[3.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(reparameterize(mu, logvar, eps, 0.5), [[2.0, -0.5]], atol=1e-6)


def test_cyclical_beta_has_a_zero_warmup_then_ramps_in_each_cycle():
    beta = lambda step, cycle=100: float(cyclical_beta(  # noqa: E731
        step, beta_max=2.0, warmup_steps=10, cycle_steps=cycle, ramp_fraction=0.5))
    assert [beta(s) for s in (0, 9)] == [0.0, 0.0]
    assert [beta(s) for s in (10, 35, 60, 109)] == pytest.approx([0.0, 1.0, 2.0, 2.0])
    assert [beta(s) for s in (110, 135)] == pytest.approx([0.0, 1.0])  # the next cycle
    assert [beta(s, cycle=0) for s in (9, 10, 10_000)] == [0.0, 2.0, 2.0]


def test_per_token_kl_divides_the_free_bits_kl_by_the_target_tokens_per_idea():
    kl = jnp.array([[0.1, 2.0, 6.0], [0.3, 4.0, 2.0]])  # batch means 0.2, 3.0, 4.0
    tokens = jnp.array([10.0, 30.0])  # 20 per idea on average
    assert float(per_token_kl(kl, 0.5, tokens)) == pytest.approx((0.5 + 3.0 + 4.0) / 20)
    # One more nat in one idea's z costs 1 / (B x mean tokens) = 1 / 40 of a nat per target token,
    # the same as one nat of that idea's reconstruction in a loss that is a mean over 40 tokens.
    gradient = jax.grad(per_token_kl)(kl, 0.5, tokens)
    np.testing.assert_allclose(gradient, [[0.0, 1 / 40, 1 / 40], [0.0, 1 / 40, 1 / 40]], rtol=1e-6)


def test_dimensions_above_free_bits_count_only_the_dimensions_that_pay():
    # Every dimension's mu varies over the batch (Var(mu) > 0.01: "active units" would say 3),
    # but only one holds more than the free 0.25 nats.
    mu = jnp.array([[0.5, -0.6, 2.0], [-0.5, 0.6, -2.0]])
    kl = kl_per_dimension(mu, jnp.zeros_like(mu))
    assert float(dimensions_above(kl, 0.25)) == 1.0
    assert float(dimensions_above(kl, 0.0)) == 3.0


def test_cycle_length_fits_the_run():
    assert cycle_steps_for(400, 40, 4) == 90
    assert cycle_steps_for(400, 40, 0) == 0  # flat beta
    beta = [float(cyclical_beta(s, beta_max=1.0, warmup_steps=40, cycle_steps=90, ramp_fraction=0.5))
            for s in range(400)]
    tops = sum(1 for a, b in zip(beta, beta[1:]) if b < a)  # falls back to 0 at each new cycle
    assert tops == 3 and beta[-1] == 1.0  # four cycles, the last one ends the run at beta_max


def test_per_bar_kl_counts_only_the_bars_an_idea_has():
    kl = jnp.array([[[1.0, 2.0], [3.0, 5.0]],  # an idea of two bars
                    [[3.0, 0.0], [9.0, 9.0]]])  # an idea of one bar: its second latent is unused
    used = jnp.array([[True, True], [True, False]])
    np.testing.assert_allclose(batch_mean_kl(kl, used), [[2.0, 1.0], [3.0, 5.0]])
    assert float(free_bits_kl(kl, 1.5, used)) == pytest.approx(2.0 + 1.5 + 3.0 + 5.0)
    assert float(idea_kl(kl, used)) == pytest.approx((11.0 + 3.0) / 2)  # nats per idea
    assert float(dimensions_above(kl, 1.5, used)) == 3.0
    gradient = jax.grad(free_bits_kl)(kl, 1.5, used)
    assert float(jnp.abs(gradient[1, 1]).max()) == 0.0  # an unused latent costs nothing
    # A bar no idea of the batch has adds nothing, not the free bits.
    assert float(free_bits_kl(kl, 1.5, used.at[0, 1].set(False))) == pytest.approx(2.0 + 1.5)
    # Without a mask, [B, Z] as before: every idea's one latent.
    assert float(idea_kl(kl[:, 0])) == pytest.approx(3.0)


def test_interpolation_runs_from_one_latent_to_the_other():
    path = interpolate(jnp.zeros(2), jnp.array([2.0, -4.0]), 3)
    np.testing.assert_allclose(path, [[0, 0], [1, -2], [2, -4]])
    per_bar = interpolate(jnp.zeros((2, 2)), jnp.array([[2.0, -4.0], [4.0, 0.0]]), 3)  # [K, Z] latents
    np.testing.assert_allclose(per_bar[1], [[1, -2], [2, 0]])


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.asarray(top_p_logits(logits, 0.7)) > -1e8
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    assert np.asarray(top_p_logits(logits, 0.01) > -1e8).sum() == 1  # the top token always stays
    np.testing.assert_allclose(top_p_logits(logits, 1.0), logits)


def test_variation_strength_moves_from_the_idea_to_the_prior():
    mu_a, mu_b = jnp.array([2.0, -1.0, 0.5]), jnp.array([-3.0, 0.0, 1.0])
    rng = jax.random.key(0)
    np.testing.assert_allclose(variation_latents(rng, mu_a, 4, 0.0), np.tile(mu_a, (4, 1)))
    # Strength 1 forgets the idea: two different ideas give the same prior draws.
    np.testing.assert_allclose(variation_latents(rng, mu_a, 4, 1.0), variation_latents(rng, mu_b, 4, 1.0))
    distance = [float(jnp.linalg.norm(variation_latents(rng, mu_a, 64, s) - mu_a, axis=-1).mean())
                for s in (0.0, 0.25, 0.5, 1.0)]
    assert distance == sorted(distance) and distance[0] == 0.0
    per_bar = variation_latents(rng, jnp.stack([mu_a, mu_b]), 5, 0.5)  # one latent per bar: [K, Z]
    assert per_bar.shape == (5, 2, 3)
