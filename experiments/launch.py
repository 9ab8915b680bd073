"""What `experiments.main` does once flags are parsed: check, wire the task, train or evaluate."""
from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Sequence

import jax
from absl import logging

from experiments.tasks import EXTRA_MODES, build_task, check_mode, run_mode, supported_modes
from training import corpus
from training import mesh as mesh_lib
from training.checkpoint import CheckpointError
from training.lock import WorkdirInUseError, training_lock
from training.trainer import Trainer, TrainingDiverged
from training.validate import ConfigError, validate

MODES = tuple(dict.fromkeys(("train", "eval", "check", *EXTRA_MODES)))


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user fixes from the command line: reported as one message, no traceback."""
    from pertok.errors import PerTokError

    from experiments.outputs import OutputError

    errors = [ConfigError, TrainingDiverged, CheckpointError, FileNotFoundError, PerTokError,
              OutputError, WorkdirInUseError]
    try:
        from pertok.store import StoreError
        errors.append(StoreError)
    except ImportError:
        pass
    return tuple(errors)


def run(config, workdir: str, mode: str = "train", argv: Sequence[str] = ()) -> dict | None:
    """Train (resuming from the workdir's newest intact checkpoint), evaluate it, or only check.

    Every config value is checked before the token store is built or anything compiles; the
    resume checks run before WORKDIR/config.json is (re)written. Training holds WORKDIR/.lock
    until it ends, so a second training of the same workdir stops at once (WorkdirInUseError).

    Args:
      argv: the command-line arguments of this run, to print the next command when it ends.
    Raises:
      training.preemption.Preempted: training stopped on SIGTERM/SIGINT after saving.
    """
    from pertok import PerTok  # the tokenizer sizes the model before any data is read

    check_mode(mode, config)
    if config.task in EXTRA_MODES.get(mode, {}):  # vary, generate, Cadenza check: own loaders
        return run_mode(mode, config, workdir)
    mesh_lib.maybe_initialize_distributed(config.distributed)
    task = build_task(config, PerTok())
    validate(config, jax.device_count(), jax.process_count(), task)
    from experiments.heldout import check_heldout
    check_heldout(config, task)
    if mode == "check":
        logging.info("config is valid for %d devices", jax.device_count())
        return None
    os.makedirs(workdir, exist_ok=True)
    # One training per workdir, locked before anything is written to it; eval writes only its
    # own files and may run beside a training.
    with training_lock(workdir) if mode == "train" else contextlib.nullcontext():
        return _train_or_evaluate(config, workdir, mode, task, argv)


def _train_or_evaluate(config, workdir: str, mode: str, task, argv: Sequence[str]) -> dict | None:
    """Build the token store and the Trainer, then train or evaluate (the body of `run`)."""
    from experiments.config_history import history

    store = corpus.open_store(config.data)
    trainer = Trainer(task, config, workdir, store, corpus.augmentation(store.tokenizer, config.data),
                      history=history())
    try:
        if mode == "train":
            trainer.train()
            if jax.process_index() == 0:
                logging.info(finished_line(config, trainer.checkpoints.latest_step(),
                                           trainer.checkpoints.directory, argv))
            return None
        trainer.write_metrics_to(os.path.join(workdir, "eval"))  # beside a training, not into its file
        state = trainer.latest_state()  # restored once for both evaluations
        results = trainer.evaluate_latest(state)
        from experiments.heldout import report_heldout
        report_heldout(config, workdir, task, trainer, state)
        if jax.process_index() == 0:
            from experiments.sample_report import report_samples
            report_samples(config, workdir, store)
        return results
    finally:
        trainer.close()


def finished_line(config, step: int | None, directory: str, argv: Sequence[str]) -> str:
    """'trained to step N: checkpoint DIR/N; next: <the same command with --mode=eval>'."""
    kept = [arg for index, arg in enumerate(argv)
            if not arg.startswith("--mode") and (index == 0 or argv[index - 1] != "--mode")]
    kept = kept or ["--config=CONFIG", f"--workdir={os.path.dirname(directory)}"]
    modes = [mode for mode in supported_modes(config.task) if mode not in ("train", "check")]
    commands = " or ".join(shlex.join(["python", "-m", "experiments.main", *kept, f"--mode={mode}"])
                           for mode in modes)
    return f"trained to step {step}: checkpoint {os.path.join(directory, str(step))}; next: {commands}"
