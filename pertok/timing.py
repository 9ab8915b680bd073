"""Bars from the time-signature map, and the snapping of onsets, durations and velocities.

All times here are in ticks at the tokenizer's resolution (float before snapping, int after),
except in the batch helpers (`onset_lattice`, `locate_bars`, `lattice_snap`), which keep
onsets as exact integers in 1/D ticks so that snapping them is a table lookup.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import weakref

import numpy as np

from pertok.config import PerTokConfig, bar_length_ticks
from pertok.vocab import Vocabulary

_EPS = 1e-6  # ticks; absorbs float error from tpq rescaling
MAX_DENOMINATOR = 16  # finest 1/D-tick onset lattice snapped through a table (table: bar ticks x D)


@dataclasses.dataclass(frozen=True)
class BarMap:
    """Bar lines of a piece: start tick, length and TimeSig index of each bar."""

    starts: np.ndarray  # int64 [num_bars]
    lengths: np.ndarray  # int64 [num_bars]
    time_signature: np.ndarray  # int64 [num_bars], index into Vocabulary.time_signatures (-1 = 4/4)


def project_time_signature(numerator: int, denominator: int,
                           supported: list[tuple[int, int]], tpq: int) -> int:
    """Index of the supported time signature for (numerator, denominator), -1 for 4/4.

    An exact match wins; then one with the same bar length (2/1 -> 4/2); then the one whose
    bar length is nearest. Onsets stay exact either way, since bars only anchor the grid.
    """
    if not supported:
        return -1
    if (numerator, denominator) in supported:
        return supported.index((numerator, denominator))
    wanted = numerator * 4 * tpq / max(denominator, 1)
    lengths = np.array([bar_length_ticks(n, d, tpq) for n, d in supported])
    return int(np.argmin(np.abs(lengths - wanted)))


def bar_segments(change_ticks: np.ndarray, change_signature: np.ndarray,
                 lengths_of: np.ndarray) -> tuple[list[int], list[int]]:
    """Start tick and TimeSig index of each run of equal bars.

    A change takes effect at the first bar line at or after its time (MIDI files put them on
    bar lines; a change inside a bar would leave a bar no token can describe).

    Args:
      change_ticks: float [C] sorted times of the time-signature changes.
      change_signature: int [C] TimeSig index of each change (-1 = 4/4).
      lengths_of: int [num TimeSig tokens + 1] bar length of each TimeSig, then 4/4's (index -1).
    """
    segment_starts, segment_signatures = [0], [-1]
    for tick, signature in zip(change_ticks, change_signature):
        start, length = segment_starts[-1], lengths_of[segment_signatures[-1]]
        bars_before = max(0, int(np.ceil((tick - start) / length - _EPS)))
        bar_line = start + bars_before * length
        if bar_line == start:
            segment_signatures[-1] = int(signature)  # replaces the signature at that bar line
        else:
            segment_starts.append(int(bar_line))
            segment_signatures.append(int(signature))
    return segment_starts, segment_signatures


_PROJECTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # vocabulary -> {(n, d): TimeSig}


def meter_cache(vocab: Vocabulary) -> dict:
    """The vocabulary's memo of TimeSig projections, {(numerator, denominator): index}."""
    return _PROJECTED.setdefault(vocab, {})


def _projected(numerator: int, denominator: int, vocab: Vocabulary, known: dict) -> int:
    """`project_time_signature`, memoized in `known` (hashing the list of meters costs more)."""
    index = known.get((numerator, denominator))
    if index is None:
        index = known[numerator, denominator] = project_time_signature(
            numerator, denominator, vocab.time_signatures, vocab.config.ticks_per_quarter)
    return index


def score_meter(score, vocab: Vocabulary, known: dict | None = None) -> tuple:
    """Bar runs of a symusic score: (start ticks, TimeSig index) of each, laid from the
    score's time signatures (`bar_segments`). `known`:
    `meter_cache(vocab)`, fetched once for many scores."""
    config = vocab.config
    known = meter_cache(vocab) if known is None else known
    changes = score.time_signatures
    if not config.use_time_signatures or not len(changes):
        return (0,), (-1,)
    if len(changes) == 1:
        change = changes[0]
        if change.time <= 0:  # the usual case: one meter from the start
            return (0,), (_projected(change.numerator, change.denominator, vocab, known),)
    arrays = changes.numpy()
    order = np.argsort(arrays["time"], kind="stable")
    ticks = arrays["time"][order] * (config.ticks_per_quarter / score.ticks_per_quarter)
    signature = [_projected(int(n), int(d), vocab, known)
                 for n, d in zip(arrays["numerator"][order], arrays["denominator"][order])]
    return bar_segments(ticks, signature, vocab.bar_lengths)


@dataclasses.dataclass
class Spans:
    """Runs of equal bars ("spans") of the pieces of a batch, in piece order: start tick, bar
    length, TimeSig index, piece, global index of the first bar and number of bars of each."""

    start: np.ndarray
    length: np.ndarray
    signature: np.ndarray
    piece: np.ndarray
    first_bar: np.ndarray
    count: np.ndarray
    of_piece: np.ndarray  # [num_pieces] first span of each piece
    single: bool  # one span per piece (span index == piece index)


def bar_spans(meters: list, last_onset: np.ndarray, denominator: int, lengths_of: np.ndarray) -> Spans:
    """Spans from each piece's `bar_segments` (starts, TimeSig indices); the last span of a
    piece reaches one bar past its last onset (`last_onset`, in 1/denominator ticks), which
    every snapped onset stays before. `lengths_of`: as in `bar_segments`."""
    if all(len(starts) == 1 for starts, _ in meters):  # the usual case: one meter per piece, from 0
        signature = np.array([signatures[0] for _, signatures in meters], np.int64)
        length = lengths_of[signature]
        count = np.maximum(last_onset // (length * denominator) + 2, 1)
        pieces = np.arange(len(meters))
        return Spans(np.zeros(len(meters), np.int64), length, signature, pieces, np.cumsum(count) - count, count,
                     pieces, True)
    sizes = np.array([len(starts) for starts, _ in meters], np.int64)
    start = np.array([s for starts, _ in meters for s in starts], np.int64)
    signature = np.array([s for _, signatures in meters for s in signatures], np.int64)
    length = lengths_of[signature]  # index -1 is 4/4
    piece = np.repeat(np.arange(len(meters)), sizes)
    count = np.zeros(len(start), np.int64)
    count[:-1] = (start[1:] - start[:-1]) // length[:-1]  # within a piece; each piece's last is set below
    last = np.cumsum(sizes) - 1
    count[last] = np.maximum((last_onset - start[last] * denominator) // (length[last] * denominator) + 2, 1)
    first_bar = np.cumsum(count) - count
    return Spans(start, length, signature, piece, first_bar, count, last - sizes + 1, bool((sizes == 1).all()))


def onset_lattice(time: np.ndarray, tpq: list[int], piece_rows: np.ndarray, config: PerTokConfig):
    """Onsets `time * ticks_per_quarter / tpq` as integers u in 1/D ticks.

    Such an onset is a multiple of 1/D' tick (D' = tpq / gcd); where D' is a small power of
    two the float onset is exact too. D is the largest such D' of the batch. The rows of the
    other pieces get u = floor(onset + eps) * D (their bar search's key) and keep their float
    onsets, which are returned with their row indices (else both are None).
    """
    ticks = config.ticks_per_quarter
    lattice = {r: r // math.gcd(r, ticks) for r in set(tpq)}
    exact = {r: d & (d - 1) == 0 and d <= MAX_DENOMINATOR for r, d in lattice.items()}
    denominator = max([d for r, d in lattice.items() if exact[r]], default=1)
    multiplier = {r: ticks * denominator // r if exact[r] else 0 for r in lattice}
    # int32 where every u fits (the usual case): half the memory traffic in the passes that follow
    largest_factor = max(m if m else (ticks // r + 1) * denominator for r, m in multiplier.items())
    dtype = np.int32 if len(time) and int(time.max()) * largest_factor < 1 << 31 else np.int64
    if len(multiplier) == 1 and all(exact.values()):
        return time.astype(dtype) * next(iter(multiplier.values())), denominator, None, None
    u = time.astype(dtype) * np.repeat(np.array([multiplier[r] for r in tpq], dtype), piece_rows)
    if all(exact.values()):
        return u, denominator, None, None
    inexact = np.repeat([not exact[r] for r in tpq], piece_rows).nonzero()[0]
    scale = np.repeat(ticks / np.array(tpq, np.int64), piece_rows)[inexact]
    onset = time[inexact] * scale  # as the per-note projection computes it (float ticks)
    u[inexact] = np.floor(onset + _EPS).astype(dtype) * denominator
    return u, denominator, inexact, onset


def locate_bars(u: np.ndarray, denominator: int, spans: Spans, piece_rows: np.ndarray, row_offsets: np.ndarray):
    """Global bar of each onset u (in 1/denominator ticks) and its offset from that bar line
    (same unit), all pieces at once. Also returns `per_row`, which
    spreads a per-span array over the rows."""
    if spans.single:
        per_row = functools.partial(np.repeat, repeats=piece_rows)
    else:  # find each row's span: a search in its own piece's few span starts
        span = np.repeat(spans.of_piece, piece_rows)
        for piece in np.flatnonzero(np.bincount(spans.piece) > 1):
            rows, own = slice(*row_offsets[piece:piece + 2]), spans.piece == piece
            span[rows] += np.searchsorted(spans.start[own] * denominator, u[rows], side="right") - 1

        def per_row(values: np.ndarray) -> np.ndarray:
            return values[span]
    relative = u if spans.single else u - per_row(spans.start * denominator)
    length = spans.length * denominator
    length = int(length[0]) if (length == length[0]).all() else per_row(length)
    bar = relative // length
    offset = relative - bar * length  # (NumPy's integer % and divmod are several times slower)
    bar += per_row(spans.first_bar)
    return bar, offset, per_row


def lattice_snap(length: int, denominator: int, config: PerTokConfig):
    """`snap_offsets` of the onsets k / denominator ticks into a bar of `length` ticks, for
    k = 0 .. length * denominator - 1: exact floats, so a lookup at k equals snapping an onset
    that lies k / denominator ticks after its bar line."""
    offset = np.arange(length * denominator) / denominator
    return snap_offsets(offset, np.full(len(offset), length, np.int64), config)


def snap_offsets(offset: np.ndarray, length: np.ndarray, config: PerTokConfig):
    """Snap onsets to the union grid of their bar, keeping the remainder as microtiming: (position,
    microtiming bin, whether it moved to the next
    bar line) of onsets `offset` ticks after the line of a bar `length` ticks long."""
    # Nearest of: each grid's nearest point inside the bar, and the next bar line.
    position = length.astype(np.float64)
    best = np.abs(position - offset) + _EPS  # the bar line loses ties to points inside the bar
    for step in config.grid_steps_ticks:
        candidate = np.minimum(np.round(offset / step) * step, (length // step) * step)
        distance = np.abs(candidate - offset)
        closer = distance < best
        position = np.where(closer, candidate, position)
        best = np.where(closer, distance, best)
    remainder = offset - position
    at_next_bar = position >= length
    position = np.where(at_next_bar, 0, position).astype(np.int64)
    step = config.microtiming_step_ticks
    half = config.microtiming_bins // 2
    microtiming = np.clip(np.round(remainder / step), -half, half).astype(np.int64)
    return position, microtiming, at_next_bar


def snap_to_values(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest of sorted `values` for each x (ties go to the smaller)."""
    midpoints = (values[1:] + values[:-1]) / 2
    return np.searchsorted(midpoints, x, side="left")


def quantize_durations(duration_ticks: np.ndarray, config: PerTokConfig) -> np.ndarray:
    """Nearest duration the tokens hold, in ticks, for any length.

    Up to the largest Duration token: the nearest point of the piecewise-uniform duration
    grid (anything shorter than the shortest token becomes the shortest). Longer: whole
    largest tokens plus the remainder snapped to the nearest token or to nothing, so no
    length is clipped.
    """
    tpq = config.ticks_per_quarter
    largest = round(config.duration_steps[-1][0] * tpq)
    duration = np.maximum(np.asarray(duration_ticks, np.float64), 0.0)
    whole = np.where(duration > largest + _EPS, np.floor(duration / largest + _EPS), 0.0)
    remainder = duration - whole * largest
    snapped = np.zeros_like(remainder)
    low = 0
    for bound, step in config.duration_steps:
        high, step_ticks = round(bound * tpq), round(step * tpq)
        inside = (remainder > low - _EPS) if low else (remainder >= 0)
        inside &= remainder <= high + _EPS
        nearest = low + np.clip(np.round((remainder - low) / step_ticks), 0, (high - low) // step_ticks) * step_ticks
        snapped = np.where(inside, nearest, snapped)
        low = high
    shortest = round(config.duration_steps[0][1] * tpq)
    snapped = np.where((whole == 0) & (snapped < shortest), shortest, snapped)
    return (whole * largest + snapped).astype(np.int64)


def quantize_input_durations(duration_in: np.ndarray, tpq_in: int, vocab: Vocabulary) -> np.ndarray:
    """quantize_durations of integer durations in the file's ticks, through lookup tables.

    Durations are whole ticks, so the float snapping runs once per possible value (per
    input resolution, cached) instead of once per note.
    """
    config = vocab.config
    tables = vocab.duration_tables.get(tpq_in)
    largest_in = round(config.duration_steps[-1][0] * tpq_in)
    if tables is None:
        scale = config.ticks_per_quarter / tpq_in
        ticks_in = np.arange(largest_in + 1) * scale
        short = quantize_durations(ticks_in, config)  # whole notes up to the largest token
        remainder = short.copy()
        remainder[:1] = 0  # a remainder of nothing adds no token
        remainder[1:] = quantize_durations(ticks_in[1:] + config.duration_steps[-1][0] * config.ticks_per_quarter,
                                           config) - round(config.duration_steps[-1][0] * config.ticks_per_quarter)
        tables = vocab.duration_tables[tpq_in] = (short, remainder)
    short, remainder = tables
    duration = np.maximum(duration_in.astype(np.int64), 0)
    whole = np.where(duration > largest_in, duration // largest_in, 0)
    rest = duration - whole * largest_in
    largest = round(config.duration_steps[-1][0] * config.ticks_per_quarter)
    return np.where(whole > 0, whole * largest + remainder[rest], short[rest])


def split_durations(duration_ticks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantized durations -> (count of largest Duration tokens, index of the last token or -1)."""
    largest = values[-1]
    duration = np.asarray(duration_ticks, np.int64)
    whole = np.where(duration > largest, duration // largest, 0)
    remainder = duration - whole * largest
    index = np.minimum(np.searchsorted(values, remainder), len(values) - 1)
    return whole, np.where(remainder > 0, index, -1)


_DURATION_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # vocabulary -> {tpq: table}


_TABLE_SPAN = 4  # duration tables reach this many largest Duration tokens; longer notes take the exact rules


def _duration_table(vocab: Vocabulary, resolution: int) -> tuple[np.ndarray, int]:
    """For each duration up to _TABLE_SPAN largest tokens in ticks at `resolution`: its quantized
    length (`quantize_input_durations`), number of largest Duration tokens and index
    of the last or -1 (`split_durations`), packed as (length << bits + 3) | (number << bits) |
    (index + 1); and `bits`. Cached."""
    known = _DURATION_TABLES.setdefault(vocab, {})
    if resolution not in known:
        largest_in = round(vocab.config.duration_steps[-1][0] * resolution)
        duration = quantize_input_durations(np.arange(_TABLE_SPAN * largest_in + 1), resolution, vocab)
        full, index = split_durations(duration, vocab.values_duration)
        assert full.max() < 8, "three bits hold the number of largest tokens"
        bits = len(vocab.values_duration).bit_length()
        packed = (duration << (bits + 3)) | (full << bits) | (index + 1)
        known[resolution] = packed.astype(np.int32 if packed.max() < 1 << 31 else np.int64), bits
    return known[resolution]


def duration_tokens(duration_in: np.ndarray, tpq: list, row_offsets: np.ndarray, vocab: Vocabulary):
    """Quantized duration (`quantize_input_durations`) and Duration tokens
    (`split_durations`: number of largest tokens, index of the last or -1) of each row of the
    pieces `row_offsets` delimits, whose resolutions are `tpq`: a lookup up to a few largest
    tokens, the exact rules beyond (very few notes are that long)."""
    resolutions = set(tpq)
    # mode="clip": a negative duration reads entry 0 (as max(0, d) does), a longer one is redone below
    if len(resolutions) == 1:
        table, bits = _duration_table(vocab, tpq[0])
        packed = np.take(table, duration_in, mode="clip")
        long = (duration_in >= len(table)).nonzero()[0]
    else:  # each piece's rows through its resolution's table
        dtype = np.result_type(*[_duration_table(vocab, resolution)[0] for resolution in resolutions])
        packed, long = np.empty(len(duration_in), dtype), []
        for piece, resolution in enumerate(tpq):
            start, stop = row_offsets[piece], row_offsets[piece + 1]
            table, bits = _duration_table(vocab, resolution)
            np.take(table, duration_in[start:stop], mode="clip", out=packed[start:stop])
            long.append((duration_in[start:stop] >= len(table)).nonzero()[0] + start)
        long = np.concatenate(long)
    index = packed & ((1 << bits) - 1)
    index -= 1
    full = (packed >> bits) & 7
    duration = packed >> (bits + 3)
    if len(long):  # several largest tokens: the exact rules, per resolution
        long_tpq = np.array(tpq)[np.searchsorted(row_offsets, long, side="right") - 1]
        for resolution in np.unique(long_tpq):
            at = long[long_tpq == resolution]
            exact = quantize_input_durations(duration_in[at], int(resolution), vocab)
            if exact.max() > np.iinfo(duration.dtype).max:  # absurdly long: int32 would wrap
                duration = duration.astype(np.int64)
            duration[at] = exact
            full[at], index[at] = split_durations(exact, vocab.values_duration)
    return duration, full, index
