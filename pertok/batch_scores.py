"""A TableBatch -> one symusic Score per piece (`events.table_to_score` of each, batched).

Onsets, velocities and the grouping of events into tracks are computed once for all pieces;
per piece only symusic's objects are built (a Score, a Track and `from_numpy` per track,
tempos and time signatures). On short pieces the per-piece NumPy calls of `table_to_score`
cost as much as the parse, so this is where batched decoding of short files spends less.
"""
from __future__ import annotations

import types

import numpy as np
import symusic

from pertok.batch_table import TableBatch
from pertok.events import NOTE, PEDAL, TEMPO, _add_tempos, _add_time_signatures
from pertok.timing import BarMap
from pertok.vocab import DRUM_PROGRAM, Vocabulary

_RANKS = 129  # programs 0..127, then the drum kit


def tables_to_scores(batch: TableBatch, vocab: Vocabulary) -> list[symusic.Score]:
    """The Score of every piece of a batch, equal to `table_to_score(batch.item(i))`."""
    config, table = vocab.config, batch.table
    num_pieces = len(batch)
    onset = table.bars.starts[table.bar] + table.position + table.microtiming * config.microtiming_step_ticks
    # Only model output can put an onset before the piece starts (a negative MicroTiming on
    # the first beat); MIDI has no negative time, so such a note starts at 0.
    onset = np.maximum(onset, 0)
    piece = np.repeat(np.arange(num_pieces), np.diff(batch.event_offsets))
    tracked = np.flatnonzero(table.kind != TEMPO)
    rank = np.where(table.program[tracked] == DRUM_PROGRAM, _RANKS - 1, table.program[tracked])
    track_key = piece[tracked] * _RANKS + rank
    # Tracks of a piece in the order their program first appears (as table_to_score).
    keys, first = np.unique(track_key, return_index=True)
    keys = keys[np.argsort(first, kind="stable")]
    # Rows grouped by (piece, program, kind), each group in row order: a track's notes or
    # pedals are then one contiguous slice.
    block_key = track_key * 3 + table.kind[tracked]
    order = np.argsort(block_key, kind="stable")
    rows, block_key = tracked[order], block_key[order]
    note_bounds = np.searchsorted(block_key, [keys * 3 + NOTE, keys * 3 + NOTE + 1])
    pedal_bounds = np.searchsorted(block_key, [keys * 3 + PEDAL, keys * 3 + PEDAL + 1])
    columns = {"time": onset[rows].astype(np.int32), "duration": table.duration[rows].astype(np.int32),
               "pitch": table.pitch[rows].astype(np.int8),
               "velocity": vocab.values_velocity[table.velocity[rows]].astype(np.int8)}
    scores = [symusic.Score(config.ticks_per_quarter) for _ in range(num_pieces)]
    for key, (note_start, note_end), (pedal_start, pedal_end) in zip(keys.tolist(), note_bounds.T.tolist(),
                                                                     pedal_bounds.T.tolist()):
        program = key % _RANKS
        is_drum = program == _RANKS - 1
        track = symusic.Track("Drums" if is_drum else f"Program {program}", 0 if is_drum else program, is_drum)
        notes = slice(note_start, note_end)
        track.notes = symusic.Note.from_numpy(**{name: column[notes] for name, column in columns.items()})
        if pedal_end > pedal_start:
            pedals = slice(pedal_start, pedal_end)
            track.pedals = symusic.Pedal.from_numpy(time=columns["time"][pedals], duration=columns["duration"][pedals])
        scores[key // _RANKS].tracks.append(track)
    _add_tempos_and_meters(scores, batch, onset, vocab)
    return scores


def _add_tempos_and_meters(scores: list[symusic.Score], batch: TableBatch, onset: np.ndarray,
                           vocab: Vocabulary) -> None:
    """Each piece's tempo changes and time signatures, through `events`' own writers."""
    table, bars = batch.table, batch.table.bars
    is_tempo = table.kind == TEMPO
    tempo_rows = np.flatnonzero(is_tempo)
    tempo_bounds = np.searchsorted(tempo_rows, batch.event_offsets)
    for index, score in enumerate(scores):
        rows = tempo_rows[tempo_bounds[index]:tempo_bounds[index + 1]]
        # _add_tempos reads only the kind and tempo columns of the rows it is given.
        tempos = types.SimpleNamespace(kind=table.kind[rows], tempo=table.tempo[rows])
        _add_tempos(score, tempos, onset[rows], vocab)
        first, end = batch.bar_offsets[index], batch.bar_offsets[index + 1]
        _add_time_signatures(score, BarMap(bars.starts[first:end], bars.lengths[first:end],
                                           bars.time_signature[first:end]), vocab)
