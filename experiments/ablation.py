"""The ablation table's runs: plan them from a config file, run one (train, held-out eval,
samples) resumably, and keep its point.json. The command line is `experiments.ablate`."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments import config_file
from experiments.ablation_table import current_samples, write_outputs
from training.lock import WorkdirLock

ABLATE_LOCK = ".ablate.lock"  # one ablate process per run, from training to point.json (training's
# own lock, WORKDIR/.lock, covers only the training step)


def runs_of(spec: str, max_seeds: int = 0, only: list[str] = ()) -> list[dict]:
    """Every (point, seed) of the config file's ablations, in table order."""
    path, variant = config_file.split_spec(spec)
    module = config_file.load_module(path)
    if not hasattr(module, "ablations"):
        raise config_file.ConfigFileError(f"{path} has no ablations(add, variant) function")
    points = []
    module.ablations(lambda name, file, overrides, seeds: points.append((name, file, overrides, seeds)),
                     variant or "small")
    runs = []  # seed-major: every point's first seed before any point's second, so a table that
    # fills in while it runs covers every point early
    for name, file, overrides, seeds in points:
        point_spec = f"{os.path.join(os.path.dirname(path), file)}:{variant or 'small'}"
        keys = config_file.flat_keys(config_file.load_config(point_spec))
        for key in overrides:
            if key not in keys:
                raise config_file.ConfigFileError(f"ablation point {name!r} sets unknown key {key!r}")
        for seed in range(min(seeds, max_seeds) if max_seeds else seeds):
            runs.append({"point": name, "seed": seed, "spec": point_spec, "overrides": overrides})
    return select(sorted(runs, key=lambda run: run["seed"]), only)  # stable: the table's order within a seed


def select(runs: list[dict], only: list[str]) -> list[dict]:
    """The runs of the points `only` names (all of them when it is empty); an unknown name is an error."""
    names = list(dict.fromkeys(run["point"] for run in runs))
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise config_file.ConfigFileError(f"--only names unknown points {unknown}; the points: {names}")
    return [run for run in runs if not only or run["point"] in only]


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)


def run_dir(root: str, run: dict) -> Path:
    return Path(root) / folder_name(run["point"]) / f"seed{run['seed']}"


def main_argv(run: dict, workdir: Path, extra: list[str], mode: str) -> list[str]:
    argv = [sys.executable, "-m", "experiments.main", f"--config={run['spec']}", f"--workdir={workdir}",
            f"--config.seed={run['seed']}", f"--mode={mode}"]
    argv += [f"--config.{key}={value}" for key, value in run["overrides"].items()]
    return argv + [f"--config.{item}" for item in extra]


def execute(run: dict, root: str, extra: list[str], samples: list[int], resample: bool = False) -> dict:
    """Train, evaluate and sample one (point, seed); its point.json (read back if it exists, its
    sampling redone first when `resample` and its samples are stale: `current_samples`).

    The run's folder is locked for all of it: a second ablate process on the same root gets
    WorkdirInUseError for this run instead of evaluating or sampling it at the same time."""
    workdir = run_dir(root, run)
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(str(workdir), name=ABLATE_LOCK, holder="ablation run"):
        return _execute(run, workdir, root, extra, samples, resample)


def _execute(run: dict, workdir: Path, root: str, extra: list[str], samples: list[int], resample: bool) -> dict:
    done = workdir / "point.json"
    sampling = ("sampling", [sys.executable, "-m", "experiments.ablation_worker", str(workdir), root,
                             ",".join(map(str, samples))])
    if done.is_file():
        result = json.loads(done.read_text())
        if not (resample and not current_samples(result)):
            return result
        _run_steps(run, workdir, [sampling])  # trained and evaluated: only its samples again
        return _write_point(done, {**result, "samples": json.loads((workdir / "eval" / "samples.json").read_text())})
    started = time.perf_counter()
    _run_steps(run, workdir, [*((f"--mode={mode}", main_argv(run, workdir, extra, mode)) for mode in ("train", "eval")),
                              sampling])
    return _write_point(done, {**run, "heldout": json.loads((workdir / "eval" / "heldout.json").read_text()),
                               "samples": json.loads((workdir / "eval" / "samples.json").read_text()),
                               "seconds": round(time.perf_counter() - started, 1)})


def _run_steps(run: dict, workdir: Path, steps: list[tuple[str, list[str]]]) -> None:
    log_path = workdir / "ablate.log"
    with open(log_path, "a") as log:
        for what, argv in steps:
            print(f"{run['point']} seed {run['seed']}: {shlex.join(argv[1:])}", flush=True)
            status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
            if status:
                raise RuntimeError(f"{run['point']} seed {run['seed']}: {what} exited {status}; see {log_path}")


def _write_point(done: Path, result: dict) -> dict:
    temporary = done.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=1))
    temporary.rename(done)  # written last: a point.json is a finished point
    return result


def finished(runs: list[dict], root: str) -> list[dict]:
    """The point.json of every run that has one (a table of what is done, running nothing)."""
    return [json.loads(path.read_text()) for path in (run_dir(root, run) / "point.json" for run in runs)
            if path.is_file()]


def run_all(spec: str, runs: list[dict], root: str, extra: list[str], samples: list[int], parallel: int = 1,
            copy_to: str | None = None, resample: bool = False,
            todo: list[dict] | None = None) -> tuple[list[dict], list[str]]:
    """Every run of `todo` (default: all of `runs`), K at once; the table, of every run in `runs`
    that is finished, is rewritten after each. Returns (results, failures).
    `resample`: finished runs whose samples are stale are sampled again (not retrained)."""
    # the finished points first: the table shows every seed done from its first write, not only
    # those a worker has reached in the plan's order
    results, failures, lock = finished(runs, root), [], threading.Lock()
    order = {(run["point"], run["seed"]): index for index, run in enumerate(runs)}
    stale = {(r["point"], r["seed"]) for r in results if resample and not current_samples(r)}
    waiting = [run for run in (runs if todo is None else todo)
               if not (run_dir(root, run) / "point.json").is_file() or (run["point"], run["seed"]) in stale]
    if results:
        write_outputs(root, spec, runs, results, copy_to)

    def one(run: dict) -> None:
        try:
            result = execute(run, root, extra, samples, resample)
        except RuntimeError as error:  # a step that failed, or WorkdirInUseError
            failures.append(str(error))
            print(f"error: {error}", file=sys.stderr, flush=True)
            return
        with lock:  # the table fills in as points finish; results stay in the plan's order
            results[:] = [done for done in results if (done["point"], done["seed"]) != (run["point"], run["seed"])]
            results.append(result)  # a resampled run replaces its stale row
            results.sort(key=lambda done: order.get((done["point"], done["seed"]), len(order)))
            write_outputs(root, spec, runs, results, copy_to)

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        list(pool.map(one, waiting))
    write_outputs(root, spec, runs, results, copy_to)
    return results, failures
