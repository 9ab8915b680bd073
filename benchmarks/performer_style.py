"""Performers side by side on the same held-out performances: which one plays like them.

    python benchmarks/performer_style.py --inputs runs/groove-heldout \
        --performers groove=runs/performer-groove,piano=pretrained/performer-small \
        [--baselines_from groove] [--performer_bars 16] [--max_inputs 0] [--seed 0] [--results PATH]

Make the inputs with `benchmarks/heldout.py` (for Groove: `--split top --per_folder 24`, whole
drummers that the Groove Performer's `data.split=top` run held out). Each Performer performs
the first `--performer_bars` bars of every input as `benchmarks/cadenza.py` does (greedy, every
slot masked), told the input's level and held to it, and alone (no level). Its velocities and
microtimings are compared with the truth note by note (MAE, within-piece correlation) and as
distributions: the histogram overlap (sum of per-bin minima) of its values with the true ones,
the paper's measure of a learned style. The baselines are those of the `--baselines_from`
run's training split (default: the first Performer): its mean velocity, the piece's own mean,
microtiming always 0, and the note-feature regression fit there and told the piece's level.
Each Performer's inputs found in its own training split are counted (they must be 0).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.cadenza import first_bars, performer_report, training_split  # noqa: E402
from benchmarks.note_regression import NoteRegression  # noqa: E402
from benchmarks.results import add_argument, recorded  # noqa: E402
from experiments.cadenza import load_trained  # noqa: E402
from experiments.samples import encode_like_training  # noqa: E402
from performer import piece_velocities  # noqa: E402
from pertok import PerTok  # noqa: E402
from pertok.store import find_midi_files  # noqa: E402

COLUMNS = ("velocity_mae", "velocity_correlation_within_pieces", "microtiming_mae_bins", "velocity_overlap",
           "microtiming_overlap")


def parse_performers(text: str) -> dict[str, str]:
    """{name: workdir} of `name=workdir,name=workdir`."""
    performers = {}
    for item in filter(None, text.split(",")):
        name, equals, workdir = item.partition("=")
        if not equals or not name or not workdir:
            raise SystemExit(f"performer_style.py: error: --performers item {item!r} is not NAME=WORKDIR")
        performers[name] = workdir
    if len(performers) < 1:
        raise SystemExit("performer_style.py: error: --performers names no Performer")
    return performers


def run(args: argparse.Namespace) -> dict:
    tokenizer = PerTok()
    performers = parse_performers(args.performers)
    baselines_from = args.baselines_from or next(iter(performers))
    if baselines_from not in performers:
        raise SystemExit(f"performer_style.py: error: --baselines_from={baselines_from!r} is not one of {list(performers)}")
    files = sorted(find_midi_files(args.inputs)) if os.path.isdir(args.inputs) else []
    files = files[:args.max_inputs] if args.max_inputs else files
    if len(files) < 2:
        raise SystemExit(f"performer_style.py: error: --inputs={args.inputs!r} needs at least 2 MIDI files")
    names = {os.path.relpath(str(path), args.inputs) for path in files}
    pieces = [first_bars(encode_like_training(str(path), tokenizer, quiet=True), tokenizer, args.performer_bars)
              for path in files]
    result = {"inputs": len(files), "baselines_from": baselines_from, "performers": {}}
    for name, workdir in performers.items():
        performer = load_trained(workdir, tokenizer, "performer")
        seen, train = training_split(performer)
        velocities = np.concatenate([piece_velocities(train.piece(k), tokenizer) for k in range(len(train))])
        regression = (NoteRegression(tokenizer).fit(train.piece(k) for k in range(len(train)))
                      if name == baselines_from else None)
        report = performer_report(performer, tokenizer, pieces, float(velocities.mean()), args.seed, regression)
        report["leaked_inputs"] = len(names & seen)
        report["workdir"] = workdir
        result["performers"][name] = report
    print_table(result)
    return result


def _cells(row: dict) -> str:
    return " | ".join(f"{row[key]:.3f}" if key in row else "" for key in COLUMNS)


def print_table(result: dict) -> None:
    base_report = result["performers"][result["baselines_from"]]
    base = base_report["baselines"]
    print(f"{result['inputs']} inputs, {base['notes']} notes. Inputs in each Performer's own training split: "
          + ", ".join(f"{name} {report['leaked_inputs']}" for name, report in result["performers"].items()) + ".\n")
    print("| who performs | velocity MAE | velocity r, within pieces | microtiming MAE (bins) "
          "| velocity overlap | microtiming overlap |")
    print("|---|---|---|---|---|---|")
    for name, report in result["performers"].items():
        print(f"| {name} Performer, told the piece's level | {_cells(report['level'])} |")
        print(f"| {name} Performer alone (no level) | {_cells(report['no_level'])} |")
    source = result["baselines_from"]
    print(f"| note-feature regression fit on {source}'s training split, told the level | "
          f"{_cells(base_report['regression'])} |")
    print(f"| constant: {source}'s training mean velocity ({base['training_mean_velocity']:.1f}) | "
          f"{base['velocity_mae_training_mean']:.3f} | | | | |")
    print(f"| constant: the piece's own mean velocity | {base['velocity_mae_piece_mean']:.3f} | | | | |")
    print(f"| microtiming always 0 | | | {base['microtiming_mae_zero_bins']:.3f} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help="folder of held-out performances")
    parser.add_argument("--performers", required=True, help="NAME=WORKDIR,NAME=WORKDIR")
    parser.add_argument("--baselines_from", default="", help="the Performer whose training split gives the baselines")
    parser.add_argument("--performer_bars", type=int, default=16)
    parser.add_argument("--max_inputs", type=int, default=0, help="0 = every input")
    parser.add_argument("--seed", type=int, default=0)
    add_argument(parser)
    args = parser.parse_args()
    with recorded(args.results, "Performers side by side on held-out performances"):
        result = run(args)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
