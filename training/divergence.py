"""A step that was not finite: what happened, which checkpoint is still good, and what to try.

Step k (1-based, as logged) computes its loss at the parameters of step k-1 and applies
update k. Each update is checked finite on the device before it can be saved, but finite
parameters can still be poisoned: after a huge learning rate, parameters around 1e8 pass the
check and overflow in the next forward pass. So when the loss of step k is not finite and
step k-1 is the newest checkpoint, that checkpoint is tried on the batch of its own update
(whose loss was finite one step earlier): non-finite there too means it is poisoned and it is
set aside; finite means the batch of step k is the likely cause.
"""
from __future__ import annotations

import math

import jax
from absl import logging
from jax.experimental import multihost_utils

from training import mesh as mesh_lib
from training.checkpoint import one_line
from training.data import step_positions


def explain(trainer, step: int, values: dict[str, float]) -> str:
    """The message for a non-finite `step` of `trainer` (which may set its newest checkpoint
    aside when that checkpoint proves poisoned)."""
    train, checkpoints = trainer.config.train, trainer.checkpoints
    last, lr = checkpoints.latest_step(), f"train.learning_rate (now {train.learning_rate:g})"
    clip = "" if train.grad_clip else "; or set train.grad_clip (now 0 = off), e.g. 1.0"
    head = f"loss {values['loss']} and grad_norm {values['grad_norm']} at step {step}: "
    if math.isfinite(values["loss"]):
        return (head + f"the update made the parameters or optimizer state non-finite, so training "
                f"stopped and step {step} was not saved. {_last_good(checkpoints, last)}"
                f"Try a lower {lr}{clip}.")
    head += f"the loss was not finite, so training stopped and step {step} was not saved. "
    poisoned = last is not None and last == step - 1 and _loss_not_finite(trainer, last)
    if poisoned:
        moved = _set_aside(checkpoints, last)
        return (head + f"The parameters saved at step {last} give a non-finite loss on the batch "
                f"before too, so that checkpoint was moved to {moved} (not deleted). "
                f"{_last_good(checkpoints, checkpoints.latest_step())}Try a lower {lr}{clip}.")
    cause = ("The parameters before it give a finite loss on the batch before, so "
             if last == step - 1 else "")
    return (head + f"{_last_good(checkpoints, last)}{cause}Check the batch of step {step} "
            f"({_examples(trainer, step)}) for bad data, or try a lower {lr}{clip}.")


def _last_good(checkpoints, step: int | None) -> str:
    if step is None:
        return "No good checkpoint is left: the next run starts afresh. "
    return f"The last good checkpoint is step {step} in {checkpoints.directory}. "


def _examples(trainer, step: int) -> str:
    """The sampler indices of the training examples of `step` (1-based)."""
    positions = step_positions(step - 1, trainer.config.train.batch_size, 1, slice(None)).ravel()
    examples = [trainer.train_data.example_index(int(p)) for p in positions]
    shown = ", ".join(map(str, examples[:16])) + (", ..." if len(examples) > 16 else "")
    return f"training examples {shown}"


def _loss_not_finite(trainer, step: int) -> bool:
    """Whether the checkpoint of `step` gives a non-finite loss on the batch of update `step`."""
    try:
        state = trainer.checkpoints.restore(trainer.abstract, trainer.shardings, step)
        batch = mesh_lib.put_batch(trainer.host_batch(step - 1), trainer.train_sharding, 1,
                                   trainer.micro_rows)
        _, metrics = trainer.train_step(state, batch)
        return not math.isfinite(float(jax.device_get(metrics["loss"])))
    except Exception as error:  # e.g. no memory for a second state: keep the checkpoint
        logging.warning("could not check the checkpoint of step %d: %s", step, one_line(error))
        return False


def _set_aside(checkpoints, step: int) -> str:
    moved = ""
    if jax.process_index() == 0:
        moved = checkpoints.set_aside(step)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("poisoned checkpoint set aside")
        checkpoints.reload()
    return moved or "WORKDIR/damaged-checkpoints"
