"""The Composer task: the per-token ELBO follows the beta schedule of the step it is given, and
the held-out metrics say how much the latent matters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composer import vae


def test_loss_is_the_per_token_elbo_and_follows_the_beta_schedule(tiny_composer):
    task, params, batch = tiny_composer
    loss_at = jax.jit(lambda step: task.loss(params, batch, jax.random.key(1), True, step=step))
    (warmup, metrics), (half, _), (top, _) = loss_at(5), loss_at(35), loss_at(60)
    assert float(metrics["beta"]) == 0.0 and float(warmup) == pytest.approx(float(metrics["reconstruction"]))
    kl_term = float(top) - float(metrics["reconstruction"])
    # KL summed over bars and dimensions (each at least the free bits, over the ideas that
    # have the bar) per target token of an idea.
    mu, logvar = jax.jit(task.model.encode)(params, batch["encoder_ids"])
    kl = np.asarray(vae.kl_per_dimension(mu, logvar))  # [B, K, Z]
    used = np.asarray(task.model.latent_mask(batch["encoder_ids"]))  # [B, K]
    assert kl.shape == (4, 8, 4) and 4 <= used.sum() < 32  # some parts of some bars hold no onset
    tokens_per_idea = float(batch["weights"].sum(1).mean())
    per_dimension = (kl * used[..., None]).sum(0) / used.sum(0)[:, None]
    expected = np.maximum(per_dimension, 0.25).sum() / tokens_per_idea
    assert kl_term == pytest.approx(float(expected), rel=1e-4)
    assert float(half) - float(metrics["reconstruction"]) == pytest.approx(kl_term / 2, rel=1e-4)
    nats_per_idea = (kl * used[..., None]).sum() / 4
    assert float(metrics["kl"]) == pytest.approx(float(nats_per_idea), rel=1e-4)
    assert float(metrics["kl_dims_above_free_bits"]) == float((per_dimension > 0.25).sum())
    assert {"accuracy", "kl_per_token", "kl_dim_max", "kl_dim_median"} <= set(metrics)
    assert "active_units" not in metrics
    assert "latent_gap" not in metrics  # held-out only: training pays for no extra passes
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_held_out_metrics_compare_the_own_and_another_ideas_mu(tiny_composer):
    task, params, batch = tiny_composer
    evaluate = jax.jit(lambda p: task.loss(p, batch, jax.random.key(1), False)[1])
    metrics = evaluate(params)
    mu, _ = jax.jit(task.model.encode)(params, batch["encoder_ids"])
    logits = jax.jit(task.model.decode)(params, batch["decoder_inputs"], mu, batch["decoder_prefix"])
    log_probs = np.asarray(jax.nn.log_softmax(logits))
    chosen = np.take_along_axis(log_probs, batch["targets"][..., None], -1)[..., 0]
    own = -(chosen * batch["weights"]).sum() / batch["weights"].sum()
    assert float(metrics["reconstruction_own_mu"]) == pytest.approx(float(own), rel=1e-4)
    gap = float(metrics["reconstruction_other_mu"]) - float(metrics["reconstruction_own_mu"])
    assert float(metrics["latent_gap"]) == pytest.approx(gap, abs=1e-6) and abs(gap) > 1e-6
    # With z cut off from the decoder, whose mu it is does not matter: the gap is 0.
    silenced = jax.tree.map(jnp.zeros_like, params["decoder"]["latent_projection"])
    deaf = {**params, "decoder": {**params["decoder"], "latent_projection": silenced}}
    assert abs(float(evaluate(deaf)["latent_gap"])) < 1e-6


def test_training_without_the_step_is_refused(tiny_composer):
    task, _, batch = tiny_composer
    with pytest.raises(ValueError, match="needs the training step"):
        task.loss({}, batch, jax.random.key(0), True)


def test_kl_settings_that_break_the_elbo_are_refused(tiny_composer):
    task, _, _ = tiny_composer
    for key, value, named in (("beta_max", 2.0, "kl.beta_max=2.0"), ("cycles", -1, "kl.cycles")):
        old = task.kl[key]
        task.kl[key] = value
        try:
            with pytest.raises(ValueError, match=named):
                task.validate()
        finally:
            task.kl[key] = old


def test_a_negative_latent_layout_is_refused(tiny_composer):
    task, _, _ = tiny_composer
    task.config.latents_per_bar = -1
    try:
        with pytest.raises(ValueError, match="model.latents_per_bar=-1"):
            task.validate()
    finally:
        task.config.latents_per_bar = 4
