"""Held-out evaluation inputs: one performance of each ASAP folder that training holds out.

    python benchmarks/heldout.py --midi_dir ../shared/midi/asap/performances --out runs/heldout22
        [--valid_fraction 0.1] [--seed 0] [--max_folders 0] [--split folder] [--per_folder 1]
    python benchmarks/heldout.py --midi_dir ../shared/midi/groove --split top --per_folder 24 \
        --out runs/groove-heldout
    python benchmarks/heldout.py --valid_fraction 0.2 --exclude_fraction 0.1 --out runs/final18

A run with `data.split=folder` holds out a folder (an ASAP piece: its performances, and its
score under `asap/scores`) when the hash of its path falls under `data.valid_fraction`
(`training.data.is_validation`). This lists those folders, picks one performance of each with a
seeded choice, and links it (with its `NAME_annotations.txt`) into OUT at the same relative
path, so `benchmarks/cadenza.py --inputs OUT` can count inputs that share a folder with
training (it must find none). OUT/heldout.json records the files. The same arguments always
give the same set: it is the one the Cadenza results pages name.

`--exclude_fraction F` leaves out the folders already held out at F: with models trained at
`data.valid_fraction=0.2`, `--valid_fraction 0.2 --exclude_fraction 0.1` is a **final** set of
18 folders beside the 22-folder **selection** set (`--valid_fraction 0.1`) on which designs were
chosen (the hash split is nested: a folder held out at 0.1 is held out at 0.2).

`--split top` lists the first-level folders a `data.split=top` run holds out instead (Groove:
whole drummers), and `--per_folder K` takes K files of each held-out folder (seeded).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
from pathlib import Path

from pertok.align import annotation_path
from pertok.store import find_midi_files
from training.data import is_validation, split_key


def heldout_folders(midi_dir: Path, valid_fraction: float, split: str = "folder") -> dict[str, list[Path]]:
    """{key relative to midi_dir: its performances} of every folder held out by `data.split=SPLIT`
    ("folder": a file's parent folder; "top": its first folder)."""
    folders: dict[str, list[Path]] = {}
    for path in find_midi_files(midi_dir):
        relative = str(path.relative_to(midi_dir))
        key = split_key(relative, split)
        if os.path.dirname(relative) and is_validation(key, valid_fraction):
            folders.setdefault(key, []).append(path)
    return dict(sorted(folders.items()))


def choose(folders: dict[str, list[Path]], seed: int, max_folders: int = 0, per_folder: int = 1) -> list[Path]:
    """`per_folder` performances per folder (seeded); the first `max_folders` folders in a seeded
    order (0 = all)."""
    rng = random.Random(seed)
    names = list(folders)
    if max_folders and max_folders < len(names):
        names = sorted(rng.sample(names, max_folders))
    if per_folder == 1:  # the sets the results pages name were drawn this way
        return [rng.choice(sorted(folders[name])) for name in names]
    return [path for name in names
            for path in sorted(rng.sample(sorted(folders[name]), min(per_folder, len(folders[name]))))]


def link_inputs(files: list[Path], midi_dir: Path, out: Path) -> list[str]:
    """Link each file (and its annotations) into `out` at its path relative to `midi_dir`."""
    if out.exists():
        shutil.rmtree(out)  # a set is made whole each time: nothing stale from other arguments
    written = []
    for path in files:
        relative = path.relative_to(midi_dir)
        for source in (path, annotation_path(path)):
            if source.is_file():
                target = out / relative.parent / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source.resolve())
        written.append(str(relative))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi_dir", default="../shared/midi/asap/performances")
    parser.add_argument("--out", required=True, help="folder to write the set into (replaced)")
    parser.add_argument("--valid_fraction", type=float, default=0.1, help="the runs' data.valid_fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_folders", type=int, default=0, help="0 = every held-out folder")
    parser.add_argument("--exclude_fraction", type=float, default=0.0,
                        help="leave out the folders held out at this fraction (the selection set)")
    parser.add_argument("--split", default="folder", choices=("folder", "top"), help="the runs' data.split")
    parser.add_argument("--per_folder", type=int, default=1, help="files taken from each held-out folder")
    args = parser.parse_args()
    midi_dir, out = Path(args.midi_dir), Path(args.out)
    folders = heldout_folders(midi_dir, args.valid_fraction, args.split)
    if args.exclude_fraction:
        excluded = heldout_folders(midi_dir, args.exclude_fraction, args.split)
        folders = {key: files for key, files in folders.items() if key not in excluded}
    if not folders:
        raise SystemExit(f"heldout.py: error: no folder of {midi_dir} is held out at valid_fraction={args.valid_fraction}")
    files = link_inputs(choose(folders, args.seed, args.max_folders, args.per_folder), midi_dir, out)
    (out / "heldout.json").write_text(json.dumps({
        "midi_dir": str(midi_dir), "valid_fraction": args.valid_fraction, "seed": args.seed,
        "split": args.split, "per_folder": args.per_folder, "exclude_fraction": args.exclude_fraction,
        "held_out_folders": len(folders), "files": files}, indent=1))
    for name in files:
        print(name)
    print(f"{len(files)} inputs from {len(folders)} held-out folders -> {out}")


if __name__ == "__main__":
    main()
