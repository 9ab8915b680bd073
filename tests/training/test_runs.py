"""Training runs in fresh processes: sharding, resume, SIGTERM, multi-host, NaN.

Each run is `python -m tests.training.tiny` in a subprocess sharing one persistent compilation
cache, so a configuration compiles once per session and every resume is a genuinely new process.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.training import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 8


def _command(workdir, steps=STEPS, *args):
    return [sys.executable, "-m", "tests.training.tiny", f"--workdir={workdir}", f"--steps={steps}",
            *map(str, args)]


def _run(env, workdir, *args, steps=STEPS, check=True):
    result = subprocess.run(_command(workdir, steps, *args), env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    if check and result.returncode:
        raise AssertionError(f"run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def straight(env, tmp_path_factory):
    """8 steps on 8 devices, evaluated at step 4 and 8: the reference trajectory."""
    workdir = tmp_path_factory.mktemp("straight")
    _run(env, workdir, "--set=eval.every=4")
    return workdir


def test_metrics_lines_checkpoints_and_evaluation(straight):
    lines = _metrics(straight)
    train = [line for line in lines if "loss" in line]
    assert [line["step"] for line in train] == list(range(1, STEPS + 1))
    for line in train[1:]:
        assert {"step", "loss", "learning_rate", "grad_norm", "tokens_per_s", "step_time_s"} <= set(line)
        assert "mfu" not in line  # the CPU's peak is unknown
    assert [line["step"] for line in lines if "valid/loss" in line] == [4, 8]
    assert train[1]["learning_rate"] > 0 and train[-1]["learning_rate"] < max(
        line["learning_rate"] for line in train)  # warmup then decay
    assert sorted(os.listdir(os.path.join(straight, "checkpoints"))) == ["6", "8"]  # keep 2


def test_sharded_trajectory_equals_single_device(env, straight, tmp_path):
    _run(env, tmp_path, "--devices=1")  # no evaluation: it must not perturb the trajectory anyway
    expected, got = tiny.losses(straight), tiny.losses(tmp_path)
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[s] for s in got], [expected[s] for s in got], rtol=2e-5)


def test_resume_in_a_new_process_is_bitwise(env, straight, tmp_path):
    _run(env, tmp_path, "--until=3")
    assert tiny.losses(tmp_path).keys() == {1, 2, 3}
    result = _run(env, tmp_path)
    assert "restoring the checkpoint at step 3" in result.stderr
    assert tiny.losses(tmp_path) == tiny.losses(straight)  # exact floats, every step
    steps = [line["step"] for line in _metrics(tmp_path) if "loss" in line]
    assert steps == sorted(set(steps))  # no step logged twice


def test_sigterm_saves_then_resume_is_bitwise(env, straight, tmp_path):
    stop_after = random.Random().randint(2, 5)
    process = subprocess.Popen(_command(tmp_path, STEPS, "--step_delay=0.3"),
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 200
    while len(tiny.losses(tmp_path) if os.path.exists(tmp_path / "metrics.jsonl") else {}) < stop_after:
        assert process.poll() is None and time.time() < deadline, "the run ended before SIGTERM"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr[-2000:]  # preempted: a scheduler reruns it
    stopped = max(tiny.losses(tmp_path))
    assert stop_after <= stopped < STEPS
    assert str(stopped) in os.listdir(tmp_path / "checkpoints")
    assert "stop requested: checkpoint saved at step" in stderr
    _run(env, tmp_path)
    assert tiny.losses(tmp_path) == tiny.losses(straight)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_fsdp_agree_with_one(env, straight, tmp_path):
    """2 processes x 4 devices (gloo collectives), parameters sharded over an fsdp axis of 2,
    against 1 process x 8 devices (data parallel only) on the same global batches."""
    port = _free_port()
    processes = [subprocess.Popen(
        _command(tmp_path, STEPS, "--until=3", "--devices=4", f"--process_id={i}",
                 "--num_processes=2", f"--port={port}", "--set=mesh.fsdp=2",
                 "--set=mesh.fsdp_min_size=64"), env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-3000:]
    expected, got = tiny.losses(straight), tiny.losses(tmp_path)
    assert got.keys() == {1, 2, 3}
    np.testing.assert_allclose([got[s] for s in got], [expected[s] for s in got], rtol=2e-5)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(env, tmp_path):
    from baseline import LMTask
    from training.data import StepSampler, split_pieces

    config = tiny.tiny_config()
    train_pieces, _ = split_pieces(tiny.random_pieces(), config.data.valid_fraction)
    sampler = StepSampler(LMTask(config.model, tiny.VOCAB, 16).sampler(train_pieces), config.seed)
    poison = sampler.example_index(5 * config.train.batch_size + 3)  # a row of step index 5
    result = _run(env, tmp_path, f"--poison_index={poison}", check=False)
    assert result.returncode == 1
    assert "loss nan" in result.stderr and "at step 6" in result.stderr
    assert "last good checkpoint is step 4" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    assert max(tiny.losses(tmp_path)) == 6 and np.isnan(float(tiny.losses(tmp_path)[6]))
