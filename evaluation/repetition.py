"""How repetitive a piece is: exact repeats of 4-bar spans, and how much each bar echoes the bars before.

PerceiverS (Yi et al. 2024) says its scale-masked second cross-attention reduces "repetitive
segments" and highly autocorrelated output. This makes that measurable and comparable with real
music: a bar's pattern is the set of (onset in 16ths from the bar line, pitch) of its melodic
notes (velocity and microtiming left out, so a loop played with expression still counts as a
loop); a span is `span_bars` consecutive bar patterns; a piece's repetition is the share of its
spans, empty ones left out, whose patterns occurred as a span earlier in the piece. Exact repeats
are rare in performed music, so beside it `self_similarity` is softer: each bar's largest
Jaccard similarity with one of the `lookback` bars before it, averaged (1 for a loop, lower for
music that develops). Real performances repeat and echo too, so both are read against the same
numbers on held-out pieces, not against zero.
"""
from __future__ import annotations

import numpy as np

from evaluation.notes import PieceNotes

STEPS_PER_QUARTER = 4  # onsets rounded to 16ths


def bar_patterns(notes: PieceNotes) -> list[frozenset]:
    """Each bar's set of (16th after the bar line, pitch) of its melodic notes."""
    melodic = notes.melodic
    lines = notes.bar_lines_ticks
    bar = np.searchsorted(lines, melodic.onset_ticks, side="right") - 1
    step = np.round((melodic.onset_ticks - lines[bar]) * STEPS_PER_QUARTER / notes.ticks_per_quarter).astype(np.int64)
    patterns: list[set] = [set() for _ in range(len(lines) - 1)]
    for b, s, p in zip(bar.tolist(), step.tolist(), melodic.pitch.tolist()):
        if 0 <= b < len(patterns):
            patterns[b].add((s, p))
    return [frozenset(pattern) for pattern in patterns]


def repetition(notes: PieceNotes, span_bars: int = 4) -> float | None:
    """Share of non-empty `span_bars`-bar spans that repeat an earlier span; None without one."""
    patterns = bar_patterns(notes)
    seen, spans, repeats = set(), 0, 0
    for start in range(len(patterns) - span_bars + 1):
        span = tuple(patterns[start:start + span_bars])
        if not any(span):
            continue
        spans += 1
        repeats += span in seen
        seen.add(span)
    return repeats / spans if spans else None


def self_similarity(notes: PieceNotes, lookback: int = 16) -> float | None:
    """Mean over non-empty bars (after the first) of the largest Jaccard similarity of the bar's
    pattern with one of the `lookback` bars before it; None with fewer than two such bars."""
    patterns, values = bar_patterns(notes), []
    for index, pattern in enumerate(patterns):
        earlier = [other for other in patterns[max(0, index - lookback):index] if other]
        if pattern and earlier:
            values.append(max(len(pattern & other) / len(pattern | other) for other in earlier))
    return float(np.mean(values)) if values else None


def _mean(values: list) -> tuple[float | None, int]:
    values = [value for value in values if value is not None]
    return (float(np.mean(values)) if values else None), len(values)


def mean_repetition(pieces: list[PieceNotes], span_bars: int = 4, lookback: int = 16) -> dict:
    """Mean repetition and self-similarity over the pieces that have them, and how many had them."""
    repeated, with_span = _mean([repetition(piece, span_bars) for piece in pieces])
    similar, with_bars = _mean([self_similarity(piece, lookback) for piece in pieces])
    return {"mean": repeated, "pieces": with_span, "span_bars": span_bars,
            "self_similarity": similar, "self_similarity_pieces": with_bars, "lookback": lookback}
