"""What Overlap Area reads on real music: two halves of one corpus, and the built-in corpus against it.

    python benchmarks/overlap.py --reference ../shared/midi/asap/performances
        [--builtin_pieces 100] [--seed 0] [--results docs/results/evaluation_asap_halves.md]

Four reports of `evaluation.report.write_report` (no plots), under both protocols: a seeded
random half of the reference folder against the other half (the ceiling: two sets that cannot
be told apart) and `--builtin_pieces` pieces of the built-in corpus against the whole folder (a
floor of sorts: music of another kind). One row per feature with the OA of each; the papers'
nine features' mean; the velocity and microtiming histogram overlaps. Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.results import add_argument, recorded
from evaluation.report import write_report
from pertok.synthetic import write_corpus

PROTOCOLS = ("project", "mgeval")


def oa_columns(reports: dict[str, dict]) -> tuple[list[str], dict[str, dict[str, float | None]]]:
    """Feature abbreviations in first-seen order, and {column: {abbreviation: OA}}."""
    order, columns = [], {}
    for column, report in reports.items():
        values = {}
        for summary in report["features"].values():
            values[summary["abbreviation"]] = summary["oa"]
            if summary["abbreviation"] not in order:
                order.append(summary["abbreviation"])
        columns[column] = values
    return order, columns


def print_table(reports: dict[str, dict]) -> None:
    order, columns = oa_columns(reports)

    def cell(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    print("| feature | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in order:
        label = name.replace("|", "\\|")  # |MT| would end the cell
        print(f"| {label} | " + " | ".join(cell(columns[c].get(name)) for c in columns) + " |")
    print("| **mean OA of the papers' nine features** | " + " | ".join(
        cell(r.get("mean_oa_paper_features", r["mean_oa"] if r["protocol"] == "mgeval" else None))
        for r in reports.values()) + " |")
    print("| mean OA of all the protocol's features | " + " | ".join(cell(r["mean_oa"]) for r in reports.values()) + " |")
    for kind in ("velocity", "microtiming"):
        print(f"| {kind} histogram OA (all notes) | " + " | ".join(
            cell(r["expressive"][kind]["oa"]) for r in reports.values()) + " |")
    print("| pieces (generated / reference) | " + " | ".join(
        f"{r['generated']['num_pieces']} / {r['reference']['num_pieces']}" for r in reports.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="../shared/midi/asap/performances")
    parser.add_argument("--builtin_pieces", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="the half split's and the pair sampling's seed")
    parser.add_argument("--workers", type=int, default=None)
    add_argument(parser)
    args = parser.parse_args()
    with recorded(args.results, f"Overlap Area on real music: {Path(args.reference).name} halves, "
                                f"and the built-in corpus against it"):
        run(args)


def run(args: argparse.Namespace) -> None:
    reports = {}
    with tempfile.TemporaryDirectory() as scratch:
        builtin = Path(scratch) / "builtin"
        write_corpus(builtin, args.builtin_pieces, seed=0)
        for protocol in PROTOCOLS:
            reports[f"halves, {protocol}"] = write_report(
                None, args.reference, Path(scratch) / f"halves-{protocol}", half_split_seed=args.seed,
                seed=args.seed, draw_plots=False, protocol=protocol, workers=args.workers)
        for protocol in PROTOCOLS:
            reports[f"built-in {args.builtin_pieces} vs all, {protocol}"] = write_report(
                builtin, args.reference, Path(scratch) / f"builtin-{protocol}", seed=args.seed,
                draw_plots=False, protocol=protocol, workers=args.workers)
    print(f"reference: {args.reference}; half split seed {args.seed}; OA 1 = the two sets cannot be told apart.\n")
    print_table(reports)
    print(json.dumps({"benchmark": "overlap", "reference": args.reference,
                      "mean_oa": {name: r["mean_oa"] for name, r in reports.items()},
                      "mean_oa_paper_features": {name: r.get("mean_oa_paper_features") for name, r in reports.items()},
                      "features": {name: oa_columns({name: r})[1][name] for name, r in reports.items()}}))


if __name__ == "__main__":
    main()
