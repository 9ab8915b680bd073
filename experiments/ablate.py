"""Run a config's ablation table and write it: every point with its seeds, scored the same way.

    python -m experiments.ablate experiments/configs/perceivers.py:small --workdir_root=runs/ablate-small
        [--parallel=1] [--only=NAME,NAME] [--max_seeds=0] [--set=KEY=VALUE ...] [--list] [--resample]
        [--samples=num_prompts,per_prompt,unprompted,prompt_tokens,num_tokens] [--results=PATH]

The config file's `ablations(add, variant)` names the points: `add(name, config_file,
overrides, seeds)`. Each (point, seed) trains in WORKDIR_ROOT/<name>/seed<k> with
`--config.seed=k` (a rerun resumes it), is evaluated by the held-out protocol (`--mode=eval`:
every held-out target once; `training.heldout`) and by its samples (`experiments.sample_eval`:
Overlap Area, mgeval protocol, and the share of repeated 4-bar spans), and writes point.json
there. A point with point.json is read, not rerun, so the command resumes; `--parallel=K` runs
K points at once, and `--only` only the points it names (the table still shows every finished
run). Each run's folder is locked from training to point.json (WORKDIR/.ablate.lock), so a second
ablate process on the same root reports a run in use instead of running it again. After every
point, WORKDIR_ROOT gets results.json, results.md (mean +- std over seeds; a difference from the first point marked where the two ranges mean +- std do not
overlap) and results.png (one panel per metric; the held-out pieces' own value dashed). `--set`
overrides every point (e.g. a tiny run's steps); `--list` prints the runs and exits;
`--table_only` rewrites the table from the runs already finished, running nothing;
`--resample` samples again (no retraining) every finished run whose samples were scored before
continuations were decoded after their prompt; `--results PATH` writes the table there too (a
results page of the docs), with its plot beside it (PATH with .png).
"""
from __future__ import annotations

import shlex
import sys

from absl import app, flags

from experiments import config_file
from experiments.ablation import finished, main_argv, run_all, run_dir, runs_of, select
from experiments.ablation_table import write_outputs

_ROOT = flags.DEFINE_string("workdir_root", None, "Each (point, seed) runs in WORKDIR_ROOT/<point>/seed<k>.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Points run at once, each in its own processes.")
_RESAMPLE = flags.DEFINE_bool("resample", False, "Sample again every finished run whose samples are stale "
                              "(scored before continuations were decoded after their prompt); no retraining.")
_ONLY = flags.DEFINE_list("only", [], "Run only these points (names as listed); the table still shows every "
                                      "finished run of every point.")
_MAX_SEEDS = flags.DEFINE_integer("max_seeds", 0, "At most this many seeds per point; 0 = as the config says.")
_SET = flags.DEFINE_multi_string("set", [], "KEY=VALUE overriding every point, e.g. train.steps=4.")
_LIST = flags.DEFINE_bool("list", False, "Print the runs and exit.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Write the table of the runs already finished; run nothing.")
_RESULTS = flags.DEFINE_string("results", None, "Also write the table to this path (e.g. docs/results/NAME.md).")
_SAMPLES = flags.DEFINE_list("samples", [], "num_prompts,per_prompt,unprompted,prompt_tokens,num_tokens; "
                                            "default 4,3,4,256,2048 (16 samples of 2,048 tokens).")
flags.mark_flag_as_required("workdir_root")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("usage: python -m experiments.ablate CONFIG.py:variant --workdir_root=DIR")
    try:
        plan = runs_of(argv[1], _MAX_SEEDS.value)  # the table's rows, whatever --only runs
        runs = select(plan, _ONLY.value)
        samples = [int(v) for v in _SAMPLES.value] or [4, 3, 4, 256, 2048]
        if len(samples) != 5:
            raise ValueError("--samples takes five integers")
    except (config_file.ConfigFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if _LIST.value:
        for run in runs:
            print(shlex.join(main_argv(run, run_dir(_ROOT.value, run), _SET.value, "train")[1:]))
        return
    root = _ROOT.value
    if _TABLE_ONLY.value:
        results = finished(plan, root)
        write_outputs(root, argv[1], plan, results, _RESULTS.value)
        print(f"{len(results)} of {len(plan)} runs done -> {root}/results.md")
        return
    results, failures = run_all(argv[1], plan, root, _SET.value, samples, _PARALLEL.value, _RESULTS.value,
                                _RESAMPLE.value, todo=runs)
    print(f"{len(results)} of {len(plan)} runs done -> {root}/results.md")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
