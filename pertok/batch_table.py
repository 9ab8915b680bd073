"""Many scores -> one EventTable, in one vectorized pass over all their notes.

The per-file work is what symusic forces (one `numpy()` call per track) and the bar map of
each file's time-signature changes (a short Python loop over a handful of changes).
Everything per note (bar lookup, grid snapping, duration, velocity and tempo bins, the
token-order sort) runs once over the concatenated rows of every file. Bars of all files are
numbered globally (file f's bars follow file f-1's), so sorting by global bar keeps the
files apart and in order, and the encoder needs no file column.

This is the same projection as `events.score_to_table` (which stays as the plain per-file
reference): `decode(encode(s)) == quantize(s)` is tested, and encode runs through here.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import symusic

from pertok.errors import EmptyScoreError, InvalidScoreError, PerTokError
from pertok.events import (NOTE, PEDAL, TEMPO, EventTable, _quantize_input_durations, check_score,
                           four_four_index)
from pertok.timing import (_EPS, BarMap, bar_length_ticks, build_bar_map, project_time_signature,
                           snap_onsets, snap_to_values)
from pertok.vocab import DRUM_PROGRAM, Vocabulary


@dataclasses.dataclass
class TableBatch:
    """EventTables of several pieces, concatenated.

    `table.bar` indexes the concatenated bars; piece i owns bars
    `bar_offsets[i]:bar_offsets[i + 1]` and rows `event_offsets[i]:event_offsets[i + 1]`.
    """

    table: EventTable
    bar_offsets: np.ndarray  # int64 [num_pieces + 1]
    event_offsets: np.ndarray  # int64 [num_pieces + 1]

    def __len__(self) -> int:
        return len(self.bar_offsets) - 1

    def item(self, index: int) -> EventTable:
        """Piece `index` as a plain EventTable (bars counted from its first bar)."""
        bars, rows = slice(*self.bar_offsets[index:index + 2]), slice(*self.event_offsets[index:index + 2])
        table = self.table
        columns = {name: column[rows] for name, column in table.columns().items()}
        columns["bar"] = columns["bar"] - self.bar_offsets[index]
        return EventTable(bars=BarMap(table.bars.starts[bars], table.bars.lengths[bars],
                                      table.bars.time_signature[bars]), **columns)


@dataclasses.dataclass
class _Rows:
    """Per-segment arrays gathered from the scores (a segment: one track's notes or pedals,
    or one score's tempos), in the row order of `events._raw_events`."""

    times: list = dataclasses.field(default_factory=list)
    durations: list = dataclasses.field(default_factory=list)
    note_pitch: list = dataclasses.field(default_factory=list)
    note_velocity: list = dataclasses.field(default_factory=list)
    tempo_mspq: list = dataclasses.field(default_factory=list)
    segment: list = dataclasses.field(default_factory=list)  # (piece, kind, program, length)


def _gather(scores: list[symusic.Score], vocab: Vocabulary, errors: dict[int, Exception]) -> tuple[_Rows, list]:
    """Read every score's notes, pedals and tempos (symusic's per-track arrays)."""
    config = vocab.config
    rows, signatures = _Rows(), []
    for index, score in enumerate(scores):
        try:
            check_score(score)
        except PerTokError as error:
            errors[index] = error
            continue
        piece = len(signatures)
        for track in score.tracks:
            program = DRUM_PROGRAM if track.is_drum else int(track.program)
            notes = track.notes.numpy()
            rows.times.append(notes["time"])
            rows.durations.append(notes["duration"])
            rows.note_pitch.append(notes["pitch"])
            rows.note_velocity.append(notes["velocity"])
            rows.segment.append((piece, NOTE, program, len(notes["time"])))
            if config.use_sustain_pedal and len(track.pedals):
                pedals = track.pedals.numpy()
                rows.times.append(pedals["time"])
                rows.durations.append(pedals["duration"])
                rows.segment.append((piece, PEDAL, program, len(pedals["time"])))
        if config.use_tempos:
            tempos = score.tempos.numpy()
            rows.times.append(tempos["time"])
            rows.durations.append(np.zeros(len(tempos["time"]), np.int32))
            rows.tempo_mspq.append(tempos["mspq"])
            rows.segment.append((piece, TEMPO, -2, len(tempos["time"])))
        signatures.append((index, score.ticks_per_quarter, score.time_signatures.numpy()))
    return rows, signatures


def _columns(rows: _Rows, vocab: Vocabulary, num_pieces: int) -> dict[str, np.ndarray]:
    """One row per note, pedal and tempo of every piece, pitches outside the ranges dropped."""
    config = vocab.config
    segment = np.array(rows.segment, np.int64).reshape(-1, 4)
    length = segment[:, 3]
    kind = np.repeat(segment[:, 1], length)
    program = np.repeat(segment[:, 2], length)
    is_note = kind == NOTE
    pitch = np.zeros(len(kind), np.int64)
    velocity = np.zeros(len(kind), np.int64)
    if rows.note_pitch:
        pitch[is_note] = np.concatenate(rows.note_pitch)  # symusic gives int8
        velocity[is_note] = np.concatenate(rows.note_velocity)
    if rows.tempo_mspq:
        velocity[kind == TEMPO] = np.concatenate(rows.tempo_mspq)  # as in events._raw_events
    is_drum = program == DRUM_PROGRAM
    low = np.where(is_drum, config.drum_pitch_range[0], config.pitch_range[0])
    high = np.where(is_drum, config.drum_pitch_range[1], config.pitch_range[1])
    keep = ~is_note | ((pitch >= low) & (pitch <= high))
    piece = np.repeat(segment[:, 0], length)
    time = np.concatenate(rows.times) if rows.times else np.zeros(0, np.int32)
    duration = np.concatenate(rows.durations) if rows.durations else np.zeros(0, np.int32)
    return {"piece": piece[keep], "kind": kind[keep], "program": program[keep], "pitch": pitch[keep],
            "velocity": velocity[keep], "time": time[keep], "duration_in": duration[keep]}


@functools.lru_cache(maxsize=4096)
def _projected(numerator: int, denominator: int, supported: tuple, tpq: int) -> int:
    return project_time_signature(numerator, denominator, list(supported), tpq)


def _bar_maps(signatures: list, end_ticks: np.ndarray, vocab: Vocabulary) -> list[BarMap]:
    """Each piece's bar map, laid until past its last onset (as `score_to_table` does)."""
    config = vocab.config
    supported = tuple(vocab.time_signatures)
    default_length = bar_length_ticks(4, 4, config.ticks_per_quarter)
    maps = []
    for (_, tpq_in, changes), end_tick in zip(signatures, end_ticks):
        if config.use_time_signatures and len(changes["time"]):
            order = np.argsort(changes["time"], kind="stable")
            change_ticks = changes["time"][order] * (config.ticks_per_quarter / tpq_in)
            change_signature = np.array([
                _projected(int(n), int(d), supported, config.ticks_per_quarter)
                for n, d in zip(changes["numerator"][order], changes["denominator"][order])], np.int64)
        else:
            change_ticks, change_signature = np.zeros(0), np.zeros(0, np.int64)
        maps.append(build_bar_map(change_ticks, change_signature, vocab.bar_lengths[:-1],
                                  default_length, end_tick))
    return maps


def _drop_pieces(columns: dict, signatures: list, bad: np.ndarray) -> tuple[dict, list]:
    """Remove the rows of the pieces flagged in `bad` and renumber the rest."""
    new_index = np.cumsum(~bad) - 1
    keep = ~bad[columns["piece"]]
    columns = {name: column[keep] for name, column in columns.items()}
    columns["piece"] = new_index[columns["piece"]]
    return columns, [s for s, b in zip(signatures, bad) if not b]


def _refuse(columns: dict, signatures: list, errors: dict, bad: np.ndarray, error_type, message: str):
    for piece in np.flatnonzero(bad):
        errors[signatures[piece][0]] = error_type(message)
    return _drop_pieces(columns, signatures, bad) if bad.any() else (columns, signatures)


def _concatenate_bars(maps: list[BarMap], vocab: Vocabulary) -> tuple[BarMap, np.ndarray]:
    """All pieces' bars in one BarMap (starts stay in each piece's ticks), and bar offsets."""
    counts = np.array([len(m.starts) for m in maps], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    signature = np.concatenate([m.time_signature for m in maps]) if maps else np.zeros(0, np.int64)
    bars = BarMap(np.concatenate([m.starts for m in maps]) if maps else np.zeros(0, np.int64),
                  np.concatenate([m.lengths for m in maps]) if maps else np.zeros(0, np.int64),
                  np.where(signature < 0, four_four_index(vocab), signature))
    return bars, offsets


def _find_bars(onset: np.ndarray, piece: np.ndarray, bars: BarMap, bar_offsets: np.ndarray) -> np.ndarray:
    """Global index of the bar holding each onset: `timing.snap_onsets`'s search, all pieces at once.

    Bar starts are whole ticks, so `start <= onset + eps` iff `start <= floor(onset + eps)`:
    the search runs on integer keys made global by a per-piece base, which is exact (adding
    the base to the float onsets would round them).
    """
    bar_ends = bars.starts + bars.lengths
    span = bar_ends[bar_offsets[1:] - 1] if len(bar_ends) else np.zeros(0, np.int64)
    base = np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64)
    global_starts = bars.starts + np.repeat(base, np.diff(bar_offsets))
    keys = base[piece] + np.floor(onset + _EPS).astype(np.int64)
    return np.searchsorted(global_starts, keys, side="right") - 1


def _durations(duration_in: np.ndarray, tpq_in: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Quantized durations; the lookup tables are per file resolution, so one call per resolution."""
    resolutions = np.unique(tpq_in)
    if len(resolutions) == 1:
        return _quantize_input_durations(duration_in, int(resolutions[0]), vocab)
    duration = np.zeros(len(duration_in), np.int64)
    for resolution in resolutions:
        rows = tpq_in == resolution
        duration[rows] = _quantize_input_durations(duration_in[rows], int(resolution), vocab)
    return duration


def _token_order(columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """Stable lexicographic order, last column first (`events.token_order`'s order).

    The columns are packed into one int64 key with widths fitted to this batch (a global bar
    index needs more bits than one piece's), which sorts several times faster than lexsort.
    """
    widths = [int(c.max(initial=0)).bit_length() for c in columns]
    if sum(widths) > 63:
        return np.lexsort(columns)
    key = np.zeros(len(columns[0]), np.int64)
    shift = 0
    for column, width in zip(columns, widths):
        key |= column.astype(np.int64) << shift
        shift += width
    return np.argsort(key, kind="stable")


def _empty_batch() -> TableBatch:
    nothing = np.zeros(0, np.int64)
    table = EventTable(BarMap(nothing, nothing, nothing), *[nothing] * 9)
    return TableBatch(table, np.zeros(1, np.int64), np.zeros(1, np.int64))


def scores_to_tables(scores: list[symusic.Score], vocab: Vocabulary) -> tuple[TableBatch, list[int], dict]:
    """Quantize many tick-time scores at once (the projection of `events.score_to_table`).

    Returns:
      (batch, kept, errors): the tables of the scores that could be tokenized, the indices
      (into `scores`) of those, in order, and {index: PerTokError} for the others.
    """
    config = vocab.config
    errors: dict[int, Exception] = {}
    rows, signatures = _gather(scores, vocab, errors)
    columns = _columns(rows, vocab, len(signatures))
    is_note = columns["kind"] == NOTE
    no_notes = np.bincount(columns["piece"][is_note], minlength=len(signatures)) == 0
    columns, signatures = _refuse(columns, signatures, errors, no_notes, EmptyScoreError,
                                  "the score has no notes inside the configured pitch ranges")
    negative = np.zeros(len(signatures), bool)
    negative[columns["piece"][columns["time"] < 0]] = True
    columns, signatures = _refuse(columns, signatures, errors, negative, InvalidScoreError,
                                  "an event before time 0")
    if not signatures:
        return _empty_batch(), [], errors
    piece = columns["piece"]
    tpq_in = np.array([s[1] for s in signatures], np.int64)
    onset = columns["time"] * (config.ticks_per_quarter / tpq_in)[piece]
    row_offsets = np.concatenate([[0], np.cumsum(np.bincount(piece, minlength=len(signatures)))])
    end_ticks = np.maximum.reduceat(onset, row_offsets[:-1])
    bars, bar_offsets = _concatenate_bars(_bar_maps(signatures, end_ticks, vocab), vocab)
    bar = _find_bars(onset, piece, bars, bar_offsets)
    bar, position, microtiming = snap_onsets(onset, bars, config, bar=bar)
    kind = columns["kind"]
    is_tempo = kind == TEMPO
    microtiming = np.where(is_tempo, 0, microtiming)
    duration = np.where(is_tempo, 0, _durations(columns["duration_in"], tpq_in[piece], vocab))
    velocity = np.where(is_tempo, 0, vocab.velocity_index_of[np.clip(columns["velocity"], 0, 127)])
    tempo = np.zeros(len(kind), np.int64)
    if is_tempo.any():  # nearest in log tempo; values_tempo is decreasing in mspq
        tempo[is_tempo] = snap_to_values(-np.log(columns["velocity"][is_tempo]), -np.log(vocab.values_tempo))
    program, pitch = columns["program"], columns["pitch"]
    track_rank = np.where(is_tempo, 0, np.where(program == DRUM_PROGRAM, 129, program + 1))
    order = _token_order((microtiming + config.microtiming_bins // 2, pitch, kind, track_rank, ~is_tempo,
                          position, bar))
    # Each piece keeps its bars up to the one of its last event.
    last_bar = np.maximum.reduceat(bar, row_offsets[:-1])
    bar_piece = np.repeat(np.arange(len(signatures)), np.diff(bar_offsets))
    kept_bar = np.arange(len(bars.starts)) <= last_bar[bar_piece]
    new_bar = np.cumsum(kept_bar) - 1
    bar_offsets = np.concatenate([[0], np.cumsum(last_bar - bar_offsets[:-1] + 1)]).astype(np.int64)
    table = EventTable(
        bars=BarMap(bars.starts[kept_bar], bars.lengths[kept_bar], bars.time_signature[kept_bar]),
        kind=kind[order], bar=new_bar[bar[order]], position=position[order], microtiming=microtiming[order],
        program=program[order], pitch=pitch[order], velocity=velocity[order], duration=duration[order],
        tempo=tempo[order])
    kept = [s[0] for s in signatures]
    return TableBatch(table, bar_offsets, row_offsets.astype(np.int64)), kept, errors
