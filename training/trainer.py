"""The training loop: one small Trainer that jits the step with donation and reads metrics
one step late, so dispatch stays ahead of the device."""
from __future__ import annotations

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from training import mesh as mesh_lib
from training import metrics as metrics_lib
from training.checkpoint import Checkpoints
from training.data import Augmentation, Prefetcher, StepSampler, split_pieces, step_positions
from training.optim import make_optimizer
from training.preemption import StopRequest
from training.state import TrainState, abstract_state, create_state, state_shardings
from training.step import make_eval_step, make_train_step
from training.task import Pieces, Task
from training.validate import ConfigError


class TrainingDiverged(FloatingPointError):
    """The loss or gradient norm became NaN or Inf; the last good checkpoint is kept."""


class Trainer:
    """Trains `task` on `pieces` as `config` says, writing to `workdir`.

    Args:
      pieces: every tokenized piece; split into training and validation by piece path.
      augmentation: token-id augmentation applied to training examples only.
    """

    def __init__(self, task: Task, config, workdir: str, pieces: Pieces,
                 augmentation: Augmentation | None = None, mesh: jax.sharding.Mesh | None = None):
        self.task, self.config, self.workdir = task, config, workdir
        self.mesh = mesh or mesh_lib.make_mesh(config.mesh.fsdp)
        self.is_chief = jax.process_index() == 0
        train_pieces, valid_pieces = split_pieces(pieces, config.data.valid_fraction)
        logging.info("pieces: %d training, %d validation", len(train_pieces), len(valid_pieces))
        if not len(valid_pieces) and config.eval.every:
            logging.warning("no validation pieces: evaluation is skipped (data.valid_fraction=%g)",
                            config.data.valid_fraction)
        self.train_data = StepSampler(task.sampler(train_pieces), config.seed, augmentation)
        self.valid_data = (StepSampler(task.sampler(valid_pieces), config.seed, shuffle=False)
                           if len(valid_pieces) else None)
        self.tx, self.schedule = make_optimizer(config.train)
        self.checkpoints = Checkpoints(workdir, config.checkpoint.keep)
        self.writer = metrics_lib.MetricsWriter(workdir, None, enabled=self.is_chief)
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

    def initial_state(self) -> TrainState:
        """The latest checkpoint of the workdir if there is one, else a fresh state."""
        step = self.checkpoints.latest_step()
        if step is None:
            return create_state(self.task, self.tx, self._init_batch, self.config.seed,
                                self.shardings)
        self._check_saved_model_config(step)
        logging.info("restoring the checkpoint at step %d in %s", step, self.checkpoints.directory)
        return self.checkpoints.restore(self.abstract, self.shardings, step)

    def host_batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the batch of `step`: arrays [accum_steps, local rows, ...]."""
        train = self.config.train
        return self.train_data.batch(
            step_positions(step, train.batch_size, train.accum_steps, self.train_rows))

    def train(self, until: int | None = None) -> TrainState:
        """Train from the latest checkpoint (or scratch) to `train.steps`; returns the state.

        Args:
          until: stop (with a checkpoint) after this step instead; the schedule is unchanged.
        """
        state = self.initial_state()
        first = int(jax.device_get(state.step))
        total = self.config.train.steps if until is None else min(until, self.config.train.steps)
        self.writer = metrics_lib.MetricsWriter(self.workdir, first, enabled=self.is_chief)
        self._clock = _StepClock(first)
        if first >= total:
            logging.info("already trained to step %d of %d", first, total)
            return state
        prefetch = Prefetcher(self.host_batch, first, total, self.config.data.prefetch)
        try:
            with StopRequest(self.config.checkpoint.preemption_sync_every) as stop:
                state = self._loop(state, prefetch, stop, total)
        finally:
            prefetch.close()
        return state

    def _loop(self, state: TrainState, prefetch: Prefetcher, stop: StopRequest,
              total: int) -> TrainState:
        every, pending = self.config.checkpoint.every, None  # pending: dispatched, not yet read
        for step, host in prefetch:
            batch = mesh_lib.put_batch(host, self.train_sharding, 1, self.micro_rows)
            state, step_metrics = self.train_step(state, batch)
            pending = self._read(pending)  # the previous step, read while this one runs
            done, pending = step + 1, (step + 1, step_metrics)
            stopping = stop.requested(done)
            save = done % every == 0 or done == total or stopping
            evaluate = self.valid_data is not None and self.config.eval.every > 0 and (
                done % self.config.eval.every == 0 or done == self.config.train.steps)
            if save or evaluate:
                pending = self._read(pending)  # never save a state whose update was not finite
            if save:
                self.checkpoints.save(state, self._config_dict())
            if evaluate:
                self.evaluate(state)
            if save or evaluate:
                self._clock.restart()
            if stopping:
                logging.warning("stop requested: checkpoint saved at step %d; rerun to resume", done)
                break
        self._read(pending)
        return state

    def _read(self, pending: tuple[int, dict] | None) -> None:
        """Report a dispatched step (blocking until it is done); returns the new pending, None."""
        if pending is not None:
            self._report(*pending)
        return None

    def _report(self, step: int, step_metrics: dict) -> None:
        """Read one step's metrics: raise if not finite, log every `train.log_every` steps."""
        values = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        self._clock.tick(step)
        if not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"])):
            self.writer.write(step, values)
            raise TrainingDiverged(
                f"loss {values['loss']} and grad_norm {values['grad_norm']} at step {step}: "
                f"training stopped. The last good checkpoint is step "
                f"{self.checkpoints.latest_step()} in {self.checkpoints.directory}; "
                f"lower train.learning_rate or set train.grad_clip.")
        total = self.config.train.steps
        if step % self.config.train.log_every and step != total:
            return
        seconds = self._clock.window()
        if math.isfinite(seconds):
            tokens_per_s = self.config.train.batch_size * self.task.tokens_per_example() / seconds
            values.update(tokens_per_s=tokens_per_s, step_time_s=seconds, mfu=metrics_lib.mfu(
                self.task.flops_per_token(), tokens_per_s, self.mesh.size,
                metrics_lib.peak_flops_per_device()))
        self.writer.write(step, values)
        logging.info(metrics_lib.progress_line(step, total, values["loss"],
                                               values.get("tokens_per_s", math.nan),
                                               self._clock.average()))

    def evaluate(self, state: TrainState) -> dict[str, float]:
        """Mean metrics over `eval.batches` fixed batches of the validation split."""
        if self.valid_data is None:
            raise ConfigError("no validation pieces to evaluate on: raise data.valid_fraction "
                              "or add pieces")
        size, sums = self.config.eval.batch_size, None
        for index in range(self.config.eval.batches):
            positions = index * size + np.arange(size)[self.eval_rows]
            host = self.valid_data.batch(positions)
            batch_metrics = self.eval_step(state, mesh_lib.put_batch(host, self.eval_sharding, 0, size))
            sums = batch_metrics if sums is None else jax.tree.map(jnp.add, sums, batch_metrics)
        values = {f"valid/{k}": float(v) / self.config.eval.batches
                  for k, v in jax.device_get(sums).items()}
        step = int(jax.device_get(state.step))
        self.writer.write(step, values)
        logging.info("eval at step %d: %s", step,
                     ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())))
        return values

    def evaluate_latest(self) -> dict[str, float]:
        """Restore the latest checkpoint and evaluate it (appends to metrics.jsonl)."""
        if self.checkpoints.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {self.checkpoints.directory} to evaluate")
        return self.evaluate(self.initial_state())

    def _config_dict(self) -> dict:
        return json.loads(self.config.to_json_best_effort())

    def _check_saved_model_config(self, step: int) -> None:
        saved = self.checkpoints.saved_config(step).get("model")
        current = self._config_dict().get("model")
        if saved is not None and saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise ConfigError(f"the checkpoint at step {step} in {self.checkpoints.directory} was "
                             f"trained with other model.{{{', '.join(changed)}}}; use a new workdir")

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
