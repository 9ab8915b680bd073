"""Command line of the built-in corpus generator.

    python -m pertok.synthetic --out DIR --num_pieces N [--seed S]
"""
from __future__ import annotations

import argparse
import pathlib
import time

from pertok.synthetic.pieces import write_corpus


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic corpus and print a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m pertok.synthetic", description="Write the built-in corpus: seeded, expressive multi-track MIDI.")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="directory for the .mid files")
    parser.add_argument("--num_pieces", required=True, type=int, help="number of pieces to write")
    parser.add_argument("--seed", default=0, type=int, help="corpus seed (non-negative)")
    args = parser.parse_args(argv)
    if args.num_pieces < 1:
        parser.error(f"--num_pieces must be at least 1, got {args.num_pieces}")
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    started = time.perf_counter()
    paths = write_corpus(args.out, args.num_pieces, args.seed)
    seconds = time.perf_counter() - started
    print(f"wrote {len(paths)} pieces to {args.out} in {seconds:.2f} s "
          f"({1000 * seconds / len(paths):.1f} ms per piece)")
