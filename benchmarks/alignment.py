"""Is the grid musical? PerTok's microtiming on ASAP performances before and after beat alignment.

    python benchmarks/alignment.py --midi_dir ../shared/midi/asap/performances [--max_files N]
        [--results docs/results/alignment.md]

For every performance with `NAME_annotations.txt` beside it, tokenizes the file as it is
(ASAP: one 120 qpm tempo, 4/4) and aligned to its beats (`pertok.align`), with the default
tokenizer, and reports per version: the MicroTiming distribution (std in bins, share within
+-1 bin, share exactly on the 16th/triplet union grid) and tokens per note.

Where the written score is known (ASAP's `scores/.../midi_score.mid` with its own
annotations, same beats as the performance), each aligned performance note is matched to the
written note of the same pitch nearest in ticks (within a 16th; written notes on the union grid only), which splits the remaining
spread: the expression (performed minus written onset, in microtiming bins), and the notes
whose microtiming overflows to another grid position (the union grid snapped them to a
position other than the written one; "16th -> triplet" counts a written 16th snapped to a
triplet). Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import random
import time
import warnings
from pathlib import Path

import numpy as np

from pertok import PerTok, PerTokError
from benchmarks.results import add_argument, recorded
from pertok.align import align_score, annotation_path, read_annotations
from pertok.quantize import score_to_table
from pertok.store import find_midi_files
from pertok.tokenizer import load_score
from pertok.vocab import TokenType

MATCH_TICKS = 240  # a written note is matched within a 16th (at tpq 960)


def microtiming_bins(tokenizer: PerTok, ids: np.ndarray) -> np.ndarray:
    """Signed MicroTiming bin of every note (pedals are off in the default config)."""
    types = tokenizer.token_types(ids)
    centre = tokenizer.type_ranges["MicroTiming"][0] + tokenizer.config.microtiming_bins // 2
    return ids[types == TokenType.MICROTIMING].astype(np.int64) - centre


def onsets(tokenizer: PerTok, score) -> dict[str, np.ndarray]:
    """Per note: pitch, onset tick, its union-grid position (absolute tick) and microtiming bin."""
    table = score_to_table(score, tokenizer.vocab)
    notes = table.kind == 2
    grid = table.bars.starts[table.bar] + table.position
    step = tokenizer.config.microtiming_step_ticks
    columns = {"pitch": table.pitch[notes], "grid": grid[notes],
               "onset": (grid + table.microtiming * step)[notes], "bin": table.microtiming[notes]}
    return {name: column.astype(np.int64) for name, column in columns.items()}  # keys below need 64 bits


def score_of(performance: Path, midi_dir: Path, scores_dir: Path | None) -> tuple[Path, Path] | None:
    if scores_dir is None:
        return None
    folder = scores_dir / performance.parent.relative_to(midi_dir)
    midi, beats = folder / "midi_score.mid", folder / "midi_score_annotations.txt"
    return (midi, beats) if midi.is_file() and beats.is_file() else None


def written_match(tokenizer: PerTok, aligned, report, written_path: tuple[Path, Path]) -> dict | None:
    """Match aligned performance notes to written ones on the same beat grid (see docstring)."""
    written, written_report = align_score(load_score(written_path[0]), read_annotations(written_path[1]))
    if (report.dropped_beats or written_report.dropped_beats or len(report.downbeat_ticks)
            != len(written_report.downbeat_ticks) or not np.array_equal(
                report.downbeat_ticks - report.first_downbeat_tick,
                written_report.downbeat_ticks - written_report.first_downbeat_tick)):
        return None  # not the same bars (repeats played differently, merged beats)
    shift = report.first_downbeat_tick - written_report.first_downbeat_tick
    played, score = onsets(tokenizer, aligned), onsets(tokenizer, written)
    key_scale = 1 << 40
    written_keys = np.sort(score["pitch"] * key_scale + score["onset"] + shift)
    order = np.argsort(score["pitch"] * key_scale + score["onset"] + shift, kind="stable")
    written_grid = (score["grid"] + shift)[order]
    written_on_grid = score["bin"][order] == 0  # 32nds, quintuplets, grace notes are not
    keys = played["pitch"] * key_scale + played["onset"]
    right = np.clip(np.searchsorted(written_keys, keys), 0, len(written_keys) - 1)
    left = np.clip(right - 1, 0, len(written_keys) - 1)
    nearest = np.where(np.abs(written_keys[left] - keys) < np.abs(written_keys[right] - keys), left, right)
    deviation = keys - written_keys[nearest]
    matched = (np.abs(deviation) <= MATCH_TICKS) & written_on_grid[nearest]
    tpq = tokenizer.config.ticks_per_quarter
    written_position = written_grid[nearest][matched] % tpq
    is_sixteenth = written_position % (tpq // 4) == 0
    snapped_triplet = (played["grid"][matched] % tpq) % (tpq // 3) == 0
    snapped_triplet &= (played["grid"][matched] % tpq) % (tpq // 4) != 0
    overflow = played["grid"][matched] != written_grid[nearest][matched]
    return {"deviation_bins": deviation[matched] / tokenizer.config.microtiming_step_ticks,
            "bins": played["bin"][matched], "overflow": overflow,
            "sixteenth_to_triplet": overflow & is_sixteenth & snapped_triplet,
            "notes": len(keys), "matched": int(matched.sum()),
            "written_on_grid": float(written_on_grid.mean())}


def measure(path: Path, midi_dir: Path, scores_dir: Path | None, tokenizer: PerTok) -> dict:
    score = load_score(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligned, report = align_score(score, read_annotations(annotation_path(path)))
    before, after = tokenizer.encode(score), tokenizer.encode(aligned)
    result = {"before": microtiming_bins(tokenizer, before), "after": microtiming_bins(tokenizer, after),
              "tokens_before": len(before), "tokens_after": len(after), "irregular": report.irregular_bars,
              "merged": len(report.dropped_beats), "shift_ms": report.max_shift_ms,
              "shift_ticks": report.max_shift_ticks}
    written = score_of(path, midi_dir, scores_dir)
    if written is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["written"] = written_match(tokenizer, aligned, report, written)
    return result


def distribution(bins: np.ndarray) -> dict:
    return {"std_bins": float(bins.std()), "within_1_bin": float(np.mean(np.abs(bins) <= 1)),
            "on_grid": float(np.mean(bins == 0)), "at_edge": float(np.mean(np.abs(bins) >= 11))}


def summarize(results: list[dict]) -> dict:
    notes = sum(len(r["before"]) for r in results)
    summary = {"files": len(results), "notes": notes,
               "irregular_bars": sum(r["irregular"] for r in results),
               "merged_beats": sum(r["merged"] for r in results),
               "largest_shift_ms": max(r["shift_ms"] for r in results),
               "largest_shift_ticks": max(r["shift_ticks"] for r in results)}
    for version in ("before", "after"):
        summary[version] = distribution(np.concatenate([r[version] for r in results]))
        summary[version]["tokens_per_note"] = sum(r[f"tokens_{version}"] for r in results) / notes
    written = [r["written"] for r in results if r.get("written")]
    if written:
        deviation = np.concatenate([w["deviation_bins"] for w in written])
        bins = np.concatenate([w["bins"] for w in written])
        overflow = np.concatenate([w["overflow"] for w in written])
        summary["written"] = {
            "files": len(written), "notes": sum(w["notes"] for w in written),
            "matched": sum(w["matched"] for w in written),
            "written_on_grid": float(np.mean([w["written_on_grid"] for w in written])),
            "expression_std_bins": float(deviation.std()),
            "expression_within_1_bin": float(np.mean(np.abs(deviation) <= 1)),
            "microtiming_std_bins": float(bins.std()),
            "microtiming_std_bins_where_written_position_kept": float(bins[~overflow].std()),
            "overflow": float(overflow.mean()),
            "microtiming_variance_share_of_overflow": float((bins[overflow] ** 2).sum() / max((bins ** 2).sum(), 1)),
            "expression_std_bins_of_overflow": float(deviation[overflow].std()) if overflow.any() else 0.0,
            "sixteenth_to_triplet": float(np.concatenate([w["sixteenth_to_triplet"] for w in written]).mean())}
    return summary


def print_table(summary: dict) -> None:
    rows = [("microtiming std (bins)", "std_bins", "{:.2f}"), ("share within +-1 bin", "within_1_bin", "{:.3f}"),
            ("share on the union grid (bin 0)", "on_grid", "{:.3f}"), ("share at the edge (abs(bin) >= 11)", "at_edge", "{:.3f}"),
            ("tokens per note", "tokens_per_note", "{:.3f}")]
    print(f"{summary['files']} performances, {summary['notes']} notes; {summary['irregular_bars']} irregular bars, "
          f"{summary['merged_beats']} beats merged, largest change of a note's time {summary['largest_shift_ms']:.2f} ms "
          f"({summary['largest_shift_ticks']:.2f} ticks)")
    print("| | as recorded | aligned |\n|---|---|---|")
    for label, key, form in rows:
        print(f"| {label} | {form.format(summary['before'][key])} | {form.format(summary['after'][key])} |")
    if "written" in summary:
        w = summary["written"]
        print(f"\nagainst the written score ({w['files']} performances, {w['matched']} of {w['notes']} notes matched):")
        for key in ("written_on_grid", "expression_std_bins", "expression_within_1_bin", "microtiming_std_bins",
                    "microtiming_std_bins_where_written_position_kept", "overflow",
                    "microtiming_variance_share_of_overflow", "expression_std_bins_of_overflow", "sixteenth_to_triplet"):
            print(f"  {key:50s} {w[key]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi_dir", default="../shared/midi/asap/performances")
    parser.add_argument("--scores_dir", default=None, help="ASAP scores (default: ../scores beside midi_dir)")
    parser.add_argument("--max_files", type=int, default=0, help="a seeded random sample; 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    add_argument(parser)
    args = parser.parse_args()
    with recorded(args.results, "Beat alignment: PerTok's microtiming on ASAP, as recorded and aligned"):
        run(args)


def run(args: argparse.Namespace) -> None:
    midi_dir = Path(args.midi_dir)
    scores_dir = Path(args.scores_dir) if args.scores_dir else midi_dir.parent / "scores"
    files = [f for f in find_midi_files(midi_dir) if annotation_path(f).is_file()]
    if args.max_files and args.max_files < len(files):
        files = sorted(random.Random(args.seed).sample(files, args.max_files))
    tokenizer, results, failed = PerTok(), [], []
    start = time.perf_counter()
    for path in files:
        try:
            results.append(measure(path, midi_dir, scores_dir if scores_dir.is_dir() else None, tokenizer))
        except PerTokError as error:
            failed.append(f"{path}: {error}")
    summary = summarize(results)
    summary["failed"] = len(failed)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    print_table(summary)
    for line in failed:
        print(f"failed: {line}")
    print(json.dumps({"benchmark": "alignment", **summary}))


if __name__ == "__main__":
    main()
