"""Print (or run, one after another) the command line of every point of a config's sweep.

    python -m experiments.sweep experiments/configs/lm.py[:variant] --workdir_root=runs/sweep [--run]

The config file's `sweep(add)` calls `add(**{"train.learning_rate": 1e-3, ...})` once per point.
With --run, SIGTERM/SIGINT are passed on to the running point; a point that exits with status 75
(preempted after saving) stops the sweep with status 75: rerun it to resume that point and the rest
(finished points only say they are done).
"""
from __future__ import annotations

import inspect
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence

from absl import app, flags

from experiments import config_file

_ROOT = flags.DEFINE_string("workdir_root", None, "Each point trains in WORKDIR_ROOT/<its overrides>.")
_RUN = flags.DEFINE_bool("run", False, "Run the points one after another instead of printing them.")
flags.mark_flag_as_required("workdir_root")

# training.preemption.EXIT_PREEMPTED, written out so listing a sweep does not import jax.
RESUMABLE = 75


def points(spec: str) -> list[dict]:
    """The override dicts the config file's sweep(add) adds, each checked against the config."""
    path, variant = config_file.split_spec(spec)
    module = config_file.load_module(path)
    if not hasattr(module, "sweep"):
        raise config_file.ConfigFileError(f"{path} has no sweep(add) function")
    keys, added = config_file.flat_keys(config_file.load_config(spec)), []
    add = lambda **overrides: added.append(overrides)  # noqa: E731
    if len(inspect.signature(module.sweep).parameters) > 1:  # a sweep sized by the variant
        module.sweep(add, variant or "base")
    else:
        module.sweep(add)
    for overrides in added:
        for key in overrides:
            if key not in keys:
                raise config_file.ConfigFileError(
                    f"sweep in {path} sets unknown key {key!r}; nearest valid keys: "
                    f"{', '.join(config_file.nearest_keys(key, keys))}")
    return added


def point_name(overrides: dict) -> str:
    """A workdir name from the overrides: 'learning_rate=0.001,num_layers=2'."""
    text = ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in overrides.items())
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text) or "default"


def commands(spec: str, workdir_root: str) -> list[list[str]]:
    """One `python -m experiments.main ...` argument list per sweep point."""
    result = []
    for overrides in points(spec):
        argv = ["python", "-m", "experiments.main", f"--config={spec}",
                f"--workdir={workdir_root.rstrip('/')}/{point_name(overrides)}"]
        argv += [f"--config.{key}={value}" for key, value in overrides.items()]
        result.append(argv)
    return result


def run_all(runs: Sequence[Sequence[str]]) -> int:
    """Run each command in turn; the exit status: 0 all done, 75 one preempted, 1 some failed."""
    failed = []
    for run_argv in runs:
        print(shlex.join(run_argv), flush=True)
        status = _run_passing_signals([sys.executable, *run_argv[1:]])
        if status == RESUMABLE:
            print(f"preempted: {shlex.join(run_argv)}; rerun this sweep to resume it and the rest",
                  file=sys.stderr)
            return RESUMABLE
        if status:
            failed.append(run_argv)
    if failed:
        print(f"{len(failed)} of {len(runs)} runs failed", file=sys.stderr)
        return 1
    return 0


def _run_passing_signals(argv: list[str]) -> int:
    """Run `argv`; SIGTERM/SIGINT sent to the sweep go to it, so it saves before stopping.

    In its own session, so a terminal's Ctrl-C reaches it once (forwarded), not twice.
    """
    process = subprocess.Popen(argv, start_new_session=True)
    forward = lambda signum, frame: process.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("usage: python -m experiments.sweep CONFIG.py[:variant] --workdir_root=DIR")
    try:
        runs = commands(argv[1], _ROOT.value)
    except config_file.ConfigFileError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if not _RUN.value:
        for run_argv in runs:
            print(shlex.join(run_argv), flush=True)
        return
    sys.exit(run_all(runs))


if __name__ == "__main__":
    app.run(main)
