"""Which model package implements each `config.task`; imported lazily, by name."""
from __future__ import annotations

import importlib

from training.task import Task
from training.validate import ConfigError


def _lm(config, tokenizer) -> Task:
    from baseline import LMTask

    return LMTask(config.model, tokenizer.vocab_size, config.model.context_length,
                  pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)


def _composer(config, tokenizer) -> Task:
    from composer import ComposerTask

    return ComposerTask(config.model, config.kl, config.idea, tokenizer, train_steps=config.train.steps)


def _performer(config, tokenizer) -> Task:
    from performer import PerformerTask

    return PerformerTask(config.model, tokenizer)


def _perceivers(config, tokenizer) -> Task:
    from perceivers import PerceiverSTask

    return PerceiverSTask(config.model, tokenizer.vocab_size, config.data.segmentation,
                          pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)


TASKS = {"lm": _lm, "composer": _composer, "performer": _performer, "perceivers": _perceivers}

# Modes beyond train/eval/check: mode -> {config.task: "module:function"}; the function is
# imported when used and called as function(config, workdir). Each task adds its own entries.
EXTRA_MODES = {
    "check": {"cadenza": "experiments.cadenza:check"},  # trainable tasks: launch checks them
    "vary": {"cadenza": "experiments.vary:vary"},
    "perform": {"cadenza": "experiments.perform:perform_files"},
    "generate": {"cadenza": "experiments.cadenza:generate",
                 "perceivers": "experiments.perceivers:generate",
                 "lm": "experiments.lm:generate"},
}


def build_task(config, tokenizer) -> Task:
    """The task named by `config.task`, sized for `tokenizer`'s vocabulary."""
    if config.task not in TASKS:
        raise ConfigError(f"task={config.task!r} is not one of {sorted(TASKS)}")
    return TASKS[config.task](config, tokenizer)


def supported_modes(task: str) -> list[str]:
    """The --mode values a config with `task` can run: train/eval/check for trainable tasks,
    then every extra mode registered for it."""
    modes = ["train", "eval", "check"] if task in TASKS else []
    return list(dict.fromkeys(modes + [mode for mode, runners in EXTRA_MODES.items() if task in runners]))


def check_mode(mode: str, config) -> None:
    """One clear error when `config` cannot run `mode`, naming the modes it supports."""
    modes = supported_modes(config.task)
    if mode not in modes:
        raise ConfigError(f"--mode={mode} does not apply to a config with task={config.task!r}; "
                          f"its modes: {', '.join(modes)}")


def run_mode(mode: str, config, workdir: str):
    """Run one of EXTRA_MODES with the function registered for `config.task`."""
    runners = EXTRA_MODES[mode]
    if config.task not in runners:
        raise ConfigError(f"--mode={mode} needs a config with task in {sorted(runners)}; "
                          f"this one has task={config.task!r}")
    module, _, function = runners[config.task].partition(":")
    return getattr(importlib.import_module(module), function)(config, workdir)
