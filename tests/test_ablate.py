"""`experiments.ablate` at tiny sizes: the runs it plans, the table it writes, and that it resumes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import ablation
from experiments.ablation import runs_of

REPO = Path(__file__).resolve().parents[1]
SPEC = "experiments/configs/perceivers.py:tiny"


def test_the_planned_runs_are_the_issues_table():
    runs = runs_of(SPEC)
    seeds = {}
    for run in runs:
        seeds[run["point"]] = seeds.get(run["point"], 0) + 1
    assert [seeds[name] for name in ("PerceiverS", "Perceiver AR", "LM")] == [3, 3, 3]
    assert len(seeds) == 10 and all(count == 2 for name, count in seeds.items()
                                    if name not in ("PerceiverS", "Perceiver AR", "LM"))
    lm = next(run for run in runs if run["point"] == "LM")
    assert lm["spec"].endswith("lm.py:tiny") and lm["overrides"] == {}
    assert {"model.scale_window": 0} in [run["overrides"] for run in runs]
    assert len(runs_of(SPEC, max_seeds=1, only=["LM"])) == 1


def test_a_resumed_ablation_tables_every_finished_seed_before_running_the_rest(tmp_path, monkeypatch):
    runs = runs_of(SPEC, only=["PerceiverS", "LM"])  # seeds 0, 1, 2 of each, planned seed by seed
    for run in runs:  # seed 2 of PerceiverS is done; seed 0 of both is not
        if run["seed"] > 0 and not (run["point"] == "LM" and run["seed"] == 2):
            path = ablation.run_dir(str(tmp_path), run) / "point.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({**run, "marker": "done"}))
    tables, executed = [], []
    monkeypatch.setattr(ablation, "write_outputs", lambda root, spec, plan, results, copy_to: tables.append(
        sorted((done["point"], done["seed"]) for done in results)))
    monkeypatch.setattr(ablation, "execute", lambda run, root, extra, samples, resample: executed.append(
        (run["point"], run["seed"])) or {**run})
    results, failures = ablation.run_all(SPEC, runs, str(tmp_path), [], [1, 1, 1, 8, 8])
    assert not failures and len(results) == 6
    assert tables[0] == [("LM", 1), ("PerceiverS", 1), ("PerceiverS", 2)]  # before any run starts
    assert sorted(executed) == [("LM", 0), ("LM", 2), ("PerceiverS", 0)]  # the finished are not rerun
    assert tables[-1] == sorted((run["point"], run["seed"]) for run in runs)


@pytest.mark.slow
def test_a_tiny_ablation_writes_its_table_and_resumes(tmp_path):
    argv = [sys.executable, "-m", "experiments.ablate", SPEC, f"--workdir_root={tmp_path}/ablate",
            "--only=PerceiverS,LM", "--max_seeds=1", "--samples=2,1,1,32,48", "--parallel=2",
            "--set=train.steps=4", "--set=train.warmup_steps=1", "--set=checkpoint.every=4", "--set=eval.every=0",
            "--set=data.builtin_pieces=8", "--set=data.valid_fraction=0.5", f"--set=data.cache_dir={tmp_path}/cache"]
    first = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    root = tmp_path / "ablate"
    results = json.loads((root / "results.json").read_text())
    assert [r["point"] for r in results["runs"]] == ["PerceiverS", "LM"]
    for run in results["runs"]:  # both scored by the same held-out protocol, on the same targets
        assert run["heldout"]["stride"] == 64 and run["samples"]["samples"] == 3
    assert results["runs"][0]["heldout"]["targets"] == results["runs"][1]["heldout"]["targets"]
    table = (root / "results.md").read_text().splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("| point"))
    # point, seeds, 1 + 3 bit columns, notes per sample, OA, 2 repetition columns, parameters
    assert table[head].count("|") == 12 and "notes per sample" in table[head]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table[head + 2:] if line.startswith("|")}
    points = [run["point"] for run in runs_of(SPEC, max_seeds=1)]
    assert list(rows)[:-1] == points  # every planned point is a row, run or not (--only runs two of them)
    assert list(rows)[-1] == "held-out pieces themselves (reference)"
    assert rows["PerceiverS"] == rows["LM"] == "1 of 1" and rows["Perceiver AR"] == "0 of 1"
    assert (root / "results.png").stat().st_size > 0
    done = (root / "PerceiverS" / "seed0" / "point.json").stat().st_mtime_ns
    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "--mode=train" not in again.stdout  # read, not rerun
    assert (root / "PerceiverS" / "seed0" / "point.json").stat().st_mtime_ns == done
    (root / "results.md").unlink()
    page = tmp_path / "docs" / "ablation.md"
    table = subprocess.run([*argv, "--table_only", f"--results={page}"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert table.returncode == 0 and f"2 of {len(points)} runs done" in table.stdout and (root / "results.md").is_file()
    assert "](results.png)" in (root / "results.md").read_text()
    assert "](ablation.png)" in page.read_text() and page.with_suffix(".png").stat().st_size > 0  # the plot beside it


def test_a_cell_says_how_many_seeds_it_averages_when_some_have_no_value():
    from experiments.ablation_table import markdown

    table = {"PerceiverS": {"seeds": [0, 1], "planned": 2, "metrics": {"OA": [0.5, 0.7], "bits": [3.0, 3.2]}},
             "fixed": {"seeds": [0, 1], "planned": 2, "metrics": {"OA": [0.4, None], "bits": [3.5, 3.6]}}}
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[3:-1]]
            for line in markdown("spec", table, None).splitlines()[2:]}
    assert rows["PerceiverS"] == ["0.6000 ± 0.1414", "3.1000 ± 0.1414"]
    assert rows["fixed"] == ["0.4000 (1 of 2 seeds)", "3.5500 ± 0.0707*"]  # one OA is no spread, and no mark


def test_resample_redoes_only_stale_samples_and_keeps_the_training(tmp_path, monkeypatch):
    from experiments.sample_eval import DECODE

    runs = runs_of(SPEC, only=["PerceiverS"], max_seeds=2)
    for run, decode in zip(runs, (None, DECODE)):  # seed 0 scored the old way, seed 1 the current way
        path = ablation.run_dir(str(tmp_path), run) / "point.json"
        path.parent.mkdir(parents=True)
        protocol = {"seed": 0} if decode is None else {"seed": 0, "decode": decode}
        path.write_text(json.dumps({**run, "heldout": {"bits": 3.5}, "samples": {"protocol": protocol, "oa": 0.1}}))
    sampled = []

    def fake_steps(run, workdir, steps):
        assert [what for what, _ in steps] == ["sampling"]  # never trained or evaluated again
        sampled.append(run["seed"])
        (workdir / "eval").mkdir()
        (workdir / "eval" / "samples.json").write_text(json.dumps({"protocol": {"decode": DECODE}, "oa": 0.4}))

    monkeypatch.setattr(ablation, "_run_steps", fake_steps)
    monkeypatch.setattr(ablation, "write_outputs", lambda *args: None)
    results, failures = ablation.run_all(SPEC, runs, str(tmp_path), [], [1, 1, 1, 8, 8])
    assert not failures and sampled == []  # without --resample a finished run is only read
    results, failures = ablation.run_all(SPEC, runs, str(tmp_path), [], [1, 1, 1, 8, 8], resample=True)
    assert not failures and sampled == [0] and len(results) == 2
    first = json.loads((ablation.run_dir(str(tmp_path), runs[0]) / "point.json").read_text())
    assert first["samples"]["oa"] == 0.4 and first["heldout"] == {"bits": 3.5}
    assert [r["samples"]["oa"] for r in results] == [0.4, 0.1]


def test_only_runs_its_points_and_a_run_locked_by_another_ablate_is_reported_not_run(tmp_path, monkeypatch):
    from training.lock import WorkdirLock

    plan = runs_of(SPEC, only=["PerceiverS", "LM"], max_seeds=1)
    first, lm = plan
    done = ablation.run_dir(str(tmp_path), first) / "point.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({**first, "heldout": {"bits": 3.5}, "samples": {"oa": 0.1}}))
    ran, tables = [], []
    monkeypatch.setattr(ablation, "_run_steps", lambda run, workdir, steps: ran.append(run["point"]))
    monkeypatch.setattr(ablation, "write_outputs", lambda root, spec, runs, results, copy_to: tables.append(
        [r["point"] for r in results]))
    held = ablation.run_dir(str(tmp_path), lm)
    held.mkdir(parents=True)
    with WorkdirLock(str(held), name=ablation.ABLATE_LOCK, holder="ablation run"):  # another process's run
        results, failures = ablation.run_all(SPEC, plan, str(tmp_path), [], [1, 1, 1, 8, 8], todo=[lm])
    assert ran == []  # neither trained nor sampled while another process holds it
    assert len(failures) == 1 and "is in use by another ablation run (pid" in failures[0]
    assert [r["point"] for r in results] == ["PerceiverS"] and tables[-1] == ["PerceiverS"]  # the plan's table


def test_the_table_leaves_stale_sample_columns_out_and_says_how_many(tmp_path):
    from experiments.ablation_table import write_outputs
    from experiments.sample_eval import DECODE

    runs = runs_of(SPEC, only=["PerceiverS"], max_seeds=2)

    def result(run, decode, oa):
        protocol = {"seed": 0} if decode is None else {"seed": 0, "decode": decode}
        return {**run, "heldout": {"bits_per_token": 3.5, "by_position": {}, "parameters": 10},
                "samples": {"protocol": protocol, "oa_mgeval": oa, "notes_per_sample": 400.0,
                            "repetition": {"mean": 0.0, "self_similarity": 0.07},
                            "reference_repetition": {"mean": 0.0, "self_similarity": 0.2}}}

    def row_and_header(results):
        write_outputs(str(tmp_path), SPEC, runs, results)
        text = (tmp_path / "results.md").read_text()
        row = next(line for line in text.splitlines() if line.startswith("| PerceiverS"))
        return [cell.strip() for cell in row.split("|")[1:-1]], text

    cells, text = row_and_header([result(runs[0], None, 0.9), result(runs[1], DECODE, 0.5)])
    assert "1 of 2 runs here; `--resample` redoes them" in text
    assert "0.5000 (1 of 2 seeds)" in cells and "0.7000" not in text  # the stale 0.9 is not averaged in
    cells, text = row_and_header([result(runs[0], DECODE, 0.4), result(runs[1], DECODE, 0.6)])
    assert "runs here" not in text and "every run's samples are scored by the current protocol" in text
    assert "0.5000 ± 0.1414" in cells
