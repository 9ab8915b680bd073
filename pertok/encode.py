"""EventTable -> token ids, vectorized: token counts per bar and event, then scatter.

Layout of a piece, per bar: `Bar [TimeSig]` then its events, each
`[TimeShift...] [Program] head [MicroTiming] [Velocity] Duration...` where head is Tempo,
Pedal, Pitch or DrumPitch; MicroTiming (notes, pedals) and Velocity (notes) only in the
full view.
"""
from __future__ import annotations

import numpy as np

from pertok.events import NOTE, PEDAL, TEMPO, EventTable
from pertok.timing import split_durations
from pertok.vocab import DRUM_PROGRAM, TokenType, Vocabulary


def runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ranges [starts[i], starts[i] + lengths[i]) without a Python loop."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    run_starts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return run_starts + np.arange(total)


def encode_table(table: EventTable, vocab: Vocabulary, full: bool = True) -> np.ndarray:
    """Token ids of an EventTable; `full=False` gives the composition-only view."""
    config = vocab.config
    first = {kind: vocab.first_id(kind) for kind in TokenType}
    num_bars = len(table.bars.starts)
    kind, bar = table.kind, table.bar
    is_note, is_pedal = kind == NOTE, kind == PEDAL

    # Time shifts: from the previous event of the same bar (or the bar line), chained.
    same_bar = np.concatenate([[False], bar[1:] == bar[:-1]])
    previous_position = np.where(same_bar, np.roll(table.position, 1), 0)
    shift = table.position - previous_position
    largest_shift = round(config.max_time_shift_beats * config.ticks_per_quarter)
    shift_full, shift_rest = np.divmod(shift, largest_shift)
    num_shift = shift_full + (shift_rest > 0)

    # Program tokens where the track differs from the previous note or pedal's track.
    tracked = kind != TEMPO
    last_tracked = np.maximum.accumulate(np.where(tracked, np.arange(len(kind)), -1))
    previous_tracked = np.concatenate([[-1], last_tracked[:-1]])
    new_track = tracked & ((previous_tracked < 0) |
                           (table.program != table.program[np.maximum(previous_tracked, 0)]))

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

    cursor = unit_start[event_unit]
    shift_id = first[TokenType.TIME_SHIFT] - 1  # TimeShift values are 1..max units
    unit = config.time_shift_unit_ticks
    tokens[runs(cursor, shift_full)] = shift_id + largest_shift // unit
    has_rest = shift_rest > 0
    tokens[(cursor + shift_full)[has_rest]] = shift_id + shift_rest[has_rest] // unit
    cursor = cursor + num_shift

    program_index = np.where(table.program == DRUM_PROGRAM, 128, table.program)
    tokens[cursor[new_track]] = first[TokenType.PROGRAM] + program_index[new_track]
    cursor = cursor + new_track

    is_drum = table.program == DRUM_PROGRAM
    head = np.where(is_drum, first[TokenType.DRUM_PITCH] + table.pitch - config.drum_pitch_range[0],
                    first[TokenType.PITCH] + table.pitch - config.pitch_range[0])
    head = np.where(is_pedal, first[TokenType.PEDAL], head)
    head = np.where(kind == TEMPO, first[TokenType.TEMPO] + table.tempo, head)
    tokens[cursor] = head
    cursor = cursor + 1
    half_bins = config.microtiming_bins // 2
    tokens[cursor[num_microtiming]] = first[TokenType.MICROTIMING] + half_bins + table.microtiming[num_microtiming]
    cursor = cursor + num_microtiming
    tokens[cursor[num_velocity]] = first[TokenType.VELOCITY] + table.velocity[num_velocity]
    cursor = cursor + num_velocity

    duration_first = first[TokenType.DURATION]
    tokens[runs(cursor, duration_full)] = duration_first + len(vocab.values_duration) - 1
    tokens[(cursor + duration_full)[has_last]] = duration_first + duration_index[has_last]
    assert (tokens >= 0).all(), "encoder left a token slot unfilled"
    return tokens
