"""PerTok speed, per file and batched, against symusic's parse and MidiTok in the same run.

    python benchmarks/tokenizer.py --midi_dir ../shared/midi/asap/performances \
        --midi_dir ../shared/midi/groove [--vs-miditok] [--miditok_max_files N] [--max_files N]

Per folder (each `--midi_dir` is one section), on the same files: symusic's parse
(`Score(path)`), our encode of the loaded scores per file (`encode`) and batched
(`encode_batch`), end to end (parse + batched encode of the paths), our decode per file and
batched; with --vs-miditok (the `bench` extra, miditok 3.1.0) MidiTok's PerTok at the same
grids and microtiming range on a seeded sample of the files (it is slow), with our timings on
that same sample for the speed ratios. Ours are best of --repeats; MidiTok's one pass. With
--compactness, tokens per note and vocabulary against MidiTok's REMI, TSD and MIDILike.
Last line: JSON, with `encode_batch_over_load` and `decode_batch_speedup_vs_miditok` per folder.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import symusic

from benchmarks.results import add_argument, recorded
from pertok import PerTok, PerTokConfig
from pertok.store import find_midi_files


def best_of(repeats: int, function) -> tuple[float, object]:
    """Best wall time of `repeats` calls of `function()`, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def readable(files: list[Path]) -> tuple[list[Path], list[symusic.Score]]:
    """The files symusic parses and that have notes, and their scores."""
    kept, scores = [], []
    for path in files:
        try:
            score = symusic.Score(str(path))
        except Exception:  # symusic raises several types for corrupt files
            continue
        if score.note_num():
            kept.append(path)
            scores.append(score)
    return kept, scores


def ours_section(files: list[Path], scores: list, ours: PerTok, repeats: int) -> dict:
    """symusic parse, our encode and decode per file and batched, on the same files."""
    load_s, _ = best_of(repeats, lambda: [symusic.Score(str(path)) for path in files])
    encode_s, encoded = best_of(repeats, lambda: [ours.encode(score) for score in scores])
    encode_batch_s, batched = best_of(repeats, lambda: ours.encode_batch(scores))
    assert all((a == b).all() for a, b in zip(encoded, batched)), "encode_batch differs from encode"
    end_to_end_s, _ = best_of(repeats, lambda: ours.encode_batch(files))
    decode_s, _ = best_of(repeats, lambda: [ours.decode(ids) for ids in encoded])
    decode_batch_s, _ = best_of(repeats, lambda: ours.decode_batch(encoded))
    return {"files": len(files), "notes": int(sum(s.note_num() for s in scores)),
            "tokens": int(sum(len(ids) for ids in encoded)), "load_s": load_s, "encode_s": encode_s,
            "encode_batch_s": encode_batch_s, "load_plus_encode_batch_s": end_to_end_s,
            "decode_s": decode_s, "decode_batch_s": decode_batch_s,
            "encode_over_load": encode_s / load_s, "encode_batch_over_load": encode_batch_s / load_s,
            "decode_batch_over_decode": decode_batch_s / decode_s}


def miditok_config(kind: str, beat_resolution: int | None = None):
    from miditok import TokenizerConfig
    ours = PerTokConfig()
    meters = {d: list(ours.time_signature_numerators) for d in ours.time_signature_denominators}
    common = dict(pitch_range=(0, 127), special_tokens=["PAD", "BOS", "EOS", "MASK"], use_programs=True,
                  use_time_signatures=True, time_signature_range=meters, use_tempos=False,
                  use_sustain_pedals=False)
    if kind == "PerTok":
        # Same grids as ours (16ths and 8th triplets; MidiTok keys beat_res by beat range, so the
        # triplet grid is given up to 3 beats), same microtiming range and bin count.
        return TokenizerConfig(beat_res={(0, 4): 4, (0, 3): 3}, use_microtiming=True, ticks_per_quarter=960,
                               max_microtiming_shift=0.125, num_microtiming_bins=25, **common)
    if beat_resolution:
        common["beat_res"] = {(0, 4): beat_resolution, (4, 12): 4}
    return TokenizerConfig(**common)


def miditok_tokenizer(kind: str, beat_resolution: int | None = None):
    import miditok
    return getattr(miditok, kind)(miditok_config(kind, beat_resolution))


def count_tokens(sequence) -> int:
    sequences = sequence if isinstance(sequence, list) else [sequence]
    return sum(len(s.ids) for s in sequences)


def miditok_section(scores: list, ours: PerTok, repeats: int) -> dict:
    """MidiTok's PerTok encode and decode (one pass, each file timed on its own so the files
    it fails on are left out of both sides), beside ours on exactly the same scores."""
    theirs = miditok_tokenizer("PerTok")
    encode_s, decode_s, kept, failures = 0.0, 0.0, [], 0
    for score in scores:
        try:
            start = time.perf_counter()
            tokens = theirs.encode(score)
            middle = time.perf_counter()
            theirs.decode(tokens)
            end = time.perf_counter()
        except Exception:  # MidiTok raises KeyError, IndexError... on some real files
            failures += 1
            continue
        encode_s, decode_s = encode_s + middle - start, decode_s + end - middle
        kept.append(score)
    our_encode_s, encoded = best_of(repeats, lambda: [ours.encode(score) for score in kept])
    our_encode_batch_s, _ = best_of(repeats, lambda: ours.encode_batch(kept))
    our_decode_s, _ = best_of(repeats, lambda: [ours.decode(ids) for ids in encoded])
    our_decode_batch_s, _ = best_of(repeats, lambda: ours.decode_batch(encoded))
    return {"miditok_files": len(kept), "miditok_failures": failures,
            "miditok_notes": int(sum(s.note_num() for s in kept)),
            "miditok_encode_s": encode_s, "miditok_decode_s": decode_s,
            "sample_encode_s": our_encode_s, "sample_encode_batch_s": our_encode_batch_s,
            "sample_decode_s": our_decode_s, "sample_decode_batch_s": our_decode_batch_s,
            "encode_speedup_vs_miditok": encode_s / our_encode_s,
            "encode_batch_speedup_vs_miditok": encode_s / our_encode_batch_s,
            "decode_speedup_vs_miditok": decode_s / our_decode_s,
            "decode_batch_speedup_vs_miditok": decode_s / our_decode_batch_s}


def compactness_section(scores: list, ours: PerTok, notes: int, tokens: int) -> list[dict]:
    rows = [{"tokenizer": "PerTok (ours)", "vocab": ours.vocab_size, "tokens_per_note": tokens / notes}]
    for kind, resolution, label in (("PerTok", None, "MidiTok PerTok"), ("REMI", None, "REMI (default 8/beat)"),
                                    ("REMI", 96, "REMI (96/beat)"), ("TSD", None, "TSD (default)"),
                                    ("MIDILike", None, "MIDILike (default)")):
        tokenizer = miditok_tokenizer(kind, resolution)
        total = sum(count_tokens(tokenizer.encode(s)) for s in scores)
        rows.append({"tokenizer": label, "vocab": len(tokenizer), "tokens_per_note": total / notes})
    return rows


def print_section(name: str, result: dict) -> None:
    notes = result["notes"]
    print(f"\n{name}: {result['files']} files, {notes} notes, {result['tokens']} of our tokens")
    print(f"{'':34s}{'seconds':>10s}{'notes/s':>14s}{'x load':>9s}")
    for label, key in (("symusic load (parse)", "load_s"), ("ours encode, per file", "encode_s"),
                       ("ours encode_batch", "encode_batch_s"), ("load + encode_batch (paths)", "load_plus_encode_batch_s"),
                       ("ours decode, per file", "decode_s"), ("ours decode_batch", "decode_batch_s")):
        seconds = result[key]
        print(f"{label:34s}{seconds:10.4f}{notes / seconds:14.0f}{seconds / result['load_s']:9.2f}")
    if "miditok_encode_s" in result:
        print(f"MidiTok PerTok on {result['miditok_files']} of them ({result['miditok_failures']} it fails on "
              f"left out; {result['miditok_notes']} notes): encode {result['miditok_encode_s']:.2f} s, "
              f"decode {result['miditok_decode_s']:.2f} s")
        print(f"  speedup vs MidiTok, same files: encode {result['encode_speedup_vs_miditok']:.1f}x per file, "
              f"{result['encode_batch_speedup_vs_miditok']:.1f}x batched; decode "
              f"{result['decode_speedup_vs_miditok']:.1f}x per file, {result['decode_batch_speedup_vs_miditok']:.1f}x batched")
    if "compactness" in result:
        print(f"\n| {name}: tokenizer | vocabulary | tokens per note |\n|---|---|---|")
        for row in result["compactness"]:
            print(f"| {row['tokenizer']} | {row['vocab']} | {row['tokens_per_note']:.2f} |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--midi_dir", action="append", required=True, help="a folder; give several for several sections")
    parser.add_argument("--vs-miditok", dest="vs_miditok", action="store_true")
    parser.add_argument("--max_files", type=int, default=0, help="seeded random subset per folder (0 = all)")
    parser.add_argument("--miditok_max_files", type=int, default=100, help="seeded sample for MidiTok (0 = all)")
    parser.add_argument("--compactness", action="store_true", help="tokens per note vs MidiTok tokenizers")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for our timings and the parse")
    parser.add_argument("--seed", type=int, default=0)
    add_argument(parser)
    args = parser.parse_args()
    with recorded(args.results, "PerTok encode and decode speed against symusic's parse (and MidiTok)"):
        run(args)


def run(args: argparse.Namespace) -> None:

    ours = PerTok(PerTokConfig())
    results = {}
    for folder in args.midi_dir:
        name = Path(folder).name
        files = find_midi_files(folder)
        if args.max_files and len(files) > args.max_files:
            files = sorted(random.Random(args.seed).sample(files, args.max_files))
        files, scores = readable(files)
        result = ours_section(files, scores, ours, args.repeats)
        if args.vs_miditok:
            sample = list(range(len(scores)))
            if args.miditok_max_files and len(sample) > args.miditok_max_files:
                sample = sorted(random.Random(args.seed).sample(sample, args.miditok_max_files))
            result.update(miditok_section([scores[i] for i in sample], ours, args.repeats))
        if args.compactness:
            result["compactness"] = compactness_section(scores, ours, result["notes"], result["tokens"])
        print_section(name, result)
        results[name] = result
    summary = {key: {name: r[key] for name, r in results.items() if key in r}
               for key in ("encode_batch_over_load", "decode_batch_speedup_vs_miditok")}
    print(json.dumps({**summary, "vocab_size": ours.vocab_size, "sections": results}))


if __name__ == "__main__":
    main()
