"""Event tables -> symusic Scores: one Score per piece of a TableBatch (a single table is a batch of one).

Onsets, velocities, the grouping of events into tracks, and every piece's tempo changes and
time signatures are computed once for all pieces; per piece and per track only symusic's
objects are built, through `symusic.core`'s tick classes directly (the `symusic.Score`,
`Track` and `from_numpy` factories dispatch on the time unit at every call, which on short
pieces cost as much as the objects themselves).
"""
from __future__ import annotations

import numpy as np
import symusic
from symusic.core import (NoteTickList, PedalTickList, ScoreTick, TempoTickList, TimeSignatureTickList,
                          TrackTick)

from pertok.events import NOTE, PEDAL, TEMPO, EventTable, TableBatch
from pertok.vocab import DRUM_PROGRAM, Vocabulary

_RANKS = 129  # programs 0..127, then the drum kit
_TRACK_NAMES = [f"Program {program}" for program in range(128)] + ["Drums"]


def tables_to_scores(batch: TableBatch, vocab: Vocabulary) -> list[symusic.Score]:
    """The Score of every piece of a batch, equal to `table_to_score(batch.item(i))` (checked in the
    tests against a per-piece reference, `tests/pertok/reference.py`)."""
    config, table = vocab.config, batch.table
    onset = table.bars.starts[table.bar] + table.position + table.microtiming * config.microtiming_step_ticks
    # Only model output can put an onset before the piece starts (a negative MicroTiming on
    # the first beat); MIDI has no negative time, so such a note starts at 0.
    onset = np.maximum(onset, 0)
    scores = _scores_with_tempos_and_meters(batch, onset, vocab)
    rows, keys, note_bounds, pedal_bounds = _track_blocks(batch)
    columns = (onset, table.duration, table.pitch, table.velocity)
    if rows is not None:
        columns = tuple(column[rows] for column in columns)
    time, duration = columns[0].astype(np.int32), columns[1].astype(np.int32)
    pitch, velocity = columns[2].astype(np.int8), vocab.values_velocity.astype(np.int8)[columns[3]]
    for key, note_start, note_end, pedal_start, pedal_end in zip(keys.tolist(), *note_bounds.tolist(),
                                                                 *pedal_bounds.tolist()):
        piece, rank = divmod(key, _RANKS)
        is_drum = rank == _RANKS - 1
        track = TrackTick(_TRACK_NAMES[rank], 0 if is_drum else rank, is_drum)
        track.notes = NoteTickList.from_numpy(time[note_start:note_end], duration[note_start:note_end],
                                              pitch[note_start:note_end], velocity[note_start:note_end])
        if pedal_end > pedal_start:
            track.pedals = PedalTickList.from_numpy(time[pedal_start:pedal_end], duration[pedal_start:pedal_end])
        scores[piece].tracks.append(track)
    return scores


def _track_blocks(batch: TableBatch) -> tuple:
    """Rows grouped by (piece, track, kind), each group in row order, and per track (in the
    order its program first appears in its piece, as table_to_score) its note and pedal slices.

    Returns:
      (rows, keys, note_bounds [2, K], pedal_bounds [2, K]); rows is None when the rows are
      grouped already (each track's notes, and its pedals, one run: one track, or tracks one
      after another); a key is piece * 129 + rank (the program, 128 for drums).
    """
    table, offsets = batch.table, batch.event_offsets
    kind, program = table.kind, table.program
    # Runs of one (piece, program, kind), found from where a column changes (no per-row keys).
    changed = (program[1:] != program[:-1]) | (kind[1:] != kind[:-1])
    starts = np.union1d(np.flatnonzero(changed) + 1, offsets[:-1][offsets[:-1] < len(kind)])
    run_bounds = np.append(starts, len(kind))
    run_key = _block_key(np.searchsorted(offsets, starts, side="right") - 1, program[starts], kind[starts])
    tracked = kind[starts] != TEMPO
    track_keys, first = np.unique(run_key[tracked] // 3, return_index=True)
    keys = track_keys[np.argsort(first, kind="stable")]  # tracks by first appearance
    rows = None
    if len(np.unique(run_key[tracked])) < np.count_nonzero(tracked):  # a block split into several runs
        piece = np.repeat(np.arange(len(batch)), np.diff(offsets))
        rows = np.flatnonzero(kind != TEMPO)
        block_key = _block_key(piece[rows], program[rows], kind[rows])
        order = np.argsort(block_key, kind="stable")
        rows, block_key = rows[order], block_key[order]
        starts = np.flatnonzero(np.diff(block_key, prepend=-1))
        run_key, run_bounds = block_key[starts], np.append(starts, len(block_key))
    return rows, keys, _block_bounds(run_key, run_bounds, keys * 3 + NOTE), _block_bounds(
        run_key, run_bounds, keys * 3 + PEDAL)


def _block_key(piece: np.ndarray, program: np.ndarray, kind: np.ndarray) -> np.ndarray:
    return (piece * _RANKS + np.where(program == DRUM_PROGRAM, _RANKS - 1, program)) * 3 + kind


def _block_bounds(run_key: np.ndarray, run_bounds: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """[2, K] (start, end) of the run of each wanted key (each key one run at most; 0, 0 if none)."""
    order = np.argsort(run_key)
    position = np.minimum(np.searchsorted(run_key[order], wanted), max(len(run_key) - 1, 0))
    if not len(run_key):
        return np.zeros((2, len(wanted)), np.int64)
    run = order[position]
    found = run_key[run] == wanted
    return np.where(found, np.stack([run_bounds[run], run_bounds[run + 1]]), 0)


def _scores_with_tempos_and_meters(batch: TableBatch, onset: np.ndarray, vocab: Vocabulary) -> list:
    """An empty Score per piece with its tempo changes and time signatures (as `events`'
    `_add_tempos` and `_add_time_signatures` write them)."""
    tempo_time, tempo_mspq, tempo_bounds = _tempo_rows(batch, onset, vocab)
    meter_time, numerator, denominator, meter_bounds = _meter_rows(batch, vocab)
    scores = []
    tpq = vocab.config.ticks_per_quarter
    for tempo_start, tempo_end, meter_start, meter_end in zip(tempo_bounds[:-1].tolist(), tempo_bounds[1:].tolist(),
                                                              meter_bounds[:-1].tolist(), meter_bounds[1:].tolist()):
        score = ScoreTick(tpq)
        score.tempos = TempoTickList.from_numpy(tempo_time[tempo_start:tempo_end], tempo_mspq[tempo_start:tempo_end])
        score.time_signatures = TimeSignatureTickList.from_numpy(
            meter_time[meter_start:meter_end], numerator[meter_start:meter_end], denominator[meter_start:meter_end])
        scores.append(score)
    return scores


def _with_defaults(rows: np.ndarray, bounds: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each row goes when every piece flagged `missing` gets one default row first.

    Returns:
      (destination [len(rows)], new bounds [S + 1]).
    """
    counts = np.diff(bounds) + missing
    new_bounds = np.concatenate([[0], np.cumsum(counts)])
    piece = np.repeat(np.arange(len(counts)), np.diff(bounds))
    destination = new_bounds[piece] + missing[piece] + np.arange(len(rows)) - bounds[piece]
    return destination, new_bounds


def _tempo_rows(batch: TableBatch, onset: np.ndarray, vocab: Vocabulary) -> tuple:
    """(time, mspq, bounds [S + 1]) of every piece's tempo changes, int32; a piece with none
    at time 0 starts with the default tempo."""
    table = batch.table
    rows = np.flatnonzero(table.kind == TEMPO)
    bounds = np.searchsorted(rows, batch.event_offsets)
    at_zero = np.zeros(len(batch), bool)
    at_zero[np.searchsorted(bounds, np.flatnonzero(onset[rows] == 0), side="right") - 1] = True
    destination, new_bounds = _with_defaults(rows, bounds, ~at_zero)
    time = np.zeros(new_bounds[-1], np.int32)
    mspq = np.full(new_bounds[-1], round(6e7 / vocab.config.default_tempo), np.int32)
    time[destination] = onset[rows]
    mspq[destination] = vocab.values_tempo[table.tempo[rows]]
    return time, mspq, new_bounds


def _meter_rows(batch: TableBatch, vocab: Vocabulary) -> tuple:
    """(time, numerator, denominator, bounds [S + 1]) of every piece's time signatures: one
    at each piece's first bar and at each change; 4/4 at 0 for a piece without bars."""
    bars = batch.table.bars
    signature, offsets = bars.time_signature, batch.bar_offsets
    rows = np.flatnonzero(batch.meter_starts())
    bounds = np.searchsorted(rows, offsets)
    destination, new_bounds = _with_defaults(rows, bounds, np.diff(offsets) == 0)
    pairs = np.array(vocab.time_signatures + [(4, 4)], np.int64).reshape(-1, 2)  # index -1: 4/4
    time = np.zeros(new_bounds[-1], np.int32)
    numerator = np.full(new_bounds[-1], 4, np.uint8)
    denominator = np.full(new_bounds[-1], 4, np.uint8)
    time[destination] = bars.starts[rows]
    numerator[destination] = pairs[signature[rows], 0]
    denominator[destination] = pairs[signature[rows], 1]
    return time, numerator, denominator, new_bounds


def table_to_score(table: EventTable, vocab: Vocabulary) -> symusic.Score:
    """The Score one EventTable describes, at the tokenizer's resolution (`tables_to_scores` of one)."""
    return tables_to_scores(TableBatch.of(table), vocab)[0]
