"""The step, the optimizer, shardings and MFU, on a linear task that compiles in a second."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from training import mesh as mesh_lib
from training.metrics import mfu, peak_flops_per_device
from training.optim import make_optimizer
from training.state import TrainState
from training.step import make_train_step


class LinearTask:
    """Least squares y = x @ w; the loss is an unweighted mean, so microbatches average exactly."""

    def init(self, rng, batch):
        return {"w": jax.random.normal(rng, (batch["x"].shape[-1], 1)), "b": jnp.zeros((1,))}

    def loss(self, params, batch, rng, train):
        noise = jax.random.normal(rng, ()) * 0.0  # uses the key, like dropout would
        error = batch["x"] @ params["w"] + params["b"] - batch["y"] + noise
        return jnp.mean(error**2), {"error": jnp.mean(jnp.abs(error))}


def _train_config(**values):
    base = dict(learning_rate=0.1, warmup_steps=2, steps=10, end_lr_fraction=0.1, grad_clip=0.0,
                b1=0.9, b2=0.95, weight_decay=0.0)
    return types.SimpleNamespace(**{**base, **values})


def _batch(accum_steps, rows=8, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(rows, 3)).astype(np.float32), rng.normal(size=(rows, 1)).astype(np.float32)
    return {"x": x.reshape(accum_steps, rows // accum_steps, 3),
            "y": y.reshape(accum_steps, rows // accum_steps, 1)}


def _run_steps(accum_steps, steps=3):
    task, (tx, schedule) = LinearTask(), make_optimizer(_train_config())
    params = task.init(jax.random.key(0), {"x": np.zeros((1, 3))})
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
    step_fn = jax.jit(make_train_step(task, tx, schedule, seed=0), donate_argnums=0)
    losses = []
    for k in range(steps):
        state, metrics = step_fn(state, _batch(accum_steps, seed=k))
        losses.append(float(metrics["loss"]))
    return state, losses, metrics


def test_gradient_accumulation_equals_one_big_batch():
    whole, whole_losses, metrics = _run_steps(accum_steps=1)
    split, split_losses, _ = _run_steps(accum_steps=4)
    np.testing.assert_allclose(split_losses, whole_losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(split.params), jax.tree.leaves(whole.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(whole.step) == 3 and {"loss", "error", "grad_norm", "learning_rate"} <= set(metrics)


class StepAwareTask(LinearTask):
    loss_uses_step = True

    def loss(self, params, batch, rng, train, step=None):
        loss, metrics = super().loss(params, batch, rng, train)
        return loss, dict(metrics, seen_step=step.astype(jnp.float32))


def test_a_task_that_asks_for_the_step_gets_it():
    task, (tx, schedule) = StepAwareTask(), make_optimizer(_train_config())
    params = task.init(jax.random.key(0), {"x": np.zeros((1, 3))})
    state = TrainState(step=jnp.full((), 5, jnp.int32), params=params, opt_state=tx.init(params))
    step_fn = jax.jit(make_train_step(task, tx, schedule, seed=0))
    for expected in (5, 6):
        state, metrics = step_fn(state, _batch(2))
        assert float(metrics["seen_step"]) == expected


def test_schedule_warms_up_then_decays_to_the_end_fraction():
    _, schedule = make_optimizer(_train_config())
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(1)), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(2)), 0.1, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(10)), 0.01, rtol=1e-5)
    assert all(float(schedule(k)) >= float(schedule(k + 1)) for k in range(2, 10))


def test_gradient_clipping_bounds_the_update():
    tx, _ = make_optimizer(_train_config(grad_clip=1e-3, learning_rate=1.0, warmup_steps=0,
                                         b1=0.0, b2=0.0))
    params = {"w": jnp.zeros((2, 2))}
    grads = {"w": jnp.full((2, 2), 1e3)}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(jnp.max(jnp.abs(updates["w"]))) < 1.01  # Adam normalises; clipping came first


def test_fsdp_shards_large_leaves_on_their_largest_divisible_axis():
    mesh = mesh_lib.make_mesh(fsdp=2)  # 8 fake devices: data 4 x fsdp 2
    tree = {"embed": jax.ShapeDtypeStruct((100, 64), jnp.float32),
            "odd": jax.ShapeDtypeStruct((99, 33), jnp.float32),
            "bias": jax.ShapeDtypeStruct((64,), jnp.float32)}
    shardings = mesh_lib.fsdp_shardings(mesh, tree, min_size=1000)
    assert shardings["embed"].spec == P("fsdp", None)
    assert shardings["odd"].spec == P() and shardings["bias"].spec == P()
    with pytest.raises(ValueError, match="mesh.fsdp=3"):
        mesh_lib.make_mesh(fsdp=3)


def test_one_process_holds_every_row_of_the_batch():
    mesh = mesh_lib.make_mesh()
    sharding = mesh_lib.batch_sharding(mesh, leading_unsharded=1)
    assert mesh_lib.process_rows(sharding, (2, 16), axis=1) == slice(0, 16)
    batch = mesh_lib.put_batch({"x": np.arange(32).reshape(2, 16)}, sharding, 1, 16)
    assert batch["x"].sharding.spec == P(None, ("data", "fsdp"))
    assert len(batch["x"].addressable_shards) == 8
    np.testing.assert_array_equal(batch["x"], np.arange(32).reshape(2, 16))


def test_mfu_needs_the_model_flops_and_a_known_peak():
    h100 = types.SimpleNamespace(device_kind="NVIDIA H100 80GB HBM3")
    assert peak_flops_per_device(h100) == 989e12
    assert peak_flops_per_device(types.SimpleNamespace(device_kind="TPU v5 lite")) == 197e12
    assert peak_flops_per_device(jax.devices()[0]) is None  # CPU
    np.testing.assert_allclose(mfu(6e9, 1e4, 8, 989e12), 6e13 / (8 * 989e12))
    assert mfu(None, 1e4, 8, 989e12) is None and mfu(6e9, 1e4, 8, None) is None
