"""The Composer's encoder and decoder at a tiny size: shapes, finiteness, bidirectional encoder,
causal decoder that depends on z through in-attention and reads its conditioning prefix,
one latent per part of a bar (each position reads its own), cached decoding (with and without a
prefilled prefix) equal to the full pass, and runs saved with one latent per idea."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composer import Conditions
from composer.model import ComposerModel
from tests.composer.conftest import LATENT

PREFIX = 8  # TimeSig, 6 Programs, bar count
VOCAB, T = 40, 12  # ids below 40 only: PerTok's vocabulary is larger


@pytest.fixture(scope="module")
def setup(tiny_composer):
    task, params, _ = tiny_composer
    model = task.model
    ids = jax.random.randint(jax.random.key(0), (2, T), 4, VOCAB).at[:, 0].set(1)
    ids = ids.at[1, 9:].set(0)  # the second idea is padded
    ids = jnp.where(ids == 4, 5, ids).at[:, 1].set(4).at[:, 5].set(4)  # Bar lines: two bars each
    jitted = types.SimpleNamespace(  # each function compiles once for the whole module
        encode=jax.jit(model.encode), decode=jax.jit(model.decode), encoder=model.encoder,
        empty_caches=model.empty_caches, prefix_ids=model.prefix_ids, prefill=model.prefill,
        latent_shape=model.latent_shape, latent_index=model.latent_index,
        pooling_index=model.pooling_index, onset_positions=model.onset_positions)
    return jitted, params, ids


def _latents(model, value_or_rng) -> jax.Array:
    """[2, K, Z] latents: all `value`, or standard normal from an rng."""
    shape = (2, *model.latent_shape)
    if isinstance(value_or_rng, float):
        return jnp.full(shape, value_or_rng)
    return jax.random.normal(value_or_rng, shape)


def test_shapes_and_finiteness(setup):
    model, params, ids = setup
    mu, logvar = model.encode(params, ids)
    assert model.latent_shape == (8, LATENT)  # the tiny config: 2-bar ideas, 4 latents per bar
    assert mu.shape == logvar.shape == (2, 8, LATENT) and mu.dtype == jnp.float32
    logits = model.decode(params, ids, mu)
    assert logits.shape == (2, T, 603) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(np.asarray(logvar)).all()


def test_encoder_is_bidirectional_and_ignores_padding(setup):
    model, params, ids = setup
    hidden = jax.jit(lambda x: model.encoder.apply({"params": params["encoder"]}, x, model.pooling_index(x),
                                                  model.onset_positions(x)))
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
    z = _latents(model, 1.0)
    base = model.decode(params, ids, z)
    changed = model.decode(params, ids.at[:, 6].set(9), z)
    np.testing.assert_allclose(changed[:, :6], base[:, :6], atol=1e-5)
    assert np.abs(changed[:, 6:] - base[:, 6:]).max() > 1e-4


def test_decoder_output_changes_with_z_through_in_attention(setup):
    model, params, ids = setup
    z_a, z_b = _latents(model, 0.0), _latents(model, 1.0)
    # Position 0 sees only BOS: it can only learn of z through the projection added to it.
    assert np.abs(model.decode(params, ids, z_a)[:, 0] - model.decode(params, ids, z_b)[:, 0]).min() > 1e-4
    # With the shared projection zeroed, z no longer reaches the decoder at all.
    silenced = jax.tree.map(jnp.zeros_like, params["decoder"]["latent_projection"])
    params_off = {**params, "decoder": {**params["decoder"], "latent_projection": silenced}}
    np.testing.assert_allclose(model.decode(params_off, ids, z_a), model.decode(params_off, ids, z_b))


def test_the_prefix_conditions_every_position_and_its_bar_count_is_embedded(setup):
    model, params, ids = setup
    z = _latents(model, 0.0)
    prefix = jnp.asarray(np.stack([model.prefix_ids(Conditions(23, (117,), 2))] * 2))
    assert prefix.shape == (2, PREFIX) and int(prefix[0, -1]) == 603 + 1  # bar counts past the vocabulary
    base = model.decode(params, ids, z, prefix)
    assert base.shape == (2, T, 603)
    open_fields = model.decode(params, ids, z)  # no prefix: every field open
    np.testing.assert_allclose(open_fields, model.decode(params, ids, z, jnp.zeros_like(prefix)))
    for field in (0, 1, PREFIX - 1):  # meter, a program, the bar count
        changed = model.decode(params, ids, z, prefix.at[:, field].set(0))
        assert np.abs(changed[:, 0] - base[:, 0]).max() > 1e-4  # even BOS's prediction reads it


def test_prefilled_cached_decoding_equals_the_full_pass_with_the_prefix(setup):
    model, params, ids = setup
    z = _latents(model, jax.random.key(3))
    prefix = jnp.asarray(np.stack([model.prefix_ids(Conditions(23, (117, 245), 1)),
                                   model.prefix_ids(Conditions(0, (), 0))]))
    full = model.decode(params, ids, z, prefix)
    caches = jax.jit(model.prefill, static_argnums=3)(params, prefix, z, T)
    step = jax.jit(lambda token, latents, positions, caches: model.decode(
        params, token, z, latents_BxT=latents, positions_BxT=positions, caches=caches))
    latents = model.latent_index(ids)
    positions = jnp.zeros_like(latents)  # read only by a model that embeds onsets (not this one)
    assert int(latents.max()) >= 4  # latents of both bars are read
    steps = []
    for t in range(T):
        logits, caches = step(ids[:, t:t + 1], latents[:, t:t + 1], positions[:, t:t + 1], caches)
        steps.append(logits[:, 0])
    np.testing.assert_allclose(jnp.stack(steps, 1)[0], full[0], atol=1e-4)
    np.testing.assert_allclose(jnp.stack(steps, 1)[1, :9], full[1, :9], atol=1e-4)
    with pytest.raises(ValueError, match="latents_BxT"):  # which latent a new token reads is not guessed
        model.decode(params, ids[:, :1], z, caches=caches)


def _idea_ids(task, names: list[str]) -> jax.Array:
    """[2, T] ids of BOS + the named tokens, the same idea twice."""
    ids = [1] + [task.tokenizer.vocab.ids[name] for name in names]
    return jnp.array([ids, ids], jnp.int32)


def test_each_part_of_a_bar_reads_its_own_latent(setup, tiny_composer):
    model, params, _ = setup
    task = tiny_composer[0]
    ids = _idea_ids(task, ["Bar", "TimeSig_4/4", "Program_0", "Pitch_60", "Duration_240",
                           "TimeShift_960", "Pitch_62", "Duration_240",  # the second quarter
                           "Bar", "Pitch_64", "Duration_240"])  # the second bar's first quarter
    np.testing.assert_array_equal(task.model.latent_index(ids)[0], [0] * 6 + [1] * 3 + [4] * 3)
    np.testing.assert_array_equal(task.model.latent_mask(ids)[0], [1, 1, 0, 0, 1, 0, 0, 0])
    # The encoder pools each token into the latent it is predicted from: the TimeShift into
    # the second quarter into the first, the second Bar into the second quarter.
    np.testing.assert_array_equal(task.model.pooling_index(ids)[0], [0] * 7 + [1] * 3 + [4] * 2)
    z = _latents(model, jax.random.key(4))
    base = model.decode(params, ids, z)
    second_changed = model.decode(params, ids, z.at[:, 1].add(1.0))
    np.testing.assert_allclose(second_changed[:, :6], base[:, :6], atol=1e-6)  # the first quarter
    assert np.abs(second_changed[:, 6:] - base[:, 6:]).max(-1).min() > 1e-4  # from the TimeShift into it on
    unread_changed = model.decode(params, ids, z.at[:, 2].add(1.0))  # no token reads latent 2
    np.testing.assert_allclose(unread_changed, base, atol=1e-6)
    # The encoder pools each part's positions into its latent: the second quarter's mu moves
    # most when a note of it changes (the others a little, through attention).
    mu, _ = model.encode(params, ids)
    moved = np.abs(model.encode(params, ids.at[:, 7].set(ids[0, 10]))[0] - mu).max(axis=(0, 2))
    assert moved[1] > moved[0] and moved[1] > moved[4]


def test_runs_saved_before_latents_per_bar_have_one_latent_per_idea(tiny_composer):
    task, _, batch = tiny_composer
    saved = task.config.copy_and_resolve_references()
    with saved.unlocked():
        del saved["latents_per_bar"]  # a config.json written before the key existed
    model = ComposerModel.from_config(saved, task.tokenizer, task.num_bars)
    assert model.latent_shape == (1, LATENT)
    params = jax.jit(model.init)(jax.random.key(0), batch["encoder_ids"])
    mu, _ = jax.jit(model.encode)(params, batch["encoder_ids"])
    assert mu.shape == (4, 1, LATENT)
    # The same parameter shapes as several latents: the posterior pools BOS, not the parts.
    bars_model = task.model
    bars_params = jax.jit(bars_model.init)(jax.random.key(0), batch["encoder_ids"])
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, bars_params)


def test_onset_positions_are_embedded_and_cached_decoding_needs_them(tiny_composer):
    task = tiny_composer[0]
    config = task.config.copy_and_resolve_references()
    config.onset_embedding = True
    model = ComposerModel.from_config(config, task.tokenizer, task.num_bars)
    ids = _idea_ids(task, ["Bar", "TimeSig_4/4", "Program_0", "Pitch_60", "Duration_240",
                           "TimeShift_240", "Pitch_62", "Duration_240"])
    np.testing.assert_array_equal(model.onset_positions(ids)[0], [0] * 6 + [3] * 3)  # 240 ticks = 3 steps
    params = jax.jit(model.init)(jax.random.key(0), ids)
    assert "onset_embed" in params["decoder"] and "onset_embed" in params["encoder"]
    z = _latents(model, jax.random.key(5))
    decode = jax.jit(model.decode)
    base = decode(params, ids, z)
    moved = decode(params, ids, z, positions_BxT=model.onset_positions(ids) + 1)
    assert np.abs(moved - base).max(-1).min() > 1e-4  # every position reads its onset
    with pytest.raises(ValueError, match="positions_BxT"):
        model.decode(params, ids[:, :1], z, latents_BxT=jnp.zeros((2, 1), jnp.int32),
                     caches=model.empty_caches(2, 4))
    # The default (and runs saved before the key) embed no onsets.
    assert task.model.onset_positions(ids) is None and "onset_embed" not in tiny_composer[1]["decoder"]
