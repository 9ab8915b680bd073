"""Does a file's tick grid follow its beat? `pertok.align.check_grid`'s peak share on real folders.

    python benchmarks/grid_check.py --midi_dir ../shared/midi/asap/performances \
        --midi_dir ../shared/midi/maestro10 --midi_dir ../shared/midi/giantmidi \
        --midi_dir ../shared/midi/groove --midi_dir ../shared/midi/asap/scores \
        --max_files 60 --results docs/results/grid_check.md

Each file is read as recorded (no beat alignment), as a user's file is before `vary` decides
whether to believe its grid. The peak share is the largest share of notes in three adjacent
MicroTiming bins (1/32 beat): performances recorded without a click spread over every bin; files
played to a click or quantized keep most notes near one offset. Per folder: the distribution of
the peak share, and the share of files at or below `GRIDLESS_PEAK` (said to follow no beat).
"""
from __future__ import annotations

import argparse
import json
import random

import numpy as np

from benchmarks.results import add_argument, recorded
from pertok import PerTok, PerTokError
from pertok.align import GRIDLESS_PEAK, check_grid
from pertok.store import find_midi_files


def peak_shares(folder: str, tokenizer: PerTok, max_files: int, seed: int) -> tuple[list[float], int]:
    """Peak shares of a seeded sample of a folder's MIDI files, and how many could not be read."""
    files = find_midi_files(folder)
    files = random.Random(seed).sample(files, min(max_files, len(files))) if max_files else files
    shares, unreadable = [], 0
    for path in files:
        try:
            ids = tokenizer.encode(path)
        except PerTokError:
            unreadable += 1
            continue
        check = check_grid(ids, tokenizer)
        if check.notes:
            shares.append(check.peak_share)
    return shares, unreadable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi_dir", action="append", required=True, help="a folder (repeat for several)")
    parser.add_argument("--max_files", type=int, default=60, help="files sampled per folder; 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    add_argument(parser)
    args = parser.parse_args()
    tokenizer = PerTok()
    with recorded(args.results, "The grid check on real folders"):
        print(f"Peak share of MicroTiming (three adjacent bins of 1/32 beat); at or below {GRIDLESS_PEAK} "
              f"a file is said to follow no beat grid.\n")
        print("| folder | files | min | 10th pct | median | 90th pct | max | at or below the threshold |")
        print("|---|---|---|---|---|---|---|---|")
        result = {}
        for folder in args.midi_dir:
            shares, unreadable = peak_shares(folder, tokenizer, args.max_files, args.seed)
            if not shares:
                print(f"| {folder} | 0 | | | | | | |")
                continue
            low, p10, median, p90, high = np.percentile(shares, [0, 10, 50, 90, 100])
            below = float(np.mean(np.asarray(shares) <= GRIDLESS_PEAK))
            print(f"| {folder} | {len(shares)}{f' ({unreadable} unreadable)' if unreadable else ''} | {low:.2f} | "
                  f"{p10:.2f} | {median:.2f} | {p90:.2f} | {high:.2f} | {100 * below:.0f}% |")
            result[folder] = {"files": len(shares), "unreadable": unreadable, "min": low, "p10": p10,
                              "median": median, "p90": p90, "max": high, "gridless_share": below}
        print()
        print(json.dumps({"threshold": GRIDLESS_PEAK, "folders": result}))


if __name__ == "__main__":
    main()
