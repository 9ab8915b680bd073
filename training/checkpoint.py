"""Orbax checkpoints of the train state and the config; keep the last K; resume from the latest."""
from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp

from training.state import TrainState

_REGISTERED = False  # the array handler below is registered once per process


class Checkpoints:
    """`WORKDIR/checkpoints/<step>/{state,config}`, written synchronously.

    Synchronous saves keep donation safe (the next step may reuse the saved buffers) and make
    a save on SIGTERM complete before the process exits.
    """

    def __init__(self, workdir: str, keep: int):
        _save_each_array_from_one_replica()
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "config"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: TrainState, config: dict) -> int:
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return step
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)))
        self._manager.wait_until_finished()
        return step

    def restore(self, abstract: TrainState, shardings, step: int | None = None) -> TrainState:
        """The state at `step` (default latest), placed into `shardings`.

        Args:
          abstract: `jax.eval_shape` of the train state, so optax states keep their types.
        """
        step = self.latest_step() if step is None else step
        target = jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            abstract, shardings)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return restored["state"]

    def saved_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return restored["config"]

    def close(self) -> None:
        self._manager.close()


def _save_each_array_from_one_replica() -> None:
    """Orbax splits replicated arrays across replicas on CPU by default, compiling one slice
    per shape and device count (~10 s on the first save with 8 fake devices); off, as on GPU."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    logging.disable(logging.WARNING)  # orbax warns that it overrides its default handler
    try:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
    finally:
        logging.disable(logging.NOTSET)
