"""Resuming a run: from the newest checkpoint that restores and verifies, and only with a config
that continues the same training trajectory (unless `resume.allow_changes` names the change)."""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from training.checkpoint import CheckpointError, Checkpoints, one_line
from training.state import TrainState
from training.validate import ConfigError

# Keys (a name ending in "." is a whole block) that never change which updates are applied:
# how often to log, evaluate or save, the device layout (numerically equal up to reduction
# order), where the token store is cached, and sampling. Every other key does.
FREE_TO_CHANGE = ("train.log_every", "eval.", "checkpoint.", "mesh.", "distributed.", "resume.",
                  "sample.", "data.prefetch", "data.store_workers", "data.cache_dir",
                  "data.store_dir")
DATA_KEY = "data.content"  # a pseudo-key: the hash of the training pieces' paths and tokens
MODEL_KEYS = ("task", "model.")  # what evaluation checks: they shape the parameters
_ABSENT = "<absent>"


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'train': {'steps': 6}} -> {'train.steps': 6}."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _matches(key: str, names: tuple[str, ...]) -> bool:
    return any(key == name or (name.endswith(".") and key.startswith(name)) for name in names)


@dataclasses.dataclass(frozen=True)
class ConfigHistory:
    """What the code declares about config keys that came and went since runs were saved.

    Attributes:
      added: {key: the value that reproduces a run saved before the key existed}.
      renamed: {key the code no longer reads: function(saved value) -> {today's key: value}}.
    """

    added: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    renamed: Mapping[str, Callable[[Any], dict]] = dataclasses.field(default_factory=dict)


def saved_as_now(saved: dict, known: Collection[str], history: ConfigHistory, source: str) -> dict:
    """A saved flat config as this code reads it: renamed keys mapped, keys added since given the
    value that reproduces the saved run. Keys that only say how to log, evaluate, save or sample
    (FREE_TO_CHANGE) may stay absent: the command gives them.

    Args:
      known: every flat key this code's config has.
      source: what the config is, for messages ("the checkpoint at step 4 in runs/x").
    Raises:
      ConfigError: a saved key this code does not know (and no declared rename), or a missing
        key that shapes the model or its training with no declared value: the run is of other
        code, and building it would give another model.
    """
    now, unknown = {}, []
    for key, value in saved.items():
        if key in known or key == DATA_KEY:
            now[key] = value
        elif key in history.renamed:
            now.update({new: old for new, old in history.renamed[key](value).items() if new not in saved})
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"{source} was saved with config key(s) this code does not know: "
                          f"{', '.join(sorted(unknown))}; it is a run of other code (use that code, or a "
                          f"new --workdir)")
    missing = []
    for key in sorted(set(known) - now.keys()):
        if key in history.added:
            now[key] = history.added[key]
        elif not _matches(key, FREE_TO_CHANGE):
            missing.append(key)
    if missing:
        raise ConfigError(f"{source} was saved without config key(s) {', '.join(missing)}, which shape the "
                          f"model or its training, and this code declares no value for runs saved before "
                          f"them; it is a run of other code (use that code, or a new --workdir)")
    return now


def config_changes(saved: dict, current: dict, only_model: bool = False) -> dict[str, list]:
    """{key: [saved value, current value]} for the keys that change the trajectory.

    Args:
      saved, current: flat configs (`flatten`), with DATA_KEY where the data hash is known.
      only_model: compare only what shapes the parameters (evaluation of a checkpoint).
    """
    changes = {}
    for key in sorted(saved.keys() | current.keys()):
        relevant = _matches(key, MODEL_KEYS) if only_model else not _matches(key, FREE_TO_CHANGE)
        old, new = saved.get(key, _ABSENT), current.get(key, _ABSENT)
        if not relevant or old == new:
            continue
        if old == _ABSENT:  # a key the command gives (`saved_as_now` refused every other)
            continue
        changes[key] = [old, new]
    return changes


def allowed_changes(text: str, keys: list[str]) -> tuple[str, ...]:
    """The keys or blocks named by `resume.allow_changes` ('seed,model'); unknown names refused."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    known = set(keys) | {DATA_KEY} | {key.rsplit(".", 1)[0] for key in keys if "." in key}
    for name in names:
        if name not in known:
            nearest = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.5)
            raise ConfigError(f"resume.allow_changes names {name!r}, which is not a config key or "
                              f"block; nearest: {', '.join(nearest) or 'none'}")
    return tuple(name if name in keys or name == DATA_KEY else f"{name}." for name in names)


def check_changes(changes: dict[str, list], allow: str, keys: list[str], step: int,
                  directory: str) -> dict[str, list]:
    """The changes `allow` accepts; ConfigError listing every other one.

    Args:
      allow: the value of `resume.allow_changes`.
      keys: every flat key of the current config (to check the names in `allow`).
    """
    allowed = allowed_changes(allow, keys)
    refused = {key: change for key, change in changes.items() if not _matches(key, allowed)}
    if refused:
        lines = "\n  ".join(f"{key}: {json.dumps(old)} -> {json.dumps(new)}"
                            for key, (old, new) in refused.items())
        raise ConfigError(
            f"the checkpoint at step {step} in {directory} was trained with another config; "
            f"these changes alter the training trajectory:\n  {lines}\nUse a new --workdir, go "
            f"back to the saved values (the run's config.json), or resume anyway with "
            f"--config.resume.allow_changes={','.join(refused)}")
    return changes


def restore_intact(checkpoints: Checkpoints, abstract: TrainState, shardings,
                   check_config: Callable[[int], None], set_aside: bool):
    """(state, step) of the newest checkpoint that restores and verifies; (None, None) if none.

    Each damaged checkpoint costs one warning line and the search goes on to the one before.
    A refused config (ConfigError from `check_config(step)`) ends the search at once.

    Args:
      set_aside: move the damaged checkpoints newer than the restored one to
        WORKDIR/damaged-checkpoints, so their steps can be saved again (training only).
    Raises:
      CheckpointError: there are checkpoints but none can be restored (all are kept).
    """
    failures = []
    for step in reversed(checkpoints.all_steps()):
        state, reason = None, ""
        logging.info("restoring the checkpoint at step %d in %s", step, checkpoints.directory)
        try:
            check_config(step)
            state = checkpoints.restore(abstract, shardings, step)
        except ConfigError:
            raise
        except CheckpointError as error:
            reason = str(error)
        except Exception as error:  # a damaged config or manifest file
            reason = f"checkpoint {checkpoints.path(step)} cannot be read: {one_line(error)}"
        if _everywhere(state is not None):
            if set_aside:
                _set_aside(checkpoints, [failed for failed, _ in failures])
            return state, step
        reason = reason or f"checkpoint {checkpoints.path(step)}: another process could not restore it"
        logging.warning("%s; trying the one before", reason)
        failures.append((step, reason))
    if failures:
        listed = "; ".join(reason for _, reason in failures)
        raise CheckpointError(f"no checkpoint in {checkpoints.directory} can be restored ({listed}); "
                              f"nothing was deleted: move the folder away to start afresh")
    return None, None


def _everywhere(ok: bool) -> bool:
    """Whether `ok` holds on every process (they must all resume from the same step)."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.array(ok))))


def _set_aside(checkpoints: Checkpoints, steps: list[int]) -> None:
    for step in steps:
        if jax.process_index() == 0:
            moved = checkpoints.set_aside(step)
            logging.warning("moved the damaged checkpoint of step %d to %s (kept, not deleted)",
                            step, moved)
    if steps and jax.process_count() > 1:
        multihost_utils.sync_global_devices("damaged checkpoints set aside")
        checkpoints.reload()


def write_config(workdir: str, config: dict, step: int) -> None:
    """Write WORKDIR/config.json, first keeping a different earlier one as config-STEP.json
    (the config the run was trained with up to `step`)."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                same = json.load(f) == config
        except (OSError, ValueError):
            same = False
        if not same:
            kept, index = os.path.join(workdir, f"config-{step}.json"), 1
            while os.path.exists(kept):
                index += 1
                kept = os.path.join(workdir, f"config-{step}-{index}.json")
            os.replace(path, kept)
    partial = f"{path}.tmp-{os.getpid()}"
    with open(partial, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    os.replace(partial, path)
