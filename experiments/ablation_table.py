"""The ablation table: results.json, results.md and results.png of `experiments.ablate`."""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.results import commit, machine
from experiments.sample_eval import DECODE

MARK = "*"  # a point whose mean +- std range does not overlap the first point's


def current_samples(result: dict) -> bool:
    """Whether a run's samples were decoded as `experiments.sample_eval` decodes them now (after
    their prompt); older ones undercount notes, and `experiments.ablate --resample` redoes them."""
    return result["samples"]["protocol"].get("decode") == DECODE


def metrics_of(result: dict) -> dict[str, float | None]:
    """The table's columns for one finished run (its sample columns empty when they are stale)."""
    heldout = result["heldout"]
    samples = result["samples"] if current_samples(result) else {}
    row = {"held-out bits/token": heldout["bits_per_token"]}
    for name, bucket in heldout["by_position"].items():
        row[f"bits/token at {name}"] = bucket["bits_per_token"]
    row["notes per sample"] = samples.get("notes_per_sample")
    row["OA, mgeval (samples)"] = samples.get("oa_mgeval")
    row["repeated 4-bar spans (samples)"] = samples.get("repetition", {}).get("mean")
    row["bar self-similarity (samples)"] = samples.get("repetition", {}).get("self_similarity")
    row["parameters"] = heldout["parameters"]
    return row


def summarize(runs: list[dict], results: list[dict]) -> dict:
    """{point: {"seeds": [...], "planned": n, metric: [values]}} in the table's order."""
    table: dict[str, dict] = {}
    for run in runs:
        table.setdefault(run["point"], {"seeds": [], "planned": 0, "metrics": {}})["planned"] += 1
    for result in sorted(results, key=lambda r: (r["point"], r["seed"])):
        entry = table[result["point"]]
        entry["seeds"].append(result["seed"])
        for name, value in metrics_of(result).items():
            entry["metrics"].setdefault(name, []).append(value)
    return table


def _stats(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _separated(a: list, b: list) -> bool:
    """Whether two points' mean +- std ranges do not overlap (each needs two seeds or more)."""
    if len([v for v in a if v is not None]) < 2 or len([v for v in b if v is not None]) < 2:
        return False
    (ma, sa), (mb, sb) = _stats(a), _stats(b)
    return ma + sa < mb - sb or mb + sb < ma - sa


def reference_values(reference_repetition: dict) -> dict[str, float | None]:
    """The held-out pieces' own values of the sample columns that have one."""
    return {"repeated 4-bar spans (samples)": reference_repetition.get("mean"),
            "bar self-similarity (samples)": reference_repetition.get("self_similarity")}


def markdown(spec: str, table: dict, reference_repetition: float | None) -> str:
    columns = []
    for entry in table.values():
        columns += [name for name in entry["metrics"] if name not in columns]
    first = next(iter(table.values()))["metrics"] if table else {}
    lines = ["| point | seeds done | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, entry in table.items():
        cells = []
        for column in columns:
            values = entry["metrics"].get(column, [])
            stats = _stats(values)
            if stats is None:
                cells.append("-")
                continue
            mean, std = stats
            digits, present = 1 if column == "notes per sample" else 4, sum(v is not None for v in values)
            text = f"{mean:,.0f}" if column == "parameters" else (
                f"{mean:.{digits}f} ± {std:.{digits}f}" if present > 1 else f"{mean:.{digits}f}")
            if present < len(values):  # e.g. no Overlap Area: a seed's samples held under two notes-bearing files
                text += f" ({present} of {len(values)} seeds)"
            measured = column != "parameters"  # a count, not a measurement with a spread
            mark = MARK if measured and entry["metrics"] is not first and _separated(values, first.get(column, [])) else ""
            cells.append(text + mark)
        lines.append(f"| {name} | {len(entry['seeds'])} of {entry['planned']} | " + " | ".join(cells) + " |")
    if reference_repetition:
        reference = reference_values(reference_repetition)
        lines.append("| held-out pieces themselves (reference) | | " + " | ".join(
            f"{reference[column]:.4f}" if reference.get(column) is not None else "" for column in columns) + " |")
    return "\n".join(lines)


def write_outputs(root: str, spec: str, runs: list[dict], results: list[dict], copy_to: str | None = None) -> None:
    """results.json, results.md and results.png under `root` from the runs finished so far (and
    results.md also at `copy_to`)."""
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    table = summarize(runs, results)
    reference = next((r["samples"]["reference_repetition"] for r in results), None)
    (root_path / "results.json").write_text(json.dumps(
        {"spec": spec, "table": table, "runs": results, "reference_repetition": reference}, indent=1))
    stale = sum(not current_samples(result) for result in results)
    header = [f"# Ablations of `{spec}`", "",
              "Written by the command below, after every finished run; do not edit by hand.", "",
              f"- command: `python -m experiments.ablate {shlex.join(sys.argv[1:])}`",
              f"- commit: {commit()}", f"- machine: {machine()}",
              f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
              "Cells are the mean ± standard deviation over the seeds done. Held-out bits per token: every "
              "target of the held-out pieces once, at stride N, by position in the piece "
              "(`training.heldout`). Samples (`experiments.sample_eval`): Overlap Area of the generated "
              f"music against the held-out pieces (mgeval protocol), the share of repeated 4-bar spans and each bar's best "
              f"Jaccard echo of the 16 bars before it (`evaluation.repetition`). {MARK}: "
              "the point's mean ± std range does not overlap the first row's (two seeds or more each); "
              "anything else is within seed-to-seed spread. (k of n seeds): the other seeds have no value, "
              "because Overlap Area needs two generated files with notes"
              + (", or because their samples were scored before continuations were decoded after their prompt "
                 "(`experiments.sample_eval`; decoded alone, they lost notes), whose sample columns are left out: "
                 f"{stale} of {len(results)} runs here; `--resample` redoes them." if stale else
                 "; every run's samples are scored by the current protocol."), "", ""]
    body = markdown(spec, table, reference) + "\n"
    figure = "\n![Each metric's panel: every point's mean over its seeds, the bar one standard deviation]({})\n"
    (root_path / "results.md").write_text("\n".join(header) + body + figure.format("results.png"))
    plot(table, root_path / "results.png", reference)
    if copy_to:  # a results page of the docs, with its plot beside it
        page, image = Path(copy_to), Path(copy_to).with_suffix(".png")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("\n".join(header) + body + figure.format(image.name))
        if (root_path / "results.png").is_file():  # no plot without a measured column
            shutil.copyfile(root_path / "results.png", image)


def plot(table: dict, path: Path, reference_repetition: dict | None = None, per_row: int = 3) -> None:
    """One panel per metric, `per_row` panels a row: each point's seeds' mean with a std error bar,
    and the held-out pieces' own value (dashed) where the metric has one."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = [c for c in dict.fromkeys(c for e in table.values() for c in e["metrics"]) if c != "parameters"]
    if not columns:
        return
    names = list(table)
    reference = reference_values(reference_repetition) if reference_repetition else {}
    rows = -(-len(columns) // per_row)
    figure, axes = plt.subplots(rows, per_row, figsize=(4.2 * per_row, rows * (0.3 * len(names) + 1.2)),
                                squeeze=False, sharey=True)
    for axis, column in zip(axes.flat, columns):
        for y, name in enumerate(names):
            stats = _stats(table[name]["metrics"].get(column, []))
            if stats is not None:
                axis.errorbar(stats[0], y, xerr=stats[1], fmt="o", capsize=3, color=f"C{y % 10}")  # a colour per point
        if reference.get(column) is not None:
            axis.axvline(reference[column], linestyle="--", color="gray", label="held-out pieces")
            axis.legend(fontsize=7, loc="best")
        axis.set_title(column, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in axes.flat[len(columns):]:
        axis.set_visible(False)
    axes[0][0].set_yticks(range(len(names)), names)
    axes[0][0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
