"""Scores -> event tables: the projection onto what tokens can hold, for many scores at once.

One vectorized pass over all their notes; a single score is a batch of one (`score_to_table`).

The per-file work is what symusic forces (one `numpy()` call per track, a few attribute
reads per score) and, for the rare score whose meter changes after its start, a short Python
loop over those changes. Everything per note runs once over the concatenated rows of every
file, and in as few NumPy passes as we could make it (encoding must take less time than
symusic's parse of the same files):

- Onsets stay integers where they can: an onset `time * ticks_per_quarter / tpq` is an exact
  multiple of 1/D tick (D = tpq / gcd), and where D is a small power of two it is an exact
  float too, so snapping it is a lookup in a table of the float snapping of every such offset
  in a bar (`_snap_table`, cached): identical results, one gather instead of a dozen float
  passes. Other resolutions take the float snapping (`timing.snap_offsets`).
- Bars are runs of equal length (one per meter), so the bar of an onset is a division.
- The token order is one stable argsort of a packed int64 key, and the table's columns are
  read back out of the sorted key.

Bars of all files are numbered globally (file f's bars follow file f-1's), so sorting by
global bar keeps the files apart and in order, and the encoder needs no file column.

Every path that quantizes runs through here (encode, `PerTok.quantize`, the alignment
benchmark). A plain per-note version of the same projection lives in the tests
(`tests/pertok/reference.py`), which check this one against it exactly.
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import symusic

from pertok.config import PerTokConfig, bar_length_ticks
from pertok.errors import EmptyScoreError, InvalidScoreError, PerTokError
from pertok.events import (MAX_QPM, MIN_QPM, NOTE, PEDAL, TEMPO, EventTable, TableBatch, check_score,
                           four_four_index)
from pertok.timing import (BarMap, Spans, bar_spans, duration_tokens, lattice_snap, locate_bars, meter_cache,
                           onset_lattice, score_meter, snap_offsets, snap_to_values)
from pertok.vocab import DRUM_PROGRAM, Vocabulary


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Shifts of the packed sort key's fields, least significant first: microtiming + half
    (from bit 0), pitch, kind, track rank, not-tempo, position, bar: sorting by it is the token order
    (by bar and grid position; tempo changes first; then by track, drums last; pedals before
    notes; pitch; microtiming)."""

    pitch: int
    kind: int
    rank: int
    not_tempo: int
    position: int
    bar: int


# Per vocabulary (hashed by identity: hashing a config costs a microsecond or two), freed with it.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cached(vocab: Vocabulary, what: tuple, make):
    known = _CACHE.setdefault(vocab, {})
    if what not in known:
        known[what] = make()
    return known[what]


def _layout(vocab: Vocabulary) -> _Layout:
    return _cached(vocab, ("layout",), lambda: _make_layout(vocab.config))


def _make_layout(config: PerTokConfig) -> _Layout:
    longest_bar = max([bar_length_ticks(n, d, config.ticks_per_quarter) for d in config.time_signature_denominators
                       for n in config.time_signature_numerators] + [bar_length_ticks(4, 4, config.ticks_per_quarter)])
    pitch = (config.microtiming_bins - 1).bit_length()
    kind, rank = pitch + 7, pitch + 9
    return _Layout(pitch, kind, rank, rank + 8, rank + 9, rank + 9 + longest_bar.bit_length())


def _pack(position: np.ndarray, microtiming: np.ndarray, next_bar: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Snapped onsets as key bits: adding the result to `bar << layout.bar` gives the key's
    bar (next_bar adds one), position and microtiming fields."""
    layout = _layout(vocab)
    return ((next_bar.astype(np.int64) << layout.bar) | (position.astype(np.int64) << layout.position)
            | (microtiming.astype(np.int64) + vocab.config.microtiming_bins // 2))


def _snap_table(vocab: Vocabulary, length: int, denominator: int) -> np.ndarray:
    """`timing.lattice_snap`, `_pack`ed and cached."""
    return _cached(vocab, ("snap", length, denominator),
                   lambda: _pack(*lattice_snap(length, denominator, vocab.config), vocab))


@dataclasses.dataclass
class _Gathered:
    """Rows read from the scores, by runs (a run: one track's notes or pedals, or one score's
    tempos, in that order), and per-piece facts."""

    times: list = dataclasses.field(default_factory=list)
    durations: list = dataclasses.field(default_factory=list)
    pitches: list = dataclasses.field(default_factory=list)
    velocities: list = dataclasses.field(default_factory=list)  # tempo runs: microseconds per quarter
    runs: list = dataclasses.field(default_factory=list)  # (piece, kind, program, length)
    index: list = dataclasses.field(default_factory=list)  # position in `scores` of each piece
    tpq: list = dataclasses.field(default_factory=list)
    meters: list = dataclasses.field(default_factory=list)  # (bar-run starts, TimeSig indices) per piece
    only_notes: bool = True

    def add(self, piece: int, kind: int, program: int, time, duration=None, pitch=None, velocity=None) -> None:
        self.times.append(time)
        self.durations.append(duration)
        self.pitches.append(pitch)
        self.velocities.append(velocity)
        self.runs.append((piece, kind, program, len(time)))
        self.only_notes &= kind == NOTE


def _check(score: symusic.Score) -> None:
    """`events.check_score` (its test for notes is left to `_valid_rows`, on the rows), with the
    common case (one plausible tempo) decided without NumPy: it runs once per score."""
    tempos = score.tempos
    if len(tempos) <= 1 and 1 <= score.ticks_per_quarter <= 32767:
        mspq = tempos[0].mspq if len(tempos) else 500000
        if mspq > 0 and MIN_QPM <= 6e7 / mspq <= MAX_QPM:
            return
    check_score(score)  # raises the error, with its message (or passes: several good tempos)


def _gather(scores: list[symusic.Score], vocab: Vocabulary, errors: dict[int, Exception]) -> _Gathered:
    """Read every score's notes, pedals and tempos (symusic's per-track arrays) and meter."""
    config = vocab.config
    gathered = _Gathered()
    times, durations, pitches, velocities, runs = (gathered.times, gathered.durations, gathered.pitches,
                                                   gathered.velocities, gathered.runs)
    kept, resolutions, meters = gathered.index, gathered.tpq, gathered.meters
    projections = meter_cache(vocab)
    for index, score in enumerate(scores):
        try:
            _check(score)
        except PerTokError as error:
            errors[index] = error
            continue
        piece = len(kept)
        tracks = score.tracks
        for position in range(len(tracks)):  # indexing: iterating a symusic list is slower
            track = tracks[position]
            program = DRUM_PROGRAM if track.is_drum else int(track.program)
            notes = track.notes.numpy()
            time = notes["time"]  # (inlined `add`: this loop runs once per track of every score)
            times.append(time)
            durations.append(notes["duration"])
            pitches.append(notes["pitch"])
            velocities.append(notes["velocity"])
            runs.append((piece, NOTE, program, len(time)))
            if config.use_sustain_pedal and len(track.pedals):
                pedals = track.pedals.numpy()
                gathered.add(piece, PEDAL, program, pedals["time"], pedals["duration"])
        if config.use_tempos:
            tempos = score.tempos.numpy()
            gathered.add(piece, TEMPO, -2, tempos["time"], velocity=tempos["mspq"])
        kept.append(index)
        resolutions.append(score.ticks_per_quarter)
        meters.append(score_meter(score, vocab, projections))
    return gathered


def _concatenate(parts: list, runs: np.ndarray, dtype) -> np.ndarray:
    """One column from per-run arrays, zeros for the runs that have none."""
    if not parts:
        return np.zeros(0, dtype)
    if not any(part is None for part in parts):
        return np.concatenate(parts)
    return np.concatenate([np.zeros(length, dtype) if part is None else part
                           for part, length in zip(parts, runs[:, 3])])


def _rows(gathered: _Gathered, vocab: Vocabulary) -> tuple[dict, np.ndarray]:
    """Per-row columns (time, duration_in, pitch, velocity) and the runs [R, 4], notes
    outside the configured pitch ranges dropped."""
    config = vocab.config
    runs = np.array(gathered.runs, np.int64).reshape(-1, 4)
    rows = {"time": _concatenate(gathered.times, runs, np.int32),
            "duration_in": _concatenate(gathered.durations, runs, np.int32),
            "pitch": _concatenate(gathered.pitches, runs, np.int8),
            "velocity": _concatenate(gathered.velocities, runs, np.int8)}
    low = max(config.pitch_range[0], config.drum_pitch_range[0])
    high = min(config.pitch_range[1], config.drum_pitch_range[1])
    pitch = rows["pitch"]
    if not len(pitch) or (gathered.only_notes and low <= pitch.min() and pitch.max() <= high):
        return rows, runs  # every note inside both ranges (the default ranges hold every pitch)
    run = np.repeat(np.arange(len(runs)), runs[:, 3])
    is_drum = (runs[:, 2] == DRUM_PROGRAM)[run]
    lows = np.where(is_drum, config.drum_pitch_range[0], config.pitch_range[0])
    highs = np.where(is_drum, config.drum_pitch_range[1], config.pitch_range[1])
    keep = (runs[run, 1] != NOTE) | ((pitch >= lows) & (pitch <= highs))
    runs = runs.copy()
    runs[:, 3] = np.bincount(run[keep], minlength=len(runs))
    return {name: column[keep] for name, column in rows.items()}, runs


def _refuse(rows: dict, runs: np.ndarray, gathered: _Gathered, errors: dict, bad: np.ndarray,
            error_type: type, message: str) -> tuple:
    """Record an error for the pieces flagged in `bad`, and remove their rows and runs."""
    if not bad.any():
        return rows, runs
    for piece in np.flatnonzero(bad):
        errors[gathered.index[piece]] = error_type(message)
    keep = ~bad[runs[:, 0]]
    rows = {name: column[np.repeat(keep, runs[:, 3])] for name, column in rows.items()}
    runs = runs[keep]
    runs[:, 0] = (np.cumsum(~bad) - 1)[runs[:, 0]]
    for name in ("index", "tpq", "meters"):
        setattr(gathered, name, [value for value, b in zip(getattr(gathered, name), bad) if not b])
    return rows, runs


def _snap(u: np.ndarray, denominator: int, inexact, onset, spans: Spans, piece_rows: np.ndarray,
          row_offsets: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Global bar and `_pack`ed snapping of every onset (all pieces at once)."""
    bar, offset, per_row = locate_bars(u, denominator, spans, piece_rows, row_offsets)
    lengths = np.unique(spans.length)
    tables = [_snap_table(vocab, int(size), denominator) for size in lengths]
    if len(tables) > 1:  # one table after the other: the row's bar length picks its part
        bases = np.cumsum([0] + [len(table) for table in tables[:-1]])
        offset += per_row(bases[np.searchsorted(lengths, spans.length)])
    packed = np.take(tables[0] if len(tables) == 1 else np.concatenate(tables), offset)
    if inexact is not None:  # float snapping, as the reference does it
        row_length = per_row(spans.length)[inexact]
        bar_start = (per_row(spans.start)[inexact]
                     + (bar[inexact] - per_row(spans.first_bar)[inexact]) * row_length)
        packed[inexact] = _pack(*snap_offsets(onset - bar_start, row_length, vocab.config), vocab)
    return bar, packed


def _values(rows: dict, order: np.ndarray, kind, tpq: list, row_offsets: np.ndarray, vocab: Vocabulary):
    """Velocity index, `timing.duration_tokens` and tempo index of each event, in token order
    (sorting keeps each piece's rows in its place); velocity and duration 0 on tempo rows."""
    durations = list(duration_tokens(np.take(rows["duration_in"], order), tpq, row_offsets, vocab))
    velocity = np.take(rows["velocity"], order)
    index_of = vocab.velocity_index_of
    if kind is None:  # notes only, int8 velocities: a negative one reads the upper half (index_of[0])
        lookup = np.concatenate([index_of, np.full(128, index_of[0])]).astype(np.int32)
        return np.take(lookup, velocity.astype(np.intp)), durations, np.zeros(len(order), np.int64)
    tempo = np.zeros(len(order), np.int64)
    is_tempo = (kind == TEMPO).nonzero()[0]
    if len(is_tempo):  # nearest in log tempo; values_tempo is decreasing in mspq
        tempo[is_tempo] = snap_to_values(-np.log(velocity[is_tempo]), -np.log(vocab.values_tempo))
    velocity = index_of[np.clip(velocity, 0, 127)]
    velocity[is_tempo] = 0
    for column, value in zip(durations, (0, 0, -1)):
        column[is_tempo] = value
    return velocity, durations, tempo


def _static_key(rows: dict, runs: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The sort key's per-row constant fields: pitch, kind, track rank and not-tempo."""
    layout = _layout(vocab)
    kind, program = runs[:, 1], runs[:, 2]
    rank = np.where(kind == TEMPO, 0, np.where(program == DRUM_PROGRAM, 129, program + 1))
    per_run = (kind << layout.kind) | (rank << layout.rank) | ((kind != TEMPO).astype(np.int64) << layout.not_tempo)
    return np.repeat(per_run, runs[:, 3]) | (rows["pitch"].astype(np.int64) << layout.pitch)


_PROGRAM_OF_RANK = np.array([-2, *range(128), DRUM_PROGRAM], np.int32)


def _sorted_columns(bar: np.ndarray, packed: np.ndarray, static: np.ndarray, is_tempo, num_bars: int,
                    vocab: Vocabulary, runs: np.ndarray | None = None):
    """Stable token order (the packed key of `_Layout`) and the key fields in that order: one argsort
    of a packed int64 key (a lexsort when the bar numbers do not fit). With `runs` (one run
    of rows per piece, which sorting leaves in place) kind and program are spread from them."""
    layout = _layout(vocab)
    half = vocab.config.microtiming_bins // 2
    microtiming_mask = (1 << layout.pitch) - 1
    if is_tempo is not None:  # tempo changes have no microtiming
        packed[is_tempo] = (packed[is_tempo] & ~microtiming_mask) | half
    if num_bars < 1 << (62 - layout.bar):
        key = np.left_shift(bar, layout.bar, dtype=np.int64)
        key += packed
        key += static
        order = np.argsort(key, kind="stable")
        low = np.take(key, order)
        bar = low >> layout.bar
    else:
        low = (packed & ((1 << layout.bar) - 1)) + static
        bar = bar + (packed >> layout.bar)
        order = np.lexsort((low, bar))
        low, bar = low[order], bar[order]
    position = _field(low, layout.position, (1 << (layout.bar - layout.position)) - 1)
    microtiming = _field(low, 0, microtiming_mask)
    microtiming -= half
    if runs is None:
        kind = _field(low, layout.kind, 3)
        program = np.take(_PROGRAM_OF_RANK, _field(low, layout.rank, 255, np.intp))
    else:
        kind = np.repeat(runs[:, 1].astype(np.int32), runs[:, 3])
        program = np.repeat(runs[:, 2].astype(np.int32), runs[:, 3])
    columns = {"bar": bar, "position": position, "microtiming": microtiming, "pitch": _field(low, layout.pitch, 127),
               "kind": kind, "program": program}
    return order, columns


def _field(key: np.ndarray, shift: int, mask: int, dtype=np.int32) -> np.ndarray:
    """One field of the packed keys, as a (narrower) column: less memory for every later pass."""
    return np.bitwise_and(key >> shift if shift else key, mask, out=np.empty(len(key), dtype), casting="unsafe")


def _bars(spans: Spans, last_bar: np.ndarray, vocab: Vocabulary) -> tuple[BarMap, np.ndarray]:
    """Each piece's bars up to the one of its last event, concatenated, and the bar offsets."""
    if spans.single:
        kept = last_bar + 1 - spans.first_bar
    else:
        kept = np.minimum(np.maximum(last_bar[spans.piece] + 1 - spans.first_bar, 0), spans.count)
    span = np.repeat(np.arange(len(kept)), kept)
    within = np.arange(len(span)) - np.repeat(np.cumsum(kept) - kept, kept)
    signature = spans.signature[span]
    bars = BarMap(spans.start[span] + within * spans.length[span], spans.length[span],
                  np.where(signature < 0, four_four_index(vocab), signature))
    per_piece = last_bar - spans.first_bar[spans.of_piece] + 1
    return bars, np.concatenate([[0], np.cumsum(per_piece)]).astype(np.int64)


def _empty_batch() -> TableBatch:
    nothing = np.zeros(0, np.int64)
    table = EventTable(BarMap(nothing, nothing, nothing), *[nothing] * 9)
    return TableBatch(table, np.zeros(1, np.int64), np.zeros(1, np.int64))


def _notes_per_piece(runs: np.ndarray, num_pieces: int) -> np.ndarray:
    return np.bincount(runs[:, 0], weights=(runs[:, 1] == NOTE) * runs[:, 3], minlength=num_pieces)


def _valid_rows(scores: list[symusic.Score], vocab: Vocabulary, errors: dict) -> tuple:
    """The rows of the scores that can be tokenized, their runs and per-piece facts."""
    gathered = _gather(scores, vocab, errors)
    notes = _notes_per_piece(np.array(gathered.runs, np.int64).reshape(-1, 4), len(gathered.index))
    rows, runs = _rows(gathered, vocab)
    rows, runs = _refuse(rows, runs, gathered, errors, notes == 0, EmptyScoreError, "the score has no notes")
    rows, runs = _refuse(rows, runs, gathered, errors, _notes_per_piece(runs, len(gathered.index)) == 0,
                         EmptyScoreError, "the score has no notes inside the configured pitch ranges")
    if len(rows["time"]) and rows["time"].min() < 0:
        before_zero = np.zeros(len(gathered.index), bool)
        before_zero[np.repeat(runs[:, 0], runs[:, 3])[rows["time"] < 0]] = True
        rows, runs = _refuse(rows, runs, gathered, errors, before_zero,
                             InvalidScoreError, "an event before time 0")
    return gathered, rows, runs


def scores_to_tables(scores: list[symusic.Score], vocab: Vocabulary) -> tuple[TableBatch, list[int], dict]:
    """Quantize many tick-time scores at once (the projection `PerTok.quantize` describes).

    Returns:
      (batch, kept, errors): the tables of the scores that could be tokenized, the indices
      (into `scores`) of those, in order, and {index: PerTokError} for the others.
    """
    config = vocab.config
    errors: dict[int, Exception] = {}
    gathered, rows, runs = _valid_rows(scores, vocab, errors)
    if not gathered.index:
        return _empty_batch(), [], errors
    if len(runs) == len(gathered.index):  # one run (track) per piece: the usual case
        piece_rows = runs[:, 3]
    else:
        piece_rows = np.bincount(runs[:, 0], weights=runs[:, 3], minlength=len(gathered.index)).astype(np.int64)
    row_offsets = np.concatenate([[0], np.cumsum(piece_rows)])
    u, denominator, inexact, onset = onset_lattice(rows["time"], gathered.tpq, piece_rows, config)
    spans = bar_spans(gathered.meters, np.maximum.reduceat(u, row_offsets[:-1]), denominator, vocab.bar_lengths)
    bar, packed = _snap(u, denominator, inexact, onset, spans, piece_rows, row_offsets, vocab)
    del u, onset  # freed early: later temporaries reuse memory that is still in the caches
    only_notes = gathered.only_notes
    is_tempo = None if only_notes else np.flatnonzero(np.repeat(runs[:, 1] == TEMPO, runs[:, 3]))
    num_bars = int(spans.first_bar[-1] + spans.count[-1])
    one_run = runs if len(runs) == len(gathered.index) else None
    order, columns = _sorted_columns(bar, packed, _static_key(rows, runs, vocab), is_tempo, num_bars, vocab, one_run)
    velocity, durations, tempo = _values(rows, order, None if only_notes else columns["kind"], gathered.tpq,
                                         row_offsets, vocab)
    last_bar = columns["bar"][row_offsets[1:] - 1]  # sorting keeps each piece's rows in place
    bars, bar_offsets = _bars(spans, last_bar, vocab)
    columns["bar"] -= np.repeat(spans.first_bar[spans.of_piece] - bar_offsets[:-1], piece_rows)
    table = EventTable(bars=bars, velocity=velocity, duration=durations[0], tempo=tempo, **columns)
    batch = TableBatch(table, bar_offsets, row_offsets.astype(np.int64), (durations[1], durations[2]))
    return batch, list(gathered.index), errors


def score_to_table(score: symusic.Score, vocab: Vocabulary) -> EventTable:
    """One tick-time score's EventTable (`scores_to_tables` of a batch of one); raises its PerTokError."""
    batch, _, errors = scores_to_tables([score], vocab)
    if errors:
        raise errors[0]
    return batch.item(0)
