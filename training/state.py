"""Train state and its sharded creation: eval_shape, then shardings, then a jitted init."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from training import mesh as mesh_lib
from training.task import Batch, Params, Task


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates applied so far
    params: Params
    opt_state: Any


def root_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init key, training key); step k trains with fold_in(training key, k)."""
    init_key, train_key = jax.random.split(jax.random.key(seed))
    return init_key, train_key


def abstract_state(task: Task, tx: optax.GradientTransformation, batch: Batch, seed: int):
    """Shapes and dtypes of the train state, without allocating it."""
    return jax.eval_shape(lambda: _init(task, tx, batch, seed))


def state_shardings(mesh: Mesh, abstract: TrainState, fsdp_min_size: int = 2**14):
    """NamedShardings for every leaf of the train state (fsdp rule on params and moments)."""
    return mesh_lib.fsdp_shardings(mesh, abstract, fsdp_min_size)


def create_state(task: Task, tx: optax.GradientTransformation, batch: Batch, seed: int,
                 shardings) -> TrainState:
    """A fresh train state, initialised directly into `shardings`."""
    return jax.jit(lambda: _init(task, tx, batch, seed), out_shardings=shardings)()


def _init(task: Task, tx: optax.GradientTransformation, batch: Batch, seed: int) -> TrainState:
    init_key, _ = root_keys(seed)
    params = task.init(init_key, batch)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def count_params(params: Params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
