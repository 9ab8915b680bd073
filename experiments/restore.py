"""Load the latest checkpoint of a training run for sampling: one device, checked task."""
from __future__ import annotations

import os

import jax

from experiments.config_history import saved_config
from experiments.tasks import build_task
from pertok import PerTok
from training.checkpoint import Checkpoints
from training.optim import make_optimizer
from training.state import abstract_state


def restore_latest(workdir: str, tokenizer: PerTok, task_name: str):
    """(task, params, saved config, step) of the latest checkpoint of a `task_name` run.

    A missing or empty workdir, or a run of another task, is one clear error telling how to
    train one. A `pretrained/<name>` folder is read in its place (`experiments.pretrained`).
    """
    from experiments import pretrained

    if pretrained.is_pretrained(workdir):  # shipped weights stand in for a run
        return pretrained.load(workdir, tokenizer, task_name)
    hint = (f"train one first: python -m experiments.main "
            f"--config=experiments/configs/{task_name}.py:tiny --workdir={workdir}")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"{task_name} workdir {workdir!r} holds no checkpoints; {hint}")
    checkpoints = Checkpoints(workdir, keep=1_000_000)  # reading only: never prunes
    try:
        step = checkpoints.latest_step()
        if step is None:
            raise FileNotFoundError(f"{task_name} workdir {workdir!r} holds no checkpoints; {hint}")
        saved = checkpoints.saved_config(step)
        config = saved_config(saved, f"workdir {workdir!r}", task_name)
        task = build_task(config, tokenizer)
        tx, _ = make_optimizer(config.train)
        abstract = abstract_state(task, tx, task.example_batch(1), config.seed)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        state = checkpoints.restore(abstract, jax.tree.map(lambda _: device, abstract), step)
    finally:
        checkpoints.close()
    return task, state.params, config, step
