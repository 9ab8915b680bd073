"""The train step (gradient accumulation over microbatches) and the eval step, unjitted."""
from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from training.state import TrainState, root_keys
from training.task import Batch, Task


def make_train_step(task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    seed: int) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """train_step(state, batch_AxB) -> (state, metrics); batch leaves are [accum, micro, ...].

    The dropout key of step k is fold_in(training key, k), so a resumed run replays exactly.
    `metrics["update_is_finite"]` says whether the new parameters and optimizer state are all
    finite (one fused reduction): the trainer never saves or continues from a state without it.
    A task with `loss_uses_step = True` also gets `step=state.step` (e.g. a KL schedule).
    """
    _, train_key = root_keys(seed)

    def train_step(state: TrainState, batch_AxB: Batch) -> tuple[TrainState, dict]:
        step_key = jax.random.fold_in(train_key, state.step)
        loss_fn = task.loss
        if getattr(task, "loss_uses_step", False):  # e.g. the composer's KL-weight schedule
            loss_fn = functools.partial(task.loss, step=state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def microbatch(grads_sum, inputs):
            index, batch_B = inputs
            (loss, metrics), grads = grad_fn(state.params, batch_B, jax.random.fold_in(step_key, index),
                                             True)
            grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
            return grads_sum, dict(metrics, loss=loss)

        accum_steps = jax.tree.leaves(batch_AxB)[0].shape[0]
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
        grads_sum, metrics_A = jax.lax.scan(microbatch, zeros, (jnp.arange(accum_steps), batch_AxB))
        grads = jax.tree.map(lambda g, p: (g / accum_steps).astype(p.dtype), grads_sum, state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = jax.tree.map(jnp.mean, metrics_A)
        metrics.update(grad_norm=optax.global_norm(grads), learning_rate=schedule(state.step),
                       update_is_finite=all_finite((params, opt_state)))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def all_finite(tree) -> jax.Array:
    """Whether every float in `tree` is finite: a bool scalar, reduced on the device."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def make_eval_step(task: Task) -> Callable[[TrainState, Batch], dict]:
    """eval_step(state, batch_B) -> metrics (means over the batch), deterministic."""
    def eval_step(state: TrainState, batch_B: Batch) -> dict:
        loss, metrics = task.loss(state.params, batch_B, jax.random.key(0), False)
        return dict(metrics, loss=loss)

    return eval_step
