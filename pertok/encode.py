"""EventTable -> token ids, vectorized: token counts per bar and event, then scatter.

Layout of a piece, per bar: `Bar [TimeSig]` then its events, each
`[TimeShift...] [Program] head [MicroTiming] [Velocity] Duration...` where head is Tempo,
Pedal, Pitch or DrumPitch; MicroTiming (notes, pedals) and Velocity (notes) only in the
full view.

Speed: every token family is one scatter over all events. An optional token is written at
its slot whether the event has it or not: when it has none, that slot belongs to the
event's next token (or the next event's or bar's first), whose family is written later and
overwrites it. So no family needs a mask; the order that makes this hold is: the tail
families (`_write_tail`), then the bars, then the front families (`_write_front`). One spare
slot past the end takes the last event's spare write.
"""
from __future__ import annotations

import functools

import numpy as np

from pertok.events import TableBatch
from pertok.events import NOTE, PEDAL, TEMPO, EventTable
from pertok.segments import runs
from pertok.timing import split_durations
from pertok.vocab import DRUM_PROGRAM, TokenType, Vocabulary


def encode_table(table: EventTable, vocab: Vocabulary, full: bool = True) -> np.ndarray:
    """Token ids of an EventTable; `full=False` gives the composition-only view."""
    return encode_tables(TableBatch.of(table), vocab, full)[0]


def encode_tables(batch: TableBatch, vocab: Vocabulary, full: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (int32) of several pieces at once, concatenated, and each piece's offsets into them.

    Bars are numbered across pieces, so only two rules need to know where a piece starts:
    its first event always names its Program, and its first bar always has its TimeSig.
    """
    table = batch.table
    kind = table.kind
    only_notes = bool((kind == NOTE).all())
    shift_full, shift_rest = _time_shifts(table, vocab.config)
    new_track = _new_tracks(batch, only_notes)
    if batch.duration_tokens is None:
        duration_full, duration_index = _split_durations(table.duration, vocab)
    else:
        duration_full, duration_index = batch.duration_tokens
    if only_notes:
        microtiming = velocity = full
    else:  # tempo changes have no Duration (and no Program: _new_tracks)
        tracked = kind != TEMPO
        duration_full = np.where(tracked, duration_full, 0)
        duration_index = np.where(tracked, duration_index, -1)
        microtiming = ((kind == NOTE) | (kind == PEDAL)) & full
        velocity = (kind == NOTE) & full
    if not duration_full.any():
        duration_full = None
    # Tokens of each event: head_offset before its head, the head, then its tail.
    head_offset = (shift_rest > 0).astype(np.int32)  # (counts in int32: half the memory traffic)
    head_offset += new_track
    if shift_full is not None:
        head_offset += shift_full
    event_counts = head_offset + (duration_index >= 0)
    event_counts += 1 + microtiming + velocity  # the head and its MicroTiming, Velocity (scalars if notes only)
    if duration_full is not None:
        event_counts += duration_full
    has_signature = _bar_signatures(batch, vocab.config)
    bar_start, cursor, total = _unit_starts(table.bar, event_counts, has_signature)
    tokens = np.empty(total + 1, np.int32)  # + the spare slot
    head = cursor + head_offset
    # Families in an order where each spare write lands on a slot written later (module docstring).
    _write_tail(tokens, head, table, (microtiming, velocity, duration_full, duration_index), vocab)
    first = _first_ids(vocab)
    tokens[bar_start] = first[TokenType.BAR]
    tokens[bar_start[has_signature] + 1] = first[TokenType.TIME_SIG] + table.bars.time_signature[has_signature]
    _write_front(tokens, cursor, head, table, (shift_full, shift_rest, new_track), only_notes, vocab)
    return tokens[:total], np.append(bar_start[batch.bar_offsets[:-1]], total)


def _bar_signatures(batch: TableBatch, config) -> np.ndarray:
    """Bars that start with a TimeSig: each piece's first, and each change of meter."""
    if config.use_time_signatures:
        return batch.meter_starts()
    return np.zeros(len(batch.table.bars.time_signature), bool)


def _unit_starts(bar: np.ndarray, event_counts: np.ndarray, has_signature: np.ndarray):
    """First token slot of each bar and of each event (a bar's tokens come before its events'),
    and the number of tokens."""
    bar_counts = 1 + has_signature
    bar_tokens = np.cumsum(bar_counts)  # through each bar
    event_end = np.cumsum(event_counts, dtype=np.int64)
    cursor = event_end - event_counts
    if len(bar):
        cursor += bar_tokens[bar]
    bar_start = bar_tokens - bar_counts
    if len(bar):  # plus the tokens of the events before the bar
        events_before_bar = np.searchsorted(bar, np.arange(len(bar_counts)), side="left")
        bar_start += np.where(events_before_bar > 0, event_end[np.maximum(events_before_bar - 1, 0)], 0)
    total = int(bar_tokens[-1] if len(bar_tokens) else 0) + int(event_end[-1] if len(bar) else 0)
    return bar_start, cursor, total


def _time_shifts(table: EventTable, config) -> tuple[np.ndarray | None, np.ndarray]:
    """Gap from the previous event of the same bar (or the bar line), as (number of largest
    TimeShifts or None when no gap needs one, remainder): longer gaps chain the largest."""
    bar, position = table.bar, table.position
    gap = position.copy()
    gap[1:] -= position[:-1] * (bar[1:] == bar[:-1])
    largest_shift = config.largest_time_shift_ticks
    if gap.max(initial=0) < largest_shift:  # the usual case: no chain (a 4/4 bar holds no 4-beat gap)
        return None, gap
    shift_full = gap // largest_shift
    return shift_full, gap - shift_full * largest_shift


def _new_tracks(batch: TableBatch, only_notes: bool) -> np.ndarray:
    """Events that need a Program: a note or pedal on another track than the previous one of
    its piece (the first of each piece always)."""
    table = batch.table
    starts = batch.event_offsets[:-1]
    starts = starts[starts < len(table.kind)]
    if only_notes:
        program = table.program
        new_track = np.ones(len(program), bool)
        np.not_equal(program[1:], program[:-1], out=new_track[1:])
        new_track[starts] = True
        return new_track
    tracked = table.kind != TEMPO
    last_tracked = np.maximum.accumulate(np.where(tracked, np.arange(len(tracked)), -1))
    previous_tracked = np.concatenate([[-1], last_tracked[:-1]])
    piece_start = np.repeat(batch.event_offsets[:-1], np.diff(batch.event_offsets))
    previous_tracked = np.where(previous_tracked < piece_start, -1, previous_tracked)
    return tracked & ((previous_tracked < 0) | (table.program != table.program[np.maximum(previous_tracked, 0)]))


@functools.lru_cache(maxsize=16)
def _first_ids(vocab: Vocabulary) -> dict:
    return {kind: vocab.first_id(kind) for kind in TokenType}


@functools.lru_cache(maxsize=16)
def _duration_index_of(values: tuple) -> np.ndarray:
    """`timing.split_durations`'s last-token index of every duration up to the largest token."""
    return split_durations(np.arange(values[-1] + 1), np.array(values))[1]


def _split_durations(duration: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """`timing.split_durations`: a lookup, and the exact rule for the few longer durations."""
    values = vocab.values_duration
    full = np.zeros(len(duration), np.int64)
    index = np.take(_duration_index_of(tuple(values.tolist())), np.minimum(np.maximum(duration, 0), values[-1]))
    long = np.flatnonzero((duration > values[-1]) | (duration < 0))
    if len(long):
        full[long], index[long] = split_durations(duration[long], values)
    return full, index


def _write_tail(tokens: np.ndarray, head: np.ndarray, table: EventTable, counts: tuple, vocab: Vocabulary) -> None:
    """`[MicroTiming] [Velocity] Duration...` after each event's head slot."""
    microtiming, velocity, duration_full, duration_index = counts
    first = _first_ids(vocab)
    values = np.empty(len(head), np.int32)  # ids are computed into int32: a scatter that casts is slower
    microtiming_first = first[TokenType.MICROTIMING] + vocab.config.microtiming_bins // 2
    duration_first = first[TokenType.DURATION]
    if isinstance(microtiming, bool):  # notes only: every tail has the same layout, so tokens[k:][head]
        k = 1                          # is the k-th slot after each head, with no index arithmetic
        if microtiming:
            tokens[k:][head] = np.add(table.microtiming, microtiming_first, out=values, casting="unsafe")
            tokens[k + 1:][head] = np.add(table.velocity, first[TokenType.VELOCITY], out=values, casting="unsafe")
            k += 2
        if duration_full is None:
            tokens[k:][head] = np.add(duration_index, duration_first, out=values, casting="unsafe")
            return
        slot = head + k
    else:
        slot = head + 1
        if microtiming.any():
            tokens[slot] = np.add(table.microtiming, microtiming_first, out=values, casting="unsafe")
            slot += microtiming
        if velocity.any():
            tokens[slot] = np.add(table.velocity, first[TokenType.VELOCITY], out=values, casting="unsafe")
            slot += velocity
    if duration_full is not None:
        chained = duration_full.nonzero()[0]
        tokens[runs(slot[chained], duration_full[chained])] = duration_first + len(vocab.values_duration) - 1
        slot += duration_full
    tokens[slot] = np.add(duration_index, duration_first, out=values, casting="unsafe")


def _write_front(tokens: np.ndarray, cursor: np.ndarray, head: np.ndarray, table: EventTable, counts: tuple,
                 only_notes: bool, vocab: Vocabulary) -> None:
    """`[TimeShift...] [Program] head` of each event."""
    config = vocab.config
    shift_full, shift_rest, new_track = counts
    first = _first_ids(vocab)
    values = np.empty(len(head), np.int32)
    shift_id = first[TokenType.TIME_SHIFT] - 1  # TimeShift values are 1..max units
    if shift_full is not None:
        chained = shift_full.nonzero()[0]
        largest_shift = config.largest_time_shift_ticks
        tokens[runs(cursor[chained], shift_full[chained])] = shift_id + largest_shift // config.time_shift_unit_ticks
        cursor = cursor + shift_full
    tokens[cursor] = np.add(shift_rest // config.time_shift_unit_ticks, shift_id, out=values, casting="unsafe")
    program = table.program
    changes = new_track.nonzero()[0]
    tokens[head[changes] - 1] = first[TokenType.PROGRAM] + np.where(program[changes] == DRUM_PROGRAM, 128,
                                                                    program[changes])
    is_drum = program == DRUM_PROGRAM
    pitch_first = first[TokenType.PITCH] - config.pitch_range[0]
    drum_first = first[TokenType.DRUM_PITCH] - config.drum_pitch_range[0]
    if not is_drum.any() or is_drum.all():
        np.add(table.pitch, drum_first if len(is_drum) and is_drum[0] else pitch_first, out=values, casting="unsafe")
    else:
        np.add(table.pitch, np.where(is_drum, drum_first, pitch_first), out=values, casting="unsafe")
    if not only_notes:
        values = np.where(table.kind == PEDAL, first[TokenType.PEDAL], values)
        values = np.where(table.kind == TEMPO, first[TokenType.TEMPO] + table.tempo, values)
    tokens[head] = values
