"""The Composer's encoder and decoder at a tiny size: shapes, finiteness, bidirectional encoder,
causal decoder that depends on z through in-attention, cached decoding equal to the full pass."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.composer.conftest import LATENT

VOCAB, T = 40, 12  # ids below 40 only: PerTok's vocabulary is larger


@pytest.fixture(scope="module")
def setup(tiny_composer):
    task, params, _ = tiny_composer
    model = task.model
    ids = jax.random.randint(jax.random.key(0), (2, T), 4, VOCAB).at[:, 0].set(1)
    ids = ids.at[1, 9:].set(0)  # the second idea is padded
    jitted = types.SimpleNamespace(  # each function compiles once for the whole module
        encode=jax.jit(model.encode), decode=jax.jit(model.decode), encoder=model.encoder,
        empty_caches=model.empty_caches)
    return jitted, params, ids


def test_shapes_and_finiteness(setup):
    model, params, ids = setup
    mu, logvar = model.encode(params, ids)
    assert mu.shape == logvar.shape == (2, LATENT) and mu.dtype == jnp.float32
    logits = model.decode(params, ids, mu)
    assert logits.shape == (2, T, 603) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(np.asarray(logvar)).all()


def test_encoder_is_bidirectional_and_ignores_padding(setup):
    model, params, ids = setup
    hidden = jax.jit(lambda x: model.encoder.apply({"params": params["encoder"]}, x))
    base_hidden, base_mu, _ = hidden(ids)
    changed_hidden, changed_mu, _ = hidden(ids.at[0, T - 1].set(5 if ids[0, T - 1] != 5 else 6))
    assert np.abs(changed_hidden[0, 1] - base_hidden[0, 1]).max() > 1e-4  # an earlier position
    assert np.abs(changed_mu[0] - base_mu[0]).max() > 1e-4  # the pooled position
    # What stands behind PAD is never read: only the padding mask keeps it out.
    _, behind_padding_mu, _ = hidden(ids.at[1, T - 1].set(0).at[1, T - 2].set(0))
    np.testing.assert_allclose(behind_padding_mu[1], base_mu[1], atol=1e-6)
    _, unpadded_mu, _ = hidden(ids.at[1, T - 1].set(7))  # a real token where PAD was
    assert np.abs(unpadded_mu[1] - base_mu[1]).max() > 1e-4


def test_decoder_is_causal(setup):
    model, params, ids = setup
    z = jnp.ones((2, LATENT))
    base = model.decode(params, ids, z)
    changed = model.decode(params, ids.at[:, 6].set(9), z)
    np.testing.assert_allclose(changed[:, :6], base[:, :6], atol=1e-5)
    assert np.abs(changed[:, 6:] - base[:, 6:]).max() > 1e-4


def test_decoder_output_changes_with_z_through_in_attention(setup):
    model, params, ids = setup
    z_a, z_b = jnp.zeros((2, LATENT)), jnp.ones((2, LATENT))
    # Position 0 sees only BOS: it can only learn of z through the projection added to it.
    assert np.abs(model.decode(params, ids, z_a)[:, 0] - model.decode(params, ids, z_b)[:, 0]).min() > 1e-4
    # With the shared projection zeroed, z no longer reaches the decoder at all.
    silenced = jax.tree.map(jnp.zeros_like, params["decoder"]["latent_projection"])
    params_off = {**params, "decoder": {**params["decoder"], "latent_projection": silenced}}
    np.testing.assert_allclose(model.decode(params_off, ids, z_a), model.decode(params_off, ids, z_b))


def test_cached_decoding_equals_the_full_pass(setup):
    model, params, ids = setup
    z = jax.random.normal(jax.random.key(2), (2, LATENT))
    full = model.decode(params, ids, z)
    step = jax.jit(lambda token, caches: model.decode(params, token, z, caches=caches))
    caches, steps = model.empty_caches(2, T), []
    for t in range(T):
        logits, caches = step(ids[:, t:t + 1], caches)
        steps.append(logits[:, 0])
    np.testing.assert_allclose(jnp.stack(steps, 1)[0], full[0], atol=1e-4)
    np.testing.assert_allclose(jnp.stack(steps, 1)[1, :9], full[1, :9], atol=1e-4)
