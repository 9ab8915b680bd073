"""The training loop: one small Trainer that jits the step with donation and reads metrics
one step late, so dispatch stays ahead of the device."""
from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from training import mesh as mesh_lib
from training import metrics as metrics_lib
from training import divergence, resume
from training.checkpoint import Checkpoints
from training.data import (Augmentation, Prefetcher, StepSampler, content_hash, split_pieces,
                           train_step_sampler,
                           step_positions)
from training.optim import make_optimizer
from training.preemption import Preempted, StopRequest
from training.state import TrainState, abstract_state, create_state, state_shardings
from training.step import make_eval_step, make_train_step
from training.task import Pieces, Task
from training.validate import ConfigError


class TrainingDiverged(FloatingPointError):
    """A step's loss, gradients or update were not finite; it was not saved."""


class Trainer:
    """Trains `task` on `pieces` as `config` says, writing to `workdir`.

    Args:
      pieces: every tokenized piece; split into training and validation by piece path.
      augmentation: token-id augmentation applied to training examples only.
      history: the config keys added or renamed since runs were saved (what a checkpoint
        without them was trained with); none declared: such a checkpoint is refused.
    """

    def __init__(self, task: Task, config, workdir: str, pieces: Pieces,
                 augmentation: Augmentation | None = None, mesh: jax.sharding.Mesh | None = None,
                 history: resume.ConfigHistory | None = None):
        self.task, self.config, self.workdir = task, config, workdir
        self.history = history or resume.ConfigHistory()
        self.mesh = mesh or mesh_lib.make_mesh(config.mesh.fsdp)
        self.is_chief = jax.process_index() == 0
        train_pieces, valid_pieces = split_pieces(pieces, config.data.valid_fraction,
                                                  config.data.get("split", "file"))
        logging.info("pieces: %d training, %d validation", len(train_pieces), len(valid_pieces))
        if not len(valid_pieces) and config.eval.every:
            logging.warning("no validation pieces: evaluation is skipped (data.valid_fraction=%g)",
                            config.data.valid_fraction)
        self.train_data = train_step_sampler(task.sampler(train_pieces), config.seed,
                                             config.train.batch_size, config.data.get("buckets", 1),
                                             augmentation)
        if hasattr(self.train_data, "epoch_report"):  # length buckets: say what padding remains
            report = self.train_data.epoch_report()
            logging.info("length buckets %s: padding %.1f%% of the context positions (%.1f%% "
                         "without buckets), %d steps per epoch", self.train_data.lengths,
                         100 * report["padding_fraction"], 100 * report["padding_fraction_unbucketed"],
                         report["steps_per_epoch"])
        self.valid_pieces = valid_pieces
        self.valid_data = (StepSampler(task.sampler(valid_pieces), config.seed, shuffle=False)
                           if len(valid_pieces) else None)
        self.data_hash = content_hash(pieces)
        self.tx, self.schedule = make_optimizer(config.train)
        self.checkpoints = Checkpoints(workdir, config.checkpoint.keep)
        self.writer = metrics_lib.MetricsWriter(workdir, None, enabled=self.is_chief)
        self._stop: StopRequest | None = None  # set while training: SIGTERM stops evaluation too
        self._compiled: set[str] = set()  # steps whose first call (the compilation) was timed
        self._build_steps()

    def _build_steps(self) -> None:
        train, mesh = self.config.train, self.mesh
        self.micro_rows = train.batch_size // train.accum_steps
        self.train_sharding = mesh_lib.batch_sharding(mesh, leading_unsharded=1)
        self.eval_sharding = mesh_lib.batch_sharding(mesh)
        self.train_rows = mesh_lib.process_rows(
            self.train_sharding, (train.accum_steps, self.micro_rows), axis=1)
        self.eval_rows = mesh_lib.process_rows(
            self.eval_sharding, (self.config.eval.batch_size,), axis=0)
        init_batch = {k: v[None] for k, v in self.train_data.example(0).items()}
        self.abstract = abstract_state(self.task, self.tx, init_batch, self.config.seed)
        self.shardings = state_shardings(mesh, self.abstract, self.config.mesh.fsdp_min_size)
        self._init_batch = init_batch
        replicated = mesh_lib.replicated(mesh)
        self.train_step = jax.jit(
            make_train_step(self.task, self.tx, self.schedule, self.config.seed),
            in_shardings=(self.shardings, self.train_sharding),
            out_shardings=(self.shardings, replicated), donate_argnums=0)
        self.eval_step = jax.jit(make_eval_step(self.task),
                                 in_shardings=(self.shardings, self.eval_sharding),
                                 out_shardings=replicated)

    def initial_state(self, training: bool = False) -> TrainState:
        """The newest intact checkpoint of the workdir if there is one, else a fresh state.

        Args:
          training: check every config key that changes the trajectory (else only the model's)
            and set damaged checkpoints aside; `train` logs the accepted changes.
        """
        self._accepted_changes = {}

        def check_config(step: int) -> None:
            self._accepted_changes = self._check_saved_config(step, only_model=not training)

        state, _ = resume.restore_intact(self.checkpoints, self.abstract, self.shardings,
                                         check_config, set_aside=training)
        if state is None:
            return create_state(self.task, self.tx, self._init_batch, self.config.seed,
                                self.shardings)
        return state

    def host_batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the batch of `step`: arrays [accum_steps, local rows, ...]."""
        train = self.config.train
        return self.train_data.batch(
            step_positions(step, train.batch_size, train.accum_steps, self.train_rows))

    def train(self, until: int | None = None) -> TrainState:
        """Train from the newest intact checkpoint (or scratch) to `train.steps`.

        Args:
          until: stop (with a checkpoint) after this step instead; the schedule is unchanged.
        Raises:
          Preempted: SIGTERM/SIGINT arrived; a checkpoint was saved first.
          TrainingDiverged: a step was not finite; it was not saved.
        """
        if self.is_chief:
            for path in self.checkpoints.remove_partial_saves():
                logging.warning("removed %s, a save that a killed run never finished", path)
        state = self.initial_state(training=True)
        first = int(jax.device_get(state.step))
        total = self.config.train.steps if until is None else min(until, self.config.train.steps)
        self.writer = metrics_lib.MetricsWriter(self.workdir, first, enabled=self.is_chief)
        if self._accepted_changes:
            logging.warning("resuming with changed %s, as resume.allow_changes permits",
                            ", ".join(self._accepted_changes))
            self.writer.write_event(first, "resume_changes", self._accepted_changes)
        if self.is_chief:
            resume.write_config(self.workdir, self._config_dict(), first)
        self._clock = _StepClock(first)
        with StopRequest(self.config.checkpoint.preemption_sync_every) as stop:
            self._stop = stop
            try:
                if self._evaluation_missing(first):  # the last run died while evaluating it
                    logging.info("evaluating step %d: the previous run did not finish it", first)
                    if self.evaluate(state) is None:
                        raise Preempted(f"stop requested while evaluating step {first}; rerun the "
                                        f"same command to resume")
                if first >= total:
                    logging.info("already trained to step %d of %d", first, total)
                    return state
                prefetch = Prefetcher(self.host_batch, first, total, self.config.data.prefetch)
                try:
                    return self._loop(state, prefetch, stop, total)
                finally:
                    prefetch.close()
            finally:
                self._stop = None

    def _loop(self, state: TrainState, prefetch: Prefetcher, stop: StopRequest,
              total: int) -> TrainState:
        every, pending = self.config.checkpoint.every, None  # pending: dispatched, not yet read
        for step, host in prefetch:
            batch = mesh_lib.put_batch(host, self.train_sharding, 1, self.micro_rows)
            state, step_metrics = self._call(self._train_step_name(step), self.train_step, state, batch)
            pending = self._read(pending)  # the previous step, read while this one runs
            done, pending = step + 1, (step + 1, step_metrics)
            stopping = stop.requested(done)
            save = done % every == 0 or done == total or stopping
            evaluate = self._evaluation_due(done)
            if save or evaluate:
                pending = self._read(pending)  # raises on a non-finite update: never saved
            if save:
                self.checkpoints.save(state, self._config_dict(), self.data_hash)
            if evaluate and not stopping:  # saved first: a resumed run redoes a lost evaluation
                stopping = self.evaluate(state) is None
            if save or evaluate:
                self._clock.restart()
            if stopping:
                self.checkpoints.save(state, self._config_dict(), self.data_hash)
                raise Preempted(f"stop requested: checkpoint saved at step {done} in "
                                f"{self.checkpoints.directory}; rerun the same command to resume")
        self._read(pending)
        return state

    def _read(self, pending: tuple[int, dict] | None) -> None:
        """Report a dispatched step (blocking until it is done); returns the new pending, None."""
        if pending is not None:
            self._report(*pending)
        return None

    def _report(self, step: int, step_metrics: dict) -> None:
        """Read one step's metrics: raise if not finite, log every `train.log_every` steps."""
        values = jax.device_get(step_metrics)
        update_is_finite = bool(values.pop("update_is_finite"))
        values = {k: float(v) for k, v in values.items()}
        self._clock.tick(step)
        if not (update_is_finite and math.isfinite(values["loss"])
                and math.isfinite(values["grad_norm"])):
            self.writer.write(step, values)
            raise TrainingDiverged(divergence.explain(self, step, values))
        total = self.config.train.steps
        if step % self.config.train.log_every and step != total:
            return
        seconds = self._clock.window()
        if math.isfinite(seconds):
            tokens_per_s = self.config.train.batch_size * self.task.tokens_per_example() / seconds
            values.update(tokens_per_s=tokens_per_s, step_time_s=seconds, mfu=metrics_lib.mfu(
                self._flops_per_token(step), tokens_per_s, self.mesh.size,
                metrics_lib.peak_flops_per_device()))
            values.update(self._real_context_tokens_per_s(step, seconds))
        self.writer.write(step, values)
        logging.info(metrics_lib.progress_line(step, total, values["loss"],
                                               values.get("tokens_per_s", math.nan),
                                               self._clock.average()))

    def _train_step_name(self, step: int) -> str:
        """"train", or "train (context N)" when length buckets compile one step per length."""
        if hasattr(self.train_data, "step_length"):
            return f"train (context {self.train_data.step_length(step)})"
        return "train"

    def _window(self, step: int) -> range:
        return range(max(step - self.config.train.log_every, 0), step)

    def _flops_per_token(self, step: int) -> float | None:
        """Useful FLOPs per target token; with length buckets, averaged over the logging
        window's context lengths (a short batch does less work: MFU must not count L)."""
        if not hasattr(self.train_data, "step_length"):
            return self.task.flops_per_token()
        window = self._window(step)
        lengths = [self.train_data.step_length(s) for s in window]
        return sum(self.task.flops_per_token(length) for length in lengths) / max(len(lengths), 1)

    def _real_context_tokens_per_s(self, step: int, seconds: float) -> dict[str, float]:
        """With length buckets: unpadded context tokens per second over the logging window."""
        if not hasattr(self.train_data, "real_tokens"):
            return {}
        window = self._window(step)
        mean = sum(self.train_data.real_tokens(s) for s in window) / max(len(window), 1)
        return {"real_context_tokens_per_s": mean / seconds}

    def _call(self, name: str, step_fn, *args):
        """`step_fn(*args)`, logging the compilation time of its first call."""
        if name in self._compiled:
            return step_fn(*args)
        logging.info("compiling the %s step ...", name)
        start = time.perf_counter()
        result = step_fn(*args)  # returns once compiled and dispatched
        logging.info("compiled the %s step in %.1f s", name, time.perf_counter() - start)
        self._compiled.add(name)
        return result

    def evaluate(self, state: TrainState) -> dict[str, float] | None:
        """Mean metrics over `eval.batches` fixed batches of the validation split.

        While training, SIGTERM/SIGINT ends it after the current batch: returns None, logs nothing.
        """
        if self.valid_data is None:
            raise ConfigError("no validation pieces to evaluate on: raise data.valid_fraction "
                              "or add pieces")
        size, sums = self.config.eval.batch_size, None
        step = int(jax.device_get(state.step))
        for index in range(self.config.eval.batches):
            if self._stop is not None and self._stop.agreed():
                logging.warning("evaluation of step %d interrupted; the resumed run does it", step)
                return None
            positions = index * size + np.arange(size)[self.eval_rows]
            host = self.valid_data.batch(positions)
            batch_metrics = self._call("eval", self.eval_step, state,
                                       mesh_lib.put_batch(host, self.eval_sharding, 0, size))
            previous, sums = sums, (batch_metrics if sums is None
                                    else jax.tree.map(jnp.add, sums, batch_metrics))
            jax.block_until_ready(previous)  # one batch in flight: a stop is seen batch by batch
        values = {f"valid/{k}": float(v) / self.config.eval.batches
                  for k, v in jax.device_get(sums).items()}
        self.writer.write(step, values)
        logging.info("eval at step %d: %s", step,
                     ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())))
        return values

    def _evaluation_due(self, step: int) -> bool:
        every = self.config.eval.every
        return self.valid_data is not None and every > 0 and (
            step % every == 0 or step == self.config.train.steps)

    def _evaluation_missing(self, step: int) -> bool:
        """Whether `step` is due for evaluation but metrics.jsonl has no validation line of it."""
        if step == 0 or not self._evaluation_due(step):
            return False
        missing = False
        if self.is_chief:
            lines = (metrics_lib.read_metrics(self.writer.path)
                     if os.path.exists(self.writer.path) else [])
            missing = not any(line.get("step") == step and any(k.startswith("valid/") for k in line)
                              for line in lines)
        if jax.process_count() > 1:  # only the chief writes metrics: it decides for all
            missing = bool(multihost_utils.broadcast_one_to_all(np.array(missing)))
        return missing

    def write_metrics_to(self, folder: str) -> None:
        """Append evaluation lines to FOLDER/metrics.jsonl instead of the run's own file (an
        evaluation beside a training that rewrites its file on resume)."""
        if self.is_chief:
            os.makedirs(folder, exist_ok=True)
        self.writer = metrics_lib.MetricsWriter(folder, None, enabled=self.is_chief)

    def latest_state(self) -> TrainState:
        """The newest intact checkpoint's state (FileNotFoundError when there is none)."""
        if self.checkpoints.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {self.checkpoints.directory} to evaluate")
        return self.initial_state()

    def evaluate_latest(self, state: TrainState | None = None) -> dict[str, float]:
        """Evaluate the newest intact checkpoint (or `state`, restored from it by `latest_state`);
        appends to metrics.jsonl."""
        return self.evaluate(self.latest_state() if state is None else state)

    def _config_dict(self) -> dict:
        return json.loads(self.config.to_json_best_effort())

    def _check_saved_config(self, step: int, only_model: bool) -> dict[str, list]:
        """The accepted config changes since the checkpoint at `step`; ConfigError if refused."""
        current = resume.flatten(self._config_dict())
        saved = resume.saved_as_now(resume.flatten(self.checkpoints.saved_config(step)), current,
                                    self.history, f"the checkpoint at step {step} in {self.checkpoints.directory}")
        manifest = self.checkpoints.manifest(step)
        if manifest is not None and manifest.get("data"):
            saved[resume.DATA_KEY], current[resume.DATA_KEY] = manifest["data"], self.data_hash
        changes = resume.config_changes(saved, current, only_model)
        return resume.check_changes(changes, self.config.resume.allow_changes, list(current),
                                    step, self.checkpoints.directory)

    def close(self) -> None:
        self.checkpoints.close()


class _StepClock:
    """Wall time per step between metric reads, averaged over each logging window.

    The first read after (re)starting is left out: it includes compilation.
    """

    def __init__(self, first_step: int):
        self._time, self._step, self._warm = time.perf_counter(), first_step, False
        self._window = [0.0, 0]  # seconds, steps since the last logged line
        self._total = [0.0, 0]

    def tick(self, step: int) -> None:
        now = time.perf_counter()
        if self._warm:
            for acc in (self._window, self._total):
                acc[0], acc[1] = acc[0] + now - self._time, acc[1] + step - self._step
        self._time, self._step, self._warm = now, step, True

    def restart(self) -> None:
        """Leave out what ran since the last read (evaluation, a save)."""
        self._time = time.perf_counter()

    def window(self) -> float:
        """Seconds per step since the previous call (NaN when no timed step)."""
        seconds, steps = self._window
        self._window = [0.0, 0]
        return seconds / steps if steps else float("nan")

    def average(self) -> float:
        seconds, steps = self._total
        return seconds / steps if steps else float("nan")
