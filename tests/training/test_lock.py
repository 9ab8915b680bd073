"""One training per workdir: WORKDIR/.lock refuses a second holder, and dies with its holder."""
import contextlib
import json
import shlex
import os
import signal
import socket
import subprocess
import sys

import pytest

from training.lock import LOCK_FILE, WorkdirInUseError, WorkdirLock, training_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LM = os.path.join(ROOT, "experiments/configs/lm.py")
ENV = dict(os.environ, PYTHONPATH=ROOT)
# Another process: takes the lock of argv[1], says so, then holds it until killed.
HOLD = ("import sys, time\nfrom training.lock import WorkdirLock\n"
        "lock = WorkdirLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(120)")
# Another process: tries the lock of argv[1] once; prints the refusal and exits 3.
TRY = ("import sys\nfrom training.lock import WorkdirInUseError, WorkdirLock\n"
       "try:\n    WorkdirLock(sys.argv[1]).acquire()\nexcept WorkdirInUseError as error:\n"
       "    print(error)\n    sys.exit(3)\nprint('locked')")


def _python(script: str, *args: str, **kwargs):
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60, **kwargs)


@contextlib.contextmanager
def _held_by_another_process(workdir):
    """A subprocess holding `workdir`'s lock (killed with -9 at the end if still alive)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def holder(tmp_path):
    with _held_by_another_process(tmp_path) as process:
        yield process


def test_a_second_process_is_refused_with_the_holders_pid_host_and_command(tmp_path):
    with WorkdirLock(str(tmp_path)) as lock:
        assert lock.held
        refused = _python(TRY, str(tmp_path))
        assert refused.returncode == 3, refused.stderr[-2000:]
        message = refused.stdout.strip()
        assert message.startswith(f"WORKDIR {tmp_path} is in use by another training (pid "
                                  f"{os.getpid()} on host {socket.gethostname()}, started ")
        assert f" UTC: {os.path.basename(sys.executable)} {shlex.join(sys.argv)});" in message
        assert message.endswith("wait for it to end or use another --workdir")
        # The same process opening the file again is refused too (flock is per open file).
        with pytest.raises(WorkdirInUseError, match=f"pid {os.getpid()} "):
            WorkdirLock(str(tmp_path)).acquire()
    assert _python(TRY, str(tmp_path)).stdout.strip() == "locked"  # released on leaving `with`


def test_the_lock_of_a_process_killed_with_sigkill_is_free_at_once(tmp_path, holder):
    with pytest.raises(WorkdirInUseError, match=f"pid {holder.pid} on host"):
        WorkdirLock(str(tmp_path)).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    with WorkdirLock(str(tmp_path)) as lock:  # no stale lock, no waiting
        assert lock.held
        info = json.load(open(tmp_path / LOCK_FILE))  # the dead holder's line was replaced
        assert info["pid"] == os.getpid() and shlex.split(info["command"])[1:] == sys.argv


def test_a_forked_child_does_not_keep_the_lock_of_its_killed_parent(tmp_path):
    # A worker forked after the lock (the token store's) outlives a parent killed with -9.
    script = HOLD.replace("print('locked'", "child = os.fork() or time.sleep(120)\n"
                                            "print('locked', child")
    parent = subprocess.Popen([sys.executable, "-c", "import os\n" + script, str(tmp_path)],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        word, child = parent.stdout.readline().split()
        assert word == "locked"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        with WorkdirLock(str(tmp_path)) as lock:
            assert lock.held
    finally:
        parent.kill()
        parent.wait()
        if child is not None:
            os.kill(int(child), signal.SIGKILL)


def test_release_then_acquire_again_in_the_same_process(tmp_path):
    lock = WorkdirLock(str(tmp_path)).acquire()
    lock.release()
    assert not lock.held and os.path.exists(tmp_path / LOCK_FILE)  # the file is never deleted
    lock.release()  # a no-op when not held
    with lock:
        assert lock.held
        assert _python(TRY, str(tmp_path)).returncode == 3
    assert not lock.held


def test_only_the_chief_of_a_multi_host_run_takes_the_lock(tmp_path, holder, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    lock = training_lock(str(tmp_path))  # process 1 leaves the lock to process 0
    assert not lock.held
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    with pytest.raises(WorkdirInUseError, match=f"pid {holder.pid} "):
        training_lock(str(tmp_path))


def test_training_refuses_a_locked_workdir_before_writing_and_eval_runs_beside(
        tmp_path, monkeypatch):
    from experiments import config_file, launch

    config = config_file.load_config(f"{LM}:tiny")
    config.train.steps, config.train.warmup_steps = 2, 1  # fails fast should the lock be missing
    config.data.builtin_pieces = 4
    config.data.cache_dir = str(tmp_path / "cache")
    workdir = tmp_path / "run"
    os.makedirs(workdir)
    with _held_by_another_process(workdir) as other:
        with pytest.raises(WorkdirInUseError, match=f"WORKDIR {workdir} is in use .*pid {other.pid} "):
            launch.run(config, str(workdir), "train")
        assert os.listdir(workdir) == [LOCK_FILE]  # no config.json, metrics or checkpoint
        assert not os.path.exists(tmp_path / "cache")  # nor a token store
        # Evaluation takes no lock: it reaches its body while the training holds the workdir.
        monkeypatch.setattr(launch, "_train_or_evaluate", lambda *args: "evaluated")
        assert launch.run(config, str(workdir), "eval") == "evaluated"


def test_the_command_line_prints_one_line_and_exits_1(tmp_path):
    workdir = tmp_path / "run"
    os.makedirs(workdir)
    with WorkdirLock(str(workdir)):
        result = subprocess.run(
            [sys.executable, "-m", "experiments.main", f"--config={LM}:tiny", f"--workdir={workdir}",
             f"--config.data.cache_dir={tmp_path}/cache"],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: WORKDIR {workdir} is in use by another training (pid {os.getpid()} " in result.stderr
    assert os.listdir(workdir) == [LOCK_FILE]
