"""The VAE's plain functions: KL (closed form and Monte Carlo), free bits, reparameterisation,
the cyclical beta schedule, active units, interpolation, top-p."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composer import (active_units, cyclical_beta, free_bits_kl, interpolate, kl_per_dimension,
                      reparameterize, top_p_logits)


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


def test_active_units_count_dimensions_whose_mean_varies_over_the_batch():
    mu = jnp.array([[0.0, 1.0, 5.0], [0.0, -1.0, 5.01], [0.0, 1.0, 5.0]])
    assert float(active_units(mu, 0.01)) == 1.0


def test_interpolation_runs_from_one_latent_to_the_other():
    path = interpolate(jnp.zeros(2), jnp.array([2.0, -4.0]), 3)
    np.testing.assert_allclose(path, [[0, 0], [1, -2], [2, -4]])


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.asarray(top_p_logits(logits, 0.7)) > -1e8
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    assert np.asarray(top_p_logits(logits, 0.01) > -1e8).sum() == 1  # the top token always stays
    np.testing.assert_allclose(top_p_logits(logits, 1.0), logits)
