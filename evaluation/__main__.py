"""Command line: `python -m evaluation report ...` and `python -m evaluation similarity ...`."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import symusic

from evaluation import notes, similarity
from evaluation.errors import EvaluationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluation", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report", help="compare generated MIDI files with reference ones; write report.json and PNGs")
    report.add_argument("--generated", help="folder of generated MIDI files (recursive)")
    report.add_argument("--reference", required=True, help="folder of reference MIDI files (recursive)")
    report.add_argument("--out", required=True, help="output folder for report.json and the plots")
    report.add_argument("--num-bars", type=int, default=16, help="bars read by per-bar features")
    report.add_argument("--max-pairs", type=int, default=10_000,
                        help="most distance pairs per set; more are subsampled with --seed")
    report.add_argument("--seed", type=int, default=0, help="seed of the pair subsampling")
    report.add_argument("--workers", type=int, default=None, help="reading processes (default: CPUs)")
    report.add_argument("--piano-rolls", type=int, default=3, help="pieces of each set drawn")
    report.add_argument("--no-plots", action="store_true", help="write report.json only")
    report.add_argument("--protocol", choices=("project", "mgeval"), default="project",
                        help="feature definitions and OA integration: this project's (default) or "
                             "MGEval's own, with the papers' nine features (see evaluation/compare.py)")
    report.add_argument("--half-split", type=int, default=None, metavar="SEED",
                        help="instead of --generated, compare a random half of --reference "
                             "with the other half")
    variation = commands.add_parser(
        "similarity", help="chroma/groove similarity of a variation to its input (MuseMorphose)")
    variation.add_argument("input", help="the input MIDI file")
    variation.add_argument("variation", help="the variation MIDI file")
    return parser


def _run_report(args: argparse.Namespace) -> None:
    from evaluation import report  # imported here so that `similarity` skips matplotlib

    result = report.write_report(
        args.generated, args.reference, args.out, num_bars=args.num_bars, max_pairs=args.max_pairs,
        seed=args.seed, workers=args.workers, num_piano_rolls=max(args.piano_rolls, 0),
        half_split_seed=args.half_split, draw_plots=not args.no_plots, protocol=args.protocol)
    print(report.format_table(result))
    skipped = len(result["skipped"])
    print(f"{result['generated']['num_pieces']} generated, {result['reference']['num_pieces']} reference "
          f"pieces, {skipped} skipped, {result['seconds']['total']:.1f} s -> {args.out}/report.json")


def _run_similarity(args: argparse.Namespace) -> None:
    pieces = []
    for path in (args.input, args.variation):
        try:
            pieces.append(notes.piece_notes(symusic.Score(path)))
        except (RuntimeError, ValueError) as error:
            raise EvaluationError(f"cannot read {path!r}: {error}") from error
    input_piece, variation_piece = pieces
    print(json.dumps({
        "chroma_similarity": similarity.chroma_similarity(input_piece, variation_piece),
        "groove_similarity": similarity.groove_similarity(input_piece, variation_piece),
        "pitch_class_entropy_bits": {"input": similarity.pitch_class_entropy(input_piece),
                                     "variation": similarity.pitch_class_entropy(variation_piece)},
    }, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 with one line on stderr on bad input)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            _run_report(args)
        else:
            _run_similarity(args)
    except (EvaluationError, OSError) as error:
        print(f"evaluation: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
