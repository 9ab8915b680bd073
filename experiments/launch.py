"""What `experiments.main` does once flags are parsed: check, wire the task, train or evaluate."""
from __future__ import annotations

import json
import os

import jax
from absl import logging

from experiments.tasks import EXTRA_MODES, build_task, check_mode, run_mode
from training import corpus
from training import mesh as mesh_lib
from training.trainer import Trainer, TrainingDiverged
from training.validate import ConfigError, validate

MODES = tuple(dict.fromkeys(("train", "eval", "check", *EXTRA_MODES)))


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user fixes from the command line: reported as one message, no traceback."""
    from pertok.errors import PerTokError

    errors = [ConfigError, TrainingDiverged, FileNotFoundError, PerTokError]
    try:
        from pertok.store import StoreError
        errors.append(StoreError)
    except ImportError:
        pass
    return tuple(errors)


def run(config, workdir: str, mode: str = "train") -> dict | None:
    """Train (resuming from the workdir's latest checkpoint), evaluate it, or only check.

    Every config value is checked before the token store is built or anything compiles.
    """
    from pertok import PerTok  # the tokenizer sizes the model before any data is read

    check_mode(mode, config)
    if config.task in EXTRA_MODES.get(mode, {}):  # vary, generate, Cadenza check: own loaders
        return run_mode(mode, config, workdir)
    mesh_lib.maybe_initialize_distributed(config.distributed)
    task = build_task(config, PerTok())
    validate(config, jax.device_count(), jax.process_count(), task)
    if mode == "check":
        logging.info("config is valid for %d devices", jax.device_count())
        return None
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(json.loads(config.to_json_best_effort()), f, indent=2, sort_keys=True)
    store = corpus.open_store(config.data)
    trainer = Trainer(task, config, workdir, store, corpus.augmentation(store.tokenizer, config.data))
    try:
        if mode == "train":
            trainer.train()
            return None
        results = trainer.evaluate_latest()
        if jax.process_index() == 0:
            from experiments.sample_report import report_samples
            report_samples(config, workdir, store)
        return results
    finally:
        trainer.close()
