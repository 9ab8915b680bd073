"""Failure behaviour: non-finite steps, damaged checkpoints, changed configs, failed saves,
lost evaluations, metrics rewrites, preemption exit statuses.

In process on one device where no signal is needed; the trained workdir is shared and copied.
"""
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.training import tiny
from training import ConfigError, TrainingDiverged
from training import mesh as mesh_lib
from training.checkpoint import CheckpointError, Checkpoints
from training.metrics import MetricsWriter, read_metrics
from training.state import TrainState

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINED = {"train.steps": 4, "eval.every": 2, "checkpoint.every": 2, "checkpoint.keep": 3}


def _mesh():
    return mesh_lib.make_mesh(1, devices=jax.devices()[:1])


def _trainer(workdir, **overrides):
    return tiny.make_trainer(tiny.tiny_config(**{**TRAINED, **overrides}), str(workdir), mesh=_mesh())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 steps, checkpoints and evaluations at steps 2 and 4."""
    workdir = tmp_path_factory.mktemp("trained")
    trainer = _trainer(workdir)
    try:
        trainer.train()
    finally:
        trainer.close()
    return workdir


@pytest.fixture
def copy(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def _restored_step(trainer, training):
    return int(jax.device_get(trainer.initial_state(training=training).step))


def test_a_poisoned_checkpoint_is_set_aside_and_the_last_good_one_is_finite(tmp_path):
    # lr 1e9: update 2 leaves finite parameters near 1e8 that overflow in the next forward pass.
    trainer = _trainer(tmp_path, **{"train.learning_rate": 1e9, "train.steps": 6,
                                    "checkpoint.every": 1, "checkpoint.keep": 10, "eval.every": 0})
    try:
        with pytest.raises(TrainingDiverged) as error:
            trainer.train()
        message = str(error.value)
        assert "lower train.learning_rate (now 1e+09)" in message and "not saved" in message
        steps = trainer.checkpoints.all_steps()
        assert steps and f"last good checkpoint is step {steps[-1]}" in message
        assert os.listdir(tmp_path / "damaged-checkpoints")  # the poisoned one, kept
        state = trainer.initial_state(training=True)
        assert int(state.step) == steps[-1]
        assert np.isfinite(trainer.evaluate(state)["valid/loss"])
    finally:
        trainer.close()


def test_update_is_finite_is_computed_in_the_step():
    from tests.training.test_step import LinearTask, _batch, _train_config
    from training.optim import make_optimizer
    from training.step import make_train_step

    task, (tx, schedule) = LinearTask(), make_optimizer(_train_config())
    params = task.init(jax.random.key(0), {"x": np.zeros((1, 3))})
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
    step_fn = jax.jit(make_train_step(task, tx, schedule, seed=0))
    _, metrics = step_fn(state, _batch(1))
    assert bool(metrics["update_is_finite"])
    bad = _batch(1)
    bad["x"][0, 0, 0] = np.inf
    _, metrics = step_fn(state, bad)
    assert not bool(metrics["update_is_finite"])


def _damage(workdir, step, how):
    files = [f for f in glob.glob(f"{workdir}/checkpoints/{step}/state/**/*", recursive=True)
             if os.path.isfile(f)]
    largest = max(files, key=os.path.getsize)
    data = bytearray(open(largest, "rb").read())
    if how == "flip":
        for index in range(64):
            data[len(data) // 2 + index] ^= 0xFF
        open(largest, "wb").write(data)
    elif how == "truncate":
        open(largest, "wb").write(data[:len(data) // 2])
    else:
        os.remove(largest)


@pytest.mark.parametrize("how", ["flip", "truncate", "remove"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_intact_one(copy, how):
    _damage(copy, 4, how)
    trainer = _trainer(copy)
    try:
        with pytest.raises(CheckpointError):
            trainer.checkpoints.restore(trainer.abstract, trainer.shardings, 4)
        assert _restored_step(trainer, training=False) == 2  # evaluation: falls back, moves nothing
        assert trainer.checkpoints.all_steps() == [2, 4]
        assert _restored_step(trainer, training=True) == 2  # training: sets step 4 aside to redo it
        assert trainer.checkpoints.all_steps() == [2]
        assert [name.split("-")[0] for name in os.listdir(copy / "damaged-checkpoints")] == ["4"]
    finally:
        trainer.close()


def test_no_intact_checkpoint_is_one_error_and_deletes_nothing(copy):
    _damage(copy, 4, "flip")
    _damage(copy, 2, "remove")
    trainer = _trainer(copy)
    try:
        # Flipped bytes fail either the checksums or the decompression, depending on where they fall.
        with pytest.raises(CheckpointError, match=r"checkpoints/4 (is damaged: .* checksums|cannot be "
                                                   r"restored).*checkpoints/2 cannot be restored"):
            trainer.initial_state(training=True)
        assert trainer.checkpoints.all_steps() == [2, 4]
        assert not os.path.exists(copy / "damaged-checkpoints")
    finally:
        trainer.close()


def _train_expecting(workdir, error=None, **overrides):
    trainer = _trainer(workdir, **overrides)
    try:
        if error is None:
            trainer.train()
            return None
        with pytest.raises(error) as raised:
            trainer.train()
        return str(raised.value)
    finally:
        trainer.close()


def test_resume_refuses_trajectory_changes_before_touching_config_json(copy):
    before = (copy / "config.json").read_text()
    message = _train_expecting(copy, ConfigError, **{"seed": 1, "train.learning_rate": 0.01})
    assert "seed: 0 -> 1" in message and "train.learning_rate: 0.003 -> 0.01" in message
    assert "--config.resume.allow_changes=seed,train.learning_rate" in message
    assert (copy / "config.json").read_text() == before
    other_data = tiny.random_pieces(seed=1)
    trainer = tiny.make_trainer(tiny.tiny_config(**TRAINED), str(copy), pieces=other_data, mesh=_mesh())
    with pytest.raises(ConfigError, match="data.content"):
        trainer.train()
    trainer.close()
    message = _train_expecting(copy, ConfigError, **{"seed": 1, "resume.allow_changes": "sede"})
    assert "resume.allow_changes names 'sede'" in message and "nearest: seed" in message
    assert not glob.glob(str(copy / "config-*.json"))
    # Logging, evaluation and checkpoint cadence may change freely: nothing trains (already at 4).
    _train_expecting(copy, **{"train.log_every": 3, "eval.batches": 2, "checkpoint.keep": 5})
    assert json.loads((copy / "config-4.json").read_text())["train"]["log_every"] == 1
    assert json.loads((copy / "config.json").read_text())["train"]["log_every"] == 3


def test_allowed_changes_are_logged_and_the_earlier_config_is_kept(copy):
    (copy / "checkpoints/6.orbax-checkpoint-tmp-1234").mkdir()  # left by a kill during a save
    _train_expecting(copy, **{"seed": 1, "resume.allow_changes": "seed"})
    assert not (copy / "checkpoints/6.orbax-checkpoint-tmp-1234").exists()
    assert json.loads((copy / "config-4.json").read_text())["seed"] == 0
    assert json.loads((copy / "config.json").read_text())["seed"] == 1
    events = [line for line in read_metrics(copy / "metrics.jsonl") if "resume_changes" in line]
    assert events == [{"step": 4, "resume_changes": {"seed": [0, 1]}}]


def test_an_evaluation_lost_with_its_process_is_done_on_resume(copy):
    lines = read_metrics(copy / "metrics.jsonl")
    kept = [line for line in lines if not (line["step"] == 4 and "valid/loss" in line)]
    (copy / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    _train_expecting(copy)
    valid = [line["step"] for line in read_metrics(copy / "metrics.jsonl") if "valid/loss" in line]
    assert valid == [2, 4]


def _toy_state(step):
    return TrainState(step=jnp.array(step, jnp.int32),
                      params={"w": jnp.arange(20_000, dtype=jnp.float32) + step}, opt_state=())


def test_a_failed_save_is_one_error_removes_itself_and_keeps_the_last_good_one(tmp_path):
    checkpoints = Checkpoints(str(tmp_path), keep=3)
    try:
        checkpoints.save(_toy_state(1), {})
        # A real I/O error through orbax and tensorstore: files may not grow past 20 kB.
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, limits[1]))
        try:
            with pytest.raises(CheckpointError) as error:
                checkpoints.save(_toy_state(2), {})
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, previous)
        message = str(error.value)
        assert "could not save the checkpoint of step 2" in message and "\n" not in message
        assert "File too large" in message and "last good checkpoint (step 1) is kept" in message
        assert os.listdir(tmp_path / "checkpoints") == ["1"] and checkpoints.all_steps() == [1]
        abstract = jax.eval_shape(lambda: _toy_state(0))
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        restored = checkpoints.restore(abstract, jax.tree.map(lambda _: device, abstract), 1)
        assert float(restored.params["w"][0]) == 1.0
    finally:
        checkpoints.close()


def test_metrics_rewrite_on_resume_is_atomic(tmp_path, monkeypatch):
    writer = MetricsWriter(str(tmp_path))
    for step in range(1, 6):
        writer.write(step, {"loss": float(step)})
    original = (tmp_path / "metrics.jsonl").read_text()
    calls = []

    def dumps_then_fail(value, *args, **kwargs):
        calls.append(value)
        if len(calls) == 2:
            raise OSError("killed mid-rewrite")
        return json.JSONEncoder().encode(value)

    monkeypatch.setattr(json, "dumps", dumps_then_fail)
    with pytest.raises(OSError):
        MetricsWriter(str(tmp_path), resume_step=3)
    monkeypatch.undo()
    assert (tmp_path / "metrics.jsonl").read_text() == original
    MetricsWriter(str(tmp_path), resume_step=3)
    assert [line["step"] for line in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]


def test_the_sweep_stops_on_a_preempted_point_with_its_status(tmp_path):
    from experiments import sweep
    from training.preemption import EXIT_PREEMPTED

    assert sweep.RESUMABLE == EXIT_PREEMPTED == 75
    marker = tmp_path / "third-ran"
    point = lambda code: ["python", "-c", code]  # noqa: E731
    runs = [point("pass"), point("import sys; sys.exit(75)"), point(f"open({str(marker)!r}, 'w')")]
    assert sweep.run_all(runs) == 75 and not marker.exists()
    assert sweep.run_all([point("import sys; sys.exit(3)"), point("pass")]) == 1
    assert sweep.run_all([point("pass")]) == 0


def test_the_sweep_passes_sigterm_to_the_running_point():
    child = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(75)); "
             "print('ready', flush=True); time.sleep(60)")
    parent = ("import sys; from experiments import sweep; "
              f"sys.exit(sweep.run_all([['python', '-c', {child!r}]]))")
    process = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while process.stdout.readline().strip() != "ready":  # the sweep echoes the command first
        assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 75 and "preempted:" in process.stderr.read()


def test_the_finished_line_names_the_checkpoint_and_the_next_commands():
    from experiments import config_file, launch

    config = config_file.load_config(os.path.join(ROOT, "experiments/configs/perceivers.py:tiny"))
    argv = ["--config=experiments/configs/perceivers.py:tiny", "--workdir=runs/p", "--mode=train",
            "--config.train.steps=9"]
    line = launch.finished_line(config, 9, "runs/p/checkpoints", argv)
    assert line.startswith("trained to step 9: checkpoint runs/p/checkpoints/9; next: ")
    assert "--config.train.steps=9 --mode=eval" in line and "--mode=generate" in line
    assert "--mode=train" not in line


def _tiny(workdir, *args):
    return [sys.executable, "-m", "tests.training.tiny", f"--workdir={workdir}", "--steps=2",
            "--devices=1", "--set=eval.every=2", "--set=checkpoint.every=2", "--set=eval.batches=40",
            *args]


def test_sigterm_interrupts_an_evaluation_exits_75_and_the_resumed_run_evaluates(env, tmp_path):
    process = subprocess.Popen(_tiny(tmp_path, "--eval_delay=0.5"), env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 200
    while not (tmp_path / "checkpoints/2").exists():  # saved before the evaluation starts
        assert process.poll() is None and time.time() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.05)
    time.sleep(1.0)
    sent = time.time()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr[-3000:]
    assert time.time() - sent < 10  # 40 batches of 0.5 s would take 20 s
    assert "compiling the train step ..." in stderr and "compiled the train step in" in stderr
    assert "evaluation of step 2 interrupted" in stderr and "Traceback" not in stderr
    assert not [line for line in read_metrics(tmp_path / "metrics.jsonl") if "valid/loss" in line]
    resumed = subprocess.run(_tiny(tmp_path, "--set=eval.batches=1"), env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "evaluating step 2: the previous run did not finish it" in resumed.stderr
    assert [line["step"] for line in read_metrics(tmp_path / "metrics.jsonl")
            if "valid/loss" in line] == [2]


def test_ctrl_c_while_loading_exits_quietly(env, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.main", "--config=experiments/configs/lm.py:tiny",
         f"--workdir={tmp_path}/run", f"--config.data.cache_dir={tmp_path}/cache"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # past the interpreter's start, inside the imports of jax and the models
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]


def test_reports_of_abandoned_checkpoint_io_are_dropped_and_others_are_not(monkeypatch, capsys):
    """Tensorstore callbacks that land on orbax's closed loop report through sys.excepthook or
    as unraisable; after the filters are in, those print nothing and other reports still print."""
    import sys
    import types

    from training import checkpoint

    monkeypatch.setattr(checkpoint, "_QUIET", False)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    checkpoint.drop_closed_loop_reports()
    sys.excepthook(RuntimeError, RuntimeError("Event loop is closed"), None)
    sys.unraisablehook(types.SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError("Event loop is closed"),
                                             exc_traceback=None, err_msg=None, object=None))
    assert capsys.readouterr().err == ""
    sys.excepthook(RuntimeError, RuntimeError("something else"), None)
    assert "something else" in capsys.readouterr().err
