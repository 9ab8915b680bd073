"""EventTable -> token ids, vectorized: token counts per bar and event, then scatter.

Layout of a piece, per bar: `Bar [TimeSig]` then its events, each
`[TimeShift...] [Program] head [MicroTiming] [Velocity] Duration...` where head is Tempo,
Pedal, Pitch or DrumPitch; MicroTiming (notes, pedals) and Velocity (notes) only in the
full view.
"""
from __future__ import annotations

import numpy as np

from pertok.batch_table import TableBatch
from pertok.events import NOTE, PEDAL, TEMPO, EventTable
from pertok.segments import runs
from pertok.timing import split_durations
from pertok.vocab import DRUM_PROGRAM, TokenType, Vocabulary


def encode_table(table: EventTable, vocab: Vocabulary, full: bool = True) -> np.ndarray:
    """Token ids of an EventTable; `full=False` gives the composition-only view."""
    one = TableBatch(table, np.array([0, len(table.bars.starts)]), np.array([0, len(table)]))
    return encode_tables(one, vocab, full)[0]


def encode_tables(batch: TableBatch, vocab: Vocabulary, full: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of several pieces at once, concatenated, and each piece's offsets into them.

    Bars are numbered across pieces, so only two rules need to know where a piece starts:
    its first event always names its Program, and its first bar always has its TimeSig.
    """
    config = vocab.config
    table = batch.table
    first = {kind: vocab.first_id(kind) for kind in TokenType}
    num_bars = len(table.bars.starts)
    kind, bar = table.kind, table.bar
    is_note, is_pedal = kind == NOTE, kind == PEDAL

    shift_full, shift_rest = _time_shifts(table, config)
    num_shift = shift_full + (shift_rest > 0)
    tracked = kind != TEMPO
    new_track = _new_tracks(batch)

    duration_full, duration_index = split_durations(table.duration, vocab.values_duration)
    duration_full = np.where(tracked, duration_full, 0)
    has_last = tracked & (duration_index >= 0)
    num_duration = duration_full + has_last
    num_microtiming = (is_note | is_pedal) & full
    num_velocity = is_note & full
    event_counts = num_shift + new_track + 1 + num_microtiming + num_velocity + num_duration

    signature = table.bars.time_signature
    has_signature = np.zeros(num_bars, bool)
    if config.use_time_signatures:
        has_signature = np.concatenate([[True], signature[1:] != signature[:-1]])
        has_signature[batch.bar_offsets[:-1]] = True
    bar_counts = 1 + has_signature

    # Unit order: bar b, then the events of bar b.
    events_before_bar = np.searchsorted(bar, np.arange(num_bars), side="left")
    bar_unit = np.arange(num_bars) + events_before_bar
    event_unit = np.arange(len(kind)) + bar + 1
    counts = np.zeros(num_bars + len(kind), np.int64)
    counts[bar_unit], counts[event_unit] = bar_counts, event_counts
    unit_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    tokens = np.full(int(counts.sum()), -1, np.int64)

    bar_start = unit_start[bar_unit]
    tokens[bar_start] = first[TokenType.BAR]
    tokens[bar_start[has_signature] + 1] = first[TokenType.TIME_SIG] + signature[has_signature]

    events = dict(shift_full=shift_full, shift_rest=shift_rest, new_track=new_track, microtiming=num_microtiming,
                  velocity=num_velocity, duration_full=duration_full, duration_index=duration_index,
                  has_last=has_last)
    _write_events(tokens, unit_start[event_unit], table, events, vocab)
    assert (tokens >= 0).all(), "encoder left a token slot unfilled"
    token_offsets = np.append(unit_start[bar_unit[batch.bar_offsets[:-1]]], len(tokens))
    return tokens, token_offsets


def _time_shifts(table: EventTable, config) -> tuple[np.ndarray, np.ndarray]:
    """Gap from the previous event of the same bar (or the bar line), as (largest TimeShifts,
    remainder): longer gaps chain the largest TimeShift."""
    bar = table.bar
    same_bar = np.concatenate([[False], bar[1:] == bar[:-1]])
    previous_position = np.where(same_bar, np.roll(table.position, 1), 0)
    largest_shift = round(config.max_time_shift_beats * config.ticks_per_quarter)
    return np.divmod(table.position - previous_position, largest_shift)


def _new_tracks(batch: TableBatch) -> np.ndarray:
    """Events that need a Program: a note or pedal on another track than the previous one of
    its piece (the first of each piece always)."""
    table = batch.table
    tracked = table.kind != TEMPO
    last_tracked = np.maximum.accumulate(np.where(tracked, np.arange(len(tracked)), -1))
    previous_tracked = np.concatenate([[-1], last_tracked[:-1]])
    piece_start = np.repeat(batch.event_offsets[:-1], np.diff(batch.event_offsets))
    previous_tracked = np.where(previous_tracked < piece_start, -1, previous_tracked)
    return tracked & ((previous_tracked < 0) | (table.program != table.program[np.maximum(previous_tracked, 0)]))


def _write_events(tokens: np.ndarray, cursor: np.ndarray, table: EventTable, events: dict, vocab: Vocabulary) -> None:
    """Scatter each event's `[TimeShift...] [Program] head [MicroTiming] [Velocity] Duration...`
    from its first slot `cursor` on; `events` holds the per-event token counts and values."""
    config = vocab.config
    first = {kind: vocab.first_id(kind) for kind in TokenType}
    shift_full, shift_rest, new_track = events["shift_full"], events["shift_rest"], events["new_track"]
    shift_id = first[TokenType.TIME_SHIFT] - 1  # TimeShift values are 1..max units
    unit = config.time_shift_unit_ticks
    largest_shift = round(config.max_time_shift_beats * config.ticks_per_quarter)
    tokens[runs(cursor, shift_full)] = shift_id + largest_shift // unit
    has_rest = shift_rest > 0
    tokens[(cursor + shift_full)[has_rest]] = shift_id + shift_rest[has_rest] // unit
    cursor = cursor + shift_full + has_rest

    program_index = np.where(table.program == DRUM_PROGRAM, 128, table.program)
    tokens[cursor[new_track]] = first[TokenType.PROGRAM] + program_index[new_track]
    cursor = cursor + new_track

    is_drum = table.program == DRUM_PROGRAM
    head = np.where(is_drum, first[TokenType.DRUM_PITCH] + table.pitch - config.drum_pitch_range[0],
                    first[TokenType.PITCH] + table.pitch - config.pitch_range[0])
    head = np.where(table.kind == PEDAL, first[TokenType.PEDAL], head)
    head = np.where(table.kind == TEMPO, first[TokenType.TEMPO] + table.tempo, head)
    tokens[cursor] = head
    cursor = cursor + 1
    microtiming, velocity = events["microtiming"], events["velocity"]
    half_bins = config.microtiming_bins // 2
    tokens[cursor[microtiming]] = first[TokenType.MICROTIMING] + half_bins + table.microtiming[microtiming]
    cursor = cursor + microtiming
    tokens[cursor[velocity]] = first[TokenType.VELOCITY] + table.velocity[velocity]
    cursor = cursor + velocity

    duration_full, duration_index, has_last = events["duration_full"], events["duration_index"], events["has_last"]
    duration_first = first[TokenType.DURATION]
    tokens[runs(cursor, duration_full)] = duration_first + len(vocab.values_duration) - 1
    tokens[(cursor + duration_full)[has_last]] = duration_first + duration_index[has_last]
