"""Encode and decode many pieces in one vectorized pass (what `PerTok.encode_batch` runs).

Per piece, a tokenizer call is a few hundred NumPy calls whatever the piece's length, so on
short files the calls cost more than the work. Here the per-note work runs once over the
concatenated notes of every piece (pieces kept apart by their offsets) and is split at the
end; the per-file `encode`/`decode` are the batch of one, so both give the same ids and scores.

Errors: a piece that cannot be encoded or decoded never loses the rest of the batch. With
`errors="raise"` the first failing item's error is raised (with a note naming its index);
with `errors="collect"` its slot in the result holds the exception instead (a PerTokError
for bad input), so a store builder can keep the good pieces and record why the others failed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import symusic

from pertok.render import tables_to_scores
from pertok.quantize import scores_to_tables
from pertok.decode import parse_batch
from pertok.encode import encode_tables
from pertok.errors import MidiFileNotFoundError, MidiParseError, PerTokError, with_source
from pertok.vocab import Vocabulary

SCORE_TYPES = (symusic.core.ScoreTick, symusic.core.ScoreQuarter, symusic.core.ScoreSecond)
ERROR_MODES = ("raise", "collect")
# Pieces go through the vectorized pass in chunks of about this many notes (encode) or tokens
# (decode): large enough that the per-call overhead is paid rarely, small enough that the
# pass's few dozen temporary arrays stay in the CPU caches (measured with benchmarks/tokenizer.py
# on all of ASAP and Groove, 2-core machine: for encode 64k notes beat 32k and 128k (Groove
# 0.91-0.95 x parse at 64k, 0.95-0.98 at 32k, 0.99-1.02 at 128k); decode: 4x bigger chunks ran slower).
CHUNK_NOTES = 1 << 16
CHUNK_TOKENS = 1 << 16


def chunks(sizes: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) index ranges whose sizes add up to about `budget` each."""
    bounds, total, start = [], 0, 0
    for index, size in enumerate(sizes):
        if total and total + size > budget:
            bounds.append((start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        bounds.append((start, len(sizes)))
    return bounds


def load_score(path: str | os.PathLike) -> symusic.Score:
    """Read a MIDI file, turning every failure into a PerTokError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise MidiFileNotFoundError(f"{path}: no such MIDI file")
    try:
        score = symusic.Score(str(path))
    except Exception as error:  # symusic raises several types for corrupt input
        raise MidiParseError(f"{path}: not a readable MIDI file ({error})") from None
    return score


def _as_tick_score(source) -> symusic.Score:
    if isinstance(source, SCORE_TYPES):
        return source if isinstance(source, symusic.core.ScoreTick) else source.to("tick")
    return load_score(source)  # its errors already name the file


def _finish(results: list, errors: dict[int, Exception], mode: str) -> list:
    """Raise the first error (mode "raise") or put each error in its item's slot ("collect")."""
    if errors and mode == "raise":
        index = min(errors)
        error = errors[index]
        if len(results) > 1:
            error.add_note(f"(item {index} of a batch of {len(results)})")
        raise error
    for index, error in errors.items():
        results[index] = error
    return results


def _check_mode(errors: str) -> None:
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be 'raise' or 'collect', not {errors!r}")


def encode_batch(sources: Sequence, vocab: Vocabulary, full: bool = True, errors: str = "raise") -> list:
    """Token ids (int32) of each MIDI path or symusic Score, in one pass over all their notes.

    Args:
      full: the full view (else composition only).
      errors: "raise" (the first failing item's PerTokError) or "collect" (that item's slot
        holds its exception, a PerTokError for bad input; the other items are encoded as if
        it were not there). In "collect" mode even an unexpected crash stays with its item.
    """
    _check_mode(errors)
    failed: dict[int, Exception] = {}
    scores, indices = [], []
    for index, source in enumerate(sources):
        try:
            scores.append(_as_tick_score(source))
            indices.append(index)
        except Exception as error:  # symusic's conversions can raise anything
            if errors == "raise" and not isinstance(error, PerTokError):
                raise
            failed[index] = error
    results: list = [None] * len(sources)
    for first, stop in chunks([score.note_num() for score in scores], CHUNK_NOTES):
        part = scores[first:stop]
        try:
            encoded = _encode_chunk(part, vocab, full)
        except Exception:  # not bad input but a crash: find the item that causes it
            if errors == "raise" or len(part) == 1:
                raise
            encoded = [_encode_alone(score, vocab, full) for score in part]
        for index, result in zip(indices[first:stop], encoded):
            if isinstance(result, Exception):
                if isinstance(result, PerTokError) and not isinstance(sources[index], SCORE_TYPES):
                    result = with_source(result, str(sources[index]))
                failed[index] = result
            else:
                results[index] = result
    return _finish(results, failed, errors)


def _encode_chunk(scores: list, vocab: Vocabulary, full: bool) -> list:
    """Ids of each score (int32 views of one array), or its PerTokError."""
    batch, kept, table_errors = scores_to_tables(scores, vocab)
    encoded: list = [None] * len(scores)
    for position, error in table_errors.items():
        encoded[position] = error
    if len(batch):
        tokens, offsets = encode_tables(batch, vocab, full)
        offsets = offsets.tolist()  # (slicing with Python ints is faster)
        for position, start, end in zip(kept, offsets, offsets[1:]):
            encoded[position] = tokens[start:end]
    return encoded


def _encode_alone(score, vocab: Vocabulary, full: bool):
    try:
        return _encode_chunk([score], vocab, full)[0]
    except Exception as error:
        return error


def decode_batch(sequences: Sequence, vocab: Vocabulary, strict: bool = True, view: str = "auto",
                 report: bool = False, errors: str = "raise") -> list:
    """Scores of many token sequences, parsed in one pass; equal to `decode` of each.

    Args:
      strict, view, report: as in `PerTok.decode` (with report, each item is (score, report)).
      errors: "raise" (the first sequence's PerTokDecodeError in strict mode) or "collect"
        (that sequence's slot holds the error). Lenient decoding never fails.
    """
    _check_mode(errors)
    sequences = list(sequences)
    results: list = [None] * len(sequences)
    failed: dict[int, Exception] = {}
    for first, stop in chunks([np.size(ids) for ids in sequences], CHUNK_TOKENS):
        batch, reports, first_errors = parse_batch(sequences[first:stop], vocab, strict=strict, view=view)
        scores = tables_to_scores(batch, vocab)
        for position, (score, decode_report, error) in enumerate(zip(scores, reports, first_errors)):
            if strict and error is not None:
                failed[first + position] = error
            else:
                results[first + position] = (score, decode_report) if report else score
    return _finish(results, failed, errors)
