"""PerTok speed and compactness on real MIDI, against MidiTok in the same run.

    python benchmarks/tokenizer.py --midi_dir ../shared/midi [--vs-miditok] [--max_files N]

Measures, on the same files: symusic load time; our encode and decode throughput; with
--vs-miditok (the `bench` extra) MidiTok's PerTok at the same grids and microtiming range,
and the speed ratios; then sequence length per note and vocabulary size of ours against
MidiTok's REMI (default resolution and 96 per beat), TSD and MIDILike. Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import symusic

from pertok import PerTok, PerTokConfig, PerTokError
from pertok.store import find_midi_files


def timed(function, items, repeats: int = 1) -> tuple[float, list]:
    """Best-of-`repeats` wall time of mapping `function` over `items`."""
    best, results = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        results = [function(item) for item in items]
        best = min(best, time.perf_counter() - start)
    return best, results


def load_scores(files: list[Path]) -> tuple[float, list[symusic.Score], list[Path]]:
    start = time.perf_counter()
    scores, kept = [], []
    for path in files:
        try:
            score = symusic.Score(str(path))
        except RuntimeError:
            continue
        if score.note_num():
            scores.append(score)
            kept.append(path)
    return time.perf_counter() - start, scores, kept


def _encodes(tokenizer, score) -> bool:
    try:
        tokenizer.encode(score)
        return True
    except Exception:  # MidiTok raises KeyError, IndexError... on some real files
        return False


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


def speed_section(scores, ours: PerTok, repeats: int, vs_miditok: bool) -> dict:
    encode_s, encoded = timed(ours.encode, scores, repeats)
    decode_s, _ = timed(ours.decode, encoded, repeats)
    tokens = int(sum(len(ids) for ids in encoded))
    notes = int(sum(s.note_num() for s in scores))
    result = {"encode_s": encode_s, "decode_s": decode_s, "tokens": tokens, "notes": notes,
              "encode_tokens_per_s": tokens / encode_s, "encode_notes_per_s": notes / encode_s,
              "decode_tokens_per_s": tokens / decode_s, "decode_notes_per_s": notes / decode_s}
    if vs_miditok:
        theirs = miditok_tokenizer("PerTok")
        their_encode_s, their_encoded = timed(theirs.encode, scores)  # scores it fails on were left out
        their_decode_s, _ = timed(theirs.decode, their_encoded)
        result.update(miditok_encode_s=their_encode_s, miditok_decode_s=their_decode_s,
                      miditok_tokens=int(sum(count_tokens(s) for s in their_encoded)),
                      encode_speedup_vs_miditok=their_encode_s / encode_s,
                      decode_speedup_vs_miditok=their_decode_s / decode_s)
    return result


def compactness_section(scores, ours: PerTok, notes: int, tokens: int) -> list[dict]:
    rows = [{"tokenizer": "PerTok (ours)", "vocab": ours.vocab_size, "tokens_per_note": tokens / notes}]
    for kind, resolution, label in (("PerTok", None, "MidiTok PerTok"), ("REMI", None, "REMI (default 8/beat)"),
                                    ("REMI", 96, "REMI (96/beat)"), ("TSD", None, "TSD (default)"),
                                    ("MIDILike", None, "MIDILike (default)")):
        tokenizer = miditok_tokenizer(kind, resolution)
        total = sum(count_tokens(tokenizer.encode(s)) for s in scores)
        rows.append({"tokenizer": label, "vocab": len(tokenizer), "tokens_per_note": total / notes})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--midi_dir", required=True)
    parser.add_argument("--vs-miditok", dest="vs_miditok", action="store_true")
    parser.add_argument("--max_files", type=int, default=300, help="seeded random subset (0 = all)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for our timings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    files = find_midi_files(args.midi_dir)
    if args.max_files and len(files) > args.max_files:
        files = sorted(random.Random(args.seed).sample(files, args.max_files))
    load_s, scores, files = load_scores(files)
    ours = PerTok(PerTokConfig())
    if args.vs_miditok:  # compare on the files both tokenizers can encode
        theirs = miditok_tokenizer("PerTok")
        usable = [i for i, score in enumerate(scores) if _encodes(theirs, score)]
        print(f"MidiTok PerTok fails on {len(scores) - len(usable)} of {len(scores)} files; they are left out")
        load_s, scores, files = load_scores([files[i] for i in usable])
    speed = speed_section(scores, ours, args.repeats, args.vs_miditok)
    print(f"files {len(scores)}  notes {speed['notes']}  our tokens {speed['tokens']}")
    print(f"{'':28s}{'seconds':>10s}{'tokens/s':>14s}{'notes/s':>14s}")
    print(f"{'symusic load':28s}{load_s:10.3f}{'':>14s}{speed['notes'] / load_s:14.0f}")
    print(f"{'PerTok (ours) encode':28s}{speed['encode_s']:10.3f}{speed['encode_tokens_per_s']:14.0f}"
          f"{speed['encode_notes_per_s']:14.0f}")
    print(f"{'PerTok (ours) decode':28s}{speed['decode_s']:10.3f}{speed['decode_tokens_per_s']:14.0f}"
          f"{speed['decode_notes_per_s']:14.0f}")
    result = {"files": len(scores), "symusic_load_s": load_s, **speed, "vocab_size": ours.vocab_size,
              "encode_vs_load": speed["encode_s"] / load_s}
    if args.vs_miditok:
        print(f"{'MidiTok PerTok encode':28s}{speed['miditok_encode_s']:10.3f}"
              f"{speed['miditok_tokens'] / speed['miditok_encode_s']:14.0f}{speed['notes'] / speed['miditok_encode_s']:14.0f}")
        print(f"{'MidiTok PerTok decode':28s}{speed['miditok_decode_s']:10.3f}"
              f"{speed['miditok_tokens'] / speed['miditok_decode_s']:14.0f}{speed['notes'] / speed['miditok_decode_s']:14.0f}")
        print(f"encode speedup vs MidiTok PerTok: {speed['encode_speedup_vs_miditok']:.1f}x   "
              f"decode speedup: {speed['decode_speedup_vs_miditok']:.1f}x   "
              f"our encode / symusic load: {result['encode_vs_load']:.2f}")
        rows = compactness_section(scores, ours, speed["notes"], speed["tokens"])
        print(f"\n{'tokenizer':28s}{'vocab':>8s}{'tokens/note':>14s}")
        for row in rows:
            print(f"{row['tokenizer']:28s}{row['vocab']:8d}{row['tokens_per_note']:14.3f}")
        result["compactness"] = rows
    print(json.dumps(result))


if __name__ == "__main__":
    main()
