"""The Composer task: the loss follows the beta schedule of the step it is given."""
import jax
import numpy as np
import pytest

from tests.composer.conftest import LATENT



def test_loss_follows_the_beta_schedule_and_reports_the_metrics(tiny_composer):
    task, params, batch = tiny_composer
    loss_at = jax.jit(lambda step: task.loss(params, batch, jax.random.key(1), True, step=step))
    (warmup, metrics), (half, _), (top, _) = loss_at(5), loss_at(35), loss_at(60)
    assert float(metrics["beta"]) == 0.0 and float(warmup) == pytest.approx(float(metrics["reconstruction"]))
    kl_term = float(top) - float(metrics["reconstruction"])
    assert kl_term >= 0.25 - 1e-6  # free bits: at least 0.25 nats per dimension on average
    assert float(half) - float(metrics["reconstruction"]) == pytest.approx(kl_term / 2, rel=1e-4)
    assert {"accuracy", "kl", "kl_dim_max", "kl_dim_median", "kl_dims_above_free_bits",
            "active_units", "beta"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert 0 <= float(metrics["active_units"]) <= LATENT


def test_training_without_the_step_is_refused(tiny_composer):
    task, _, batch = tiny_composer
    with pytest.raises(ValueError, match="needs the training step"):
        task.loss({}, batch, jax.random.key(0), True)
