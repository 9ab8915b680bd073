"""`python -m pertok`: encode, decode, roundtrip, align, stats, build and the demo."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from pertok.config import PerTokConfig
from pertok.errors import PerTokError
from pertok.store import build_store, encode_files, find_midi_files
from pertok.tokenizer import PerTok
from pertok.vocab import TokenType


def _tokenizer(args) -> PerTok:
    if getattr(args, "config", None):
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise PerTokError(f"{args.config}: cannot read config JSON ({error})") from None
        return PerTok(PerTokConfig.from_dict(values.get("config", values)))
    return PerTok()


def cmd_encode(args) -> None:
    tokenizer = _tokenizer(args)
    ids = tokenizer.encode(args.input)
    if args.output:
        Path(args.output).write_text(json.dumps({"tokenizer": tokenizer.to_json(), "ids": ids.tolist()}))
    notes = int(np.isin(tokenizer.token_types(ids), (TokenType.PITCH, TokenType.DRUM_PITCH)).sum())
    print(f"{args.input}: {len(ids)} tokens, {notes} notes, {len(ids) / max(notes, 1):.2f} tokens/note"
          + (f" -> {args.output}" if args.output else " (write them with -o OUT.json)"))
    if args.ids:
        print(" ".join(map(str, ids.tolist())))


def cmd_decode(args) -> None:
    try:
        data = json.loads(Path(args.input).read_text())
        ids = np.asarray(data["ids"], dtype=np.int64)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise PerTokError(f"{args.input}: not a token JSON from `pertok encode` ({error})") from None
    tokenizer = PerTok.from_json(data["tokenizer"]) if "tokenizer" in data else _tokenizer(args)
    score, report = tokenizer.decode(ids, strict=not args.lenient, report=True)
    if args.lenient and report.num_dropped and not score.note_num():  # e.g. ids cut mid-piece
        first = report.first_error
        raise PerTokError(f"{args.input}: lenient decoding kept no notes ({report.num_dropped} of "
                          f"{report.num_tokens} tokens dropped; first: {first}); nothing written")
    score.dump_midi(args.output)
    print(f"{args.input}: {score.note_num()} notes -> {args.output}"
          + (f" ({report.num_dropped} of {report.num_tokens} tokens dropped)" if report.num_dropped else ""))


def cmd_roundtrip(args) -> None:
    tokenizer = _tokenizer(args)
    ids = tokenizer.encode(args.input)
    score = tokenizer.decode(ids)
    score.dump_midi(args.output)
    print(f"{args.input}: {score.note_num()} notes, {len(ids)} tokens -> {args.output}")


def cmd_stats(args) -> None:
    tokenizer = _tokenizer(args)
    files = find_midi_files(args.midi_dir)
    start = time.perf_counter()
    results = encode_files(files, tokenizer.config, args.workers, progress=False)
    elapsed = time.perf_counter() - start
    lengths = np.array([len(ids) for _, ids, *_ in results if ids is not None])
    notes = sum(int(np.isin(tokenizer.token_types(ids), (TokenType.PITCH, TokenType.DRUM_PITCH)).sum()) for _, ids, *_ in results if ids is not None)
    skipped = [(p, e) for p, ids, e, *_ in results if ids is None]
    print(f"files        {len(files)} ({len(skipped)} skipped)")
    print(f"notes        {notes}")
    print(f"tokens       {int(lengths.sum())}")
    print(f"tokens/note  {lengths.sum() / max(notes, 1):.3f}")
    print(f"vocabulary   {tokenizer.vocab_size}")
    print(f"time         {elapsed:.2f} s")
    for path, error in skipped:
        print(f"skipped      {path}: {error}")


def cmd_align(args) -> None:
    """Align a performance to its beat annotations; print what changed."""
    from pertok.align import align_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score, report = align_file(args.input, args.beats, _tokenizer(args).config)
    for warning in caught:
        print(f"pertok: warning: {warning.message}", file=sys.stderr)
    score.dump_midi(args.output)
    print(f"{args.input}: {report.beats} beats, {report.bars} bars, meters {' '.join(report.meters)} "
          f"({report.irregular_bars} irregular bars, {len(report.dropped_beats)} beats merged) -> {args.output}")
    print(f"largest change of a note's time: {report.max_shift_ms:.3f} ms ({report.max_shift_ticks:.2f} ticks)")


def cmd_build(args) -> None:
    config = _tokenizer(args).config
    store = build_store(args.midi_dir, args.out, config, args.workers, beats=args.beats)
    print(store.summary())
    for item in store.meta["skipped"]:
        print(f"skipped      {item['file']}: {item['reason']}")


def cmd_demo(args) -> None:
    """Write the built-in corpus, build its token store and print its statistics."""
    from pertok.synthetic import write_corpus
    workdir = Path(args.workdir)
    midi_dir = workdir / "corpus"
    if not midi_dir.is_dir():
        write_corpus(midi_dir, args.num_pieces, seed=0)
    store = build_store(midi_dir, workdir / "store", PerTokConfig(), args.workers)
    print(store.summary())
    print(PerTok().describe())


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m pertok", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    def command(name, function, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(function=function)
        sub.add_argument("--config", help="PerTok config JSON (a saved tokenizer or its config)")
        return sub

    sub = command("encode", cmd_encode, "MIDI -> token JSON (a summary line without -o)")
    sub.add_argument("input")
    sub.add_argument("-o", "--output")
    sub.add_argument("--ids", action="store_true", help="also print the ids, space-separated")
    sub = command("decode", cmd_decode, "token JSON -> MIDI")
    sub.add_argument("input")
    sub.add_argument("-o", "--output", required=True)
    sub.add_argument("--lenient", action="store_true", help="drop broken notes instead of failing")
    sub = command("roundtrip", cmd_roundtrip, "MIDI -> tokens -> MIDI")
    sub.add_argument("input")
    sub.add_argument("-o", "--output", required=True)
    sub = command("align", cmd_align, "MIDI + beat annotations -> MIDI whose ticks follow the beat")
    sub.add_argument("input")
    sub.add_argument("--beats", required=True, help="annotation file (ASAP format: NAME_annotations.txt)")
    sub.add_argument("-o", "--output", required=True)
    for name, function, text in (("stats", cmd_stats, "token statistics of a folder"),
                                 ("build", cmd_build, "tokenize a folder into a token store")):
        sub = command(name, function, text)
        if name == "stats":
            sub.add_argument("midi_dir")
        else:
            sub.add_argument("--midi_dir", required=True)
            sub.add_argument("--out", required=True)
            sub.add_argument("--beats", choices=("none", "auto"), default="none",
                             help="auto: align every file that has NAME_annotations.txt beside it")
        sub.add_argument("--workers", type=int, default=None)
    sub = command("demo", cmd_demo, "built-in corpus -> token store -> statistics")
    sub.add_argument("--workdir", default="runs/demo")
    sub.add_argument("--num_pieces", type=int, default=64)
    sub.add_argument("--workers", type=int, default=None)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.function(args)
    except (PerTokError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"pertok: error: {message}", file=sys.stderr)
        return 1
    return 0
