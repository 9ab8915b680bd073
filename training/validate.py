"""Config checks that run before anything compiles, each naming the key and the reason."""
from __future__ import annotations

import math
from collections.abc import Iterator

import ml_collections

from training.data import SPLIT_MODES
from training.task import Task


class ConfigError(ValueError):
    """One or more config values are inconsistent; the message lists every reason."""


def validate(config, num_devices: int, num_processes: int = 1, task: Task | None = None) -> None:
    """Raise ConfigError listing every problem with the harness config (and the task's)."""
    train = config.train
    errors = [f"{key}={value} must be a finite number" for key, value in nonfinite_values(config)]
    nonfinite = {message.split("=", 1)[0] for message in errors}

    def check(ok: bool, message: str) -> None:
        # A NaN or infinite value is reported once, as not finite, not again by its range check.
        if not ok and message.split("=", 1)[0] not in nonfinite:
            errors.append(message)

    check(train.steps > 0, f"train.steps={train.steps} must be positive")
    check(train.batch_size > 0, f"train.batch_size={train.batch_size} must be positive")
    check(train.accum_steps >= 1, f"train.accum_steps={train.accum_steps} must be at least 1")
    if train.batch_size > 0 and train.accum_steps >= 1:
        micro, remainder = divmod(train.batch_size, train.accum_steps)
        check(remainder == 0, f"train.batch_size={train.batch_size} must be divisible by "
                              f"train.accum_steps={train.accum_steps}")
        check(remainder or micro % num_devices == 0,
              f"train.batch_size={train.batch_size} / train.accum_steps={train.accum_steps} "
              f"= {micro} rows per microbatch cannot be split over {num_devices} devices; "
              f"use a multiple of {num_devices * train.accum_steps}")
    check(config.eval.batch_size > 0 and config.eval.batch_size % num_devices == 0,
          f"eval.batch_size={config.eval.batch_size} must be a positive multiple of the "
          f"{num_devices} devices")
    check(config.mesh.fsdp >= 1 and num_devices % config.mesh.fsdp == 0,
          f"mesh.fsdp={config.mesh.fsdp} must divide the {num_devices} devices")
    check(num_devices % num_processes == 0,
          f"{num_devices} devices cannot be split evenly over {num_processes} processes")
    check(train.learning_rate > 0, f"train.learning_rate={train.learning_rate} must be positive")
    check(0 <= train.warmup_steps <= train.steps,
          f"train.warmup_steps={train.warmup_steps} must lie in 0..train.steps={train.steps}")
    check(0 <= train.end_lr_fraction <= 1,
          f"train.end_lr_fraction={train.end_lr_fraction} must lie in [0, 1]")
    for beta in ("b1", "b2"):  # Adam's moment decays (training/optim.py)
        if beta in train:
            check(0 <= train[beta] < 1, f"train.{beta}={train[beta]} must lie in [0, 1)")
    if "weight_decay" in train:
        check(train.weight_decay >= 0, f"train.weight_decay={train.weight_decay} must be >= 0")
    check(train.grad_clip >= 0, f"train.grad_clip={train.grad_clip} must be >= 0 (0 = off)")
    check(config.checkpoint.every > 0, f"checkpoint.every={config.checkpoint.every} must be positive")
    check(config.checkpoint.keep >= 1, f"checkpoint.keep={config.checkpoint.keep} must be at least 1")
    check(0 <= config.data.valid_fraction < 1,
          f"data.valid_fraction={config.data.valid_fraction} must lie in [0, 1)")
    check(config.data.pitch_shift >= 0 and config.data.velocity_shift >= 0,
          "data.pitch_shift and data.velocity_shift must be >= 0")
    check(config.data.get("split", "file") in SPLIT_MODES,
          f"data.split={config.data.get('split')!r} must be one of {', '.join(map(repr, SPLIT_MODES))}")
    if task is not None:
        try:
            task.validate()
        except ValueError as error:
            errors.append(str(error))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def nonfinite_values(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted key, value) of every NaN or infinite float in `config`, in every block.

    No key is exempt: no config file (experiments/configs/*.py, every variant) uses inf or NaN
    on purpose; their "off" and "detect" values are 0, -1 or "".
    """
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from nonfinite_values(value, f"{key}.")
        elif isinstance(value, (list, tuple)):
            yield from ((f"{key}[{index}]", item) for index, item in enumerate(value)
                        if _is_nonfinite(item))
        elif _is_nonfinite(value):
            yield key, value


def _is_nonfinite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
