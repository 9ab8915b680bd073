"""One checkpoint, one model: a run saved by older code is read as that code trained it.

Each config file declares, beside its keys, `ADDED` (the value that reproduces a run saved before
a key existed) and `RENAMED` (how a key the code no longer reads maps onto today's). Resume,
`--mode=eval`, `vary`, the benchmarks and the shipped-model loader all read a saved config through
`training.resume.saved_as_now` with this history, so they build the same model from it; a key
nobody declared is one clear error, never a silently different model.
"""
from __future__ import annotations

import functools
import importlib

import ml_collections

from training import resume
from training.validate import ConfigError

CONFIG_FILES = {"composer": "composer", "performer": "performer", "perceivers": "perceivers", "lm": "lm"}


@functools.cache
def history() -> resume.ConfigHistory:
    """Every config file's declarations, the harness's included."""
    added, renamed = {}, {}
    for name in ("harness", *CONFIG_FILES.values()):
        module = importlib.import_module(f"experiments.configs.{name}")
        added.update(getattr(module, "ADDED", {}))
        renamed.update(getattr(module, "RENAMED", {}))
    return resume.ConfigHistory(added, renamed)


def saved_config(saved: dict, source: str, expect: str | None = None) -> ml_collections.ConfigDict:
    """The config a saved run (a config.json, nested) builds with this code: every key present,
    absent ones as declared for older runs, the rest (how to log, evaluate, sample) at the task
    config's defaults.

    Args:
      source: what the config is, for messages (a workdir, a pretrained folder).
      expect: the task the caller loads (e.g. "performer"); a run of another is one error.
    """
    task = saved.get("task")
    if expect is not None and task != expect:
        raise ConfigError(f"{source} holds a {task!r} model, not a {expect!r} one")
    if task not in CONFIG_FILES:
        raise ConfigError(f"{source}: task={task!r} is not one of {sorted(CONFIG_FILES)}")
    module = importlib.import_module(f"experiments.configs.{CONFIG_FILES[task]}")
    defaults = resume.flatten(module.get_config(None).to_dict())
    flat = {**defaults, **resume.saved_as_now(resume.flatten(saved), defaults, history(), source)}
    return ml_collections.ConfigDict(unflatten(flat))


def unflatten(flat: dict) -> dict:
    """{'train.steps': 6} -> {'train': {'steps': 6}}."""
    tree: dict = {}
    for key, value in flat.items():
        *blocks, leaf = key.split(".")
        node = tree
        for block in blocks:
            node = node.setdefault(block, {})
        node[leaf] = value
    return tree
