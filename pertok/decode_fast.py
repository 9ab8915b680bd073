"""Decoding of grammatical token sequences, looking only at the group heads.

Most sequences that reach the decoder are grammatical (the encoder's, or a sampler's that
follows the grammar). In a grammatical sequence every group is a head token (Bar, TimeSig,
TimeShift, Tempo, Program, Pitch, DrumPitch, Pedal) and its tail, so the proof and the
decoding both run over the heads (about a third of the tokens):

- the order of groups is a rule on consecutive head types (one table lookup per head);
- a group's shape and track are one more lookup per head, keyed by its view and type, its
  length (the distance to the next head), the two token types after the head (MicroTiming
  and Velocity in the full view) and the kit of the Program in force; when the batch holds
  exactly as many MicroTiming and Velocity tokens as the shapes put there, and no
  PAD/BOS/EOS/MASK, every other tail token is a Duration;
- the Program in force is constant between Programs: one `repeat` per batch;
- bars, grid positions and the events' columns are read at the heads (a note's MicroTiming,
  Velocity and first Duration at fixed offsets from it; the rare further Durations apart).

Over every token only the type lookup, the head mask and a few type counts run. A batch this
path does not prove (a broken rule, an id outside the vocabulary, a TimeShift past a bar
line) gets None, and `decode.py`'s full checks find the errors and their positions; a proved
batch gives exactly the tables those checks give (tests/pertok/test_decode_batch_speedpaths.py).
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from pertok import segments
from pertok.events import TableBatch
from pertok.decode_tokens import IS_EVENT, IS_HEAD, IS_TIMED, LEADS_TO_EVENT, T, concatenated
from pertok.events import NOTE, PEDAL, TEMPO, EventTable, four_four_index
from pertok.timing import BarMap
from pertok.vocab import DRUM_PROGRAM, Vocabulary

_TYPES = 16  # type codes 0..14 and a spare; a head's table index is view * 16 + type
_NO_PROGRAM = -999


def _pair_table() -> np.ndarray:
    """[previous head type * 16 + head type]: may these heads follow each other?

    The groups between them are checked by length, so only the order of heads is left: TimeSig
    right after Bar, a TimeShift leads to an event, a Program to a note or pedal. A sequence's
    last head is followed by the next sequence's Bar, which neither of the last two allows.
    """
    allowed = np.ones((_TYPES, _TYPES), bool)
    allowed[:, T.TIME_SIG] = False
    allowed[T.BAR, T.TIME_SIG] = True
    allowed[T.TIME_SHIFT] = LEADS_TO_EVENT[:_TYPES]
    allowed[T.PROGRAM] = IS_TIMED[:_TYPES]
    return allowed.reshape(-1)


def _shape_table() -> np.ndarray:
    """[(((view * 16 + head type) * 5 + min(group length, 4)) * 16 + next type) * 16 + type after)
    * 3 + kit in force]: is this a whole group, on a track that may hold it? The next two types
    are read even past the group's end (they are the following heads then); a MicroTiming or
    Velocity anywhere else fails the count in `prove`. Kits: 0 no Program yet, 1 melodic, 2 drums.
    """
    allowed = np.zeros((2, _TYPES, 5, _TYPES, _TYPES, 3), bool)
    allowed[:, :, 1] = ~IS_TIMED[:_TYPES, None, None, None]  # other heads are alone
    for kind in (T.PITCH, T.DRUM_PITCH, T.PEDAL):
        if kind == T.PEDAL:  # Pedal MicroTiming Duration...
            allowed[1, kind, 3:, T.MICROTIMING, T.DURATION] = True
        else:  # Pitch MicroTiming Velocity Duration...
            allowed[1, kind, 4, T.MICROTIMING, T.VELOCITY] = True
        allowed[0, kind, 2, T.DURATION] = True  # Pitch Duration, then the next head
        allowed[0, kind, 3:, T.DURATION, T.DURATION] = True
    # A note or pedal needs a Program before it; Pitch a melodic one, DrumPitch the drums.
    allowed[:, [T.PITCH, T.DRUM_PITCH, T.PEDAL], ..., 0] = False
    allowed[:, T.PITCH, ..., 2] = False
    allowed[:, T.DRUM_PITCH, ..., 1] = False
    return allowed.reshape(-1)


def _first_duration() -> np.ndarray:
    """Per view * 16 + head type: offset of the group's first Duration (1 for other heads)."""
    offset = np.ones((2, _TYPES), np.int64)
    offset[1, [T.PITCH, T.DRUM_PITCH, T.PEDAL]] = [3, 3, 2]
    return offset.reshape(-1)


if not (IS_HEAD[T.BAR:T.PEDAL + 1].all() and IS_HEAD.sum() == T.PEDAL + 1 - T.BAR):
    raise ImportError("decode_fast finds heads as the TokenTypes Bar..Pedal; TokenType's order changed")
PAIR_ALLOWED = _pair_table()
LAST_ALLOWED = ~np.isin(np.arange(_TYPES), [T.TIME_SHIFT, T.PROGRAM])
SHAPE_ALLOWED = _shape_table()
FIRST_DURATION = _first_duration()
KIND_OF = np.full(_TYPES, NOTE, np.int64)
KIND_OF[T.TEMPO], KIND_OF[T.PEDAL] = TEMPO, PEDAL


@dataclasses.dataclass
class Heads:
    """The group heads of a proved batch, and what the proof found out about them."""

    index: np.ndarray  # [H] token index of each head
    type: np.ndarray  # [H] int64 TokenType
    value: np.ndarray  # [H] token value
    first: np.ndarray  # [S + 1] each sequence's first head, then H
    code: np.ndarray  # [H] view * 16 + type (view 1 = full)
    length: np.ndarray  # [H] tokens in the group
    program: np.ndarray  # [H] int16 Program value in force (_NO_PROGRAM before the first)


def prove(types: np.ndarray, index: np.ndarray, head_value: np.ndarray, bounds: np.ndarray,
          full_sequence: np.ndarray | None) -> Heads | None:
    """The heads, when every sequence obeys every rule but the bar-line one; else None.

    Args:
      types: [N] TokenType of every content token (no id outside the vocabulary).
      index: [H] the positions of the head tokens; head_value: their values.
      bounds: [S + 1] offsets of each sequence in `types`.
      full_sequence: [S] bool, the view of each sequence; None for "auto".
    """
    num_tokens = len(types)
    starts = bounds[:-1][bounds[1:] > bounds[:-1]]
    if not num_tokens or (types[starts] != T.BAR).any():  # then the first token is a head
        return None
    head_type = types[index].astype(np.int64)
    if not (PAIR_ALLOWED[head_type[:-1] * _TYPES + head_type[1:]].all() and LAST_ALLOWED[head_type[-1]]):
        return None
    first = np.searchsorted(index, bounds)
    position = index + 1
    next_type = types.take(position, mode="clip")
    position += 1
    type_after = types.take(position, mode="clip")
    if full_sequence is None:
        full_sequence = _full_when_performed(next_type == T.MICROTIMING, first)
    code = head_type + _TYPES * _per_head(full_sequence, first)
    length = np.empty_like(index)
    np.subtract(index[1:], index[:-1], out=length[:-1])
    length[-1] = num_tokens - index[-1]
    program, kit = _programs_in_force(head_type, head_value, first)
    shape = code * 5
    shape += np.minimum(length, 4)
    shape *= _TYPES
    shape += next_type
    shape *= _TYPES
    shape += type_after
    shape *= 3
    shape += kit
    if not SHAPE_ALLOWED[shape].all():
        return None
    # MicroTiming and Velocity only where the shapes put them; no PAD, BOS, EOS or MASK.
    if (np.count_nonzero(types == T.MICROTIMING) != np.count_nonzero(next_type == T.MICROTIMING)
            or np.count_nonzero(types == T.VELOCITY) != np.count_nonzero(type_after == T.VELOCITY)
            or np.count_nonzero(types < T.BAR)):
        return None
    return Heads(index, head_type, head_value, first, code, length, program)


def _per_head(full_sequence: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The view of each head (one value when all sequences share it)."""
    if full_sequence.all() or not full_sequence.any():
        return np.int64(bool(full_sequence.all()))
    return np.repeat(full_sequence.astype(np.int64), np.diff(first))


def _programs_in_force(head_type: np.ndarray, head_value: np.ndarray,
                       first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[H] value of the last Program at or before each head in its sequence, and its kit
    (0 none, 1 melodic, 2 drums)."""
    programs = np.flatnonzero(head_type == T.PROGRAM)
    # Runs of one Program in force start at each sequence (none yet) and at each Program.
    run_start = np.concatenate([first[:-1], programs])
    run_value = np.concatenate([np.full(len(first) - 1, _NO_PROGRAM), head_value[programs]])
    order = np.argsort(run_start, kind="stable")
    run_value, run_length = run_value[order], np.diff(run_start[order], append=len(head_type))
    run_kit = np.where(run_value == _NO_PROGRAM, 0, np.where(run_value == DRUM_PROGRAM, 2, 1))
    # Small types: these are per head, and programs (-999..127) and kits fit.
    return np.repeat(run_value.astype(np.int16), run_length), np.repeat(run_kit.astype(np.int8), run_length)


def parse_grammatical(sequences: list, vocab: Vocabulary, view: str) -> tuple[TableBatch, np.ndarray] | None:
    """(TableBatch, [S] content tokens per sequence) of a batch proved grammatical (nothing
    dropped, no errors), or None (then the full checks of `decode.py` decode it).

    Args:
      view: "full", "composition" or "auto" (as `decode.parse_batch`).
    """
    if view not in ("full", "composition", "auto"):
        raise ValueError(f"view must be 'full', 'composition' or 'auto', not {view!r}")
    joined = concatenated(sequences, vocab)
    if joined is None:
        return None
    content, bounds = joined
    tables = _lookups(vocab)
    if not len(content) or content.min() < 0 or content.max() >= len(vocab):
        return None
    types = tables.type_of[content]
    index = np.flatnonzero((types >= T.BAR) & (types <= T.PEDAL))  # the heads (checked below)
    head_value = tables.value_of[content[index]]
    full_sequence = None if view == "auto" else np.full(len(bounds) - 1, view == "full")
    heads = prove(types, index, head_value, bounds, full_sequence)
    if heads is None:
        return None
    timing = _timing(heads, vocab)
    if timing is None:
        return None
    table = _events(heads, timing, types, content, tables)
    return table, np.diff(bounds)


def _full_when_performed(performed: np.ndarray, first: np.ndarray) -> np.ndarray:
    """[S] view "auto": a sequence is full when a MicroTiming follows one of its heads (if it has
    performance tokens anywhere else, the proof's count fails)."""
    nonempty = np.flatnonzero(first[1:] > first[:-1])
    full = np.zeros(len(first) - 1, bool)
    full[nonempty] = np.logical_or.reduceat(performed, first[nonempty]) if len(nonempty) else False
    return full


@dataclasses.dataclass
class _Timing:
    bar_of: np.ndarray  # [H] bar of each head (bars of the whole batch)
    grid: np.ndarray  # [H] ticks after its bar line
    bars: BarMap
    bar_offsets: np.ndarray  # [S + 1]


def _timing(heads: Heads, vocab: Vocabulary) -> _Timing | None:
    """Bars (TimeSig carried over within a sequence) and grid positions; None when a
    TimeShift reaches the next bar line (positions grow only at TimeShifts)."""
    head_type, num_heads = heads.type, len(heads.type)
    bar_heads = np.flatnonzero(head_type == T.BAR)
    heads_per_bar = np.diff(bar_heads, append=num_heads)
    bar_of = np.repeat(np.arange(len(bar_heads)), heads_per_bar)
    bar_offsets = np.searchsorted(bar_heads, heads.first)
    bar_sequence = np.repeat(np.arange(len(heads.first) - 1), np.diff(bar_offsets))
    bar_first = bar_offsets[:-1][bar_sequence]
    signature = np.full(len(bar_heads), -1, np.int64)
    signatures = np.flatnonzero(head_type == T.TIME_SIG)
    signature[bar_of[signatures]] = heads.value[signatures]
    last = segments.last_true(signature >= 0, bar_first)
    signature = np.where(last >= 0, signature[np.maximum(last, 0)], four_four_index(vocab))
    lengths = vocab.bar_lengths[signature]
    total = np.cumsum(np.where(head_type == T.TIME_SHIFT, heads.value, 0))
    grid = total - np.repeat(total[bar_heads], heads_per_bar)
    if (grid >= np.repeat(lengths, heads_per_bar)).any():
        return None
    ends = segments.cumsum(lengths, bar_first)
    return _Timing(bar_of, grid, BarMap(ends - lengths, lengths, signature), bar_offsets)


def _events(heads: Heads, timing: _Timing, types: np.ndarray, content: np.ndarray,
            tables: "_Lookups") -> TableBatch:
    """The EventTable rows (tempo changes, pedals, notes) of the heads that are events."""
    event = np.flatnonzero(IS_EVENT[heads.type])
    at, code = heads.index[event], heads.code[event]
    kind = KIND_OF[heads.type[event]]
    is_tempo, is_note = kind == TEMPO, kind == NOTE
    # Most batches hold notes only: then no column needs a mask (None).
    tracked = ~is_tempo if is_tempo.any() else None
    notes = None if is_note.all() else is_note
    full = code >= _TYPES
    last = len(content) - 1
    microtiming = tables.value_of[content[np.minimum(at + 1, last)]]
    velocity = content[np.minimum(at + 2, last)] - tables.first_velocity
    if not full.all():  # notes of the composition view get the default velocity
        velocity = np.where(full, velocity, tables.default_velocity)
    program, tempo = heads.program[event].astype(np.int64), np.zeros(len(event), np.int64)
    if tracked is not None:  # tempo rows: program -2 and their Tempo index
        program, tempo = np.where(tracked, program, -2), np.where(tracked, 0, content[at] - tables.first_tempo)
    table = EventTable(
        bars=timing.bars, kind=kind, bar=timing.bar_of[event], position=timing.grid[event],
        microtiming=_masked(microtiming, full if tracked is None else full & tracked), program=program,
        pitch=_masked(heads.value[event], notes), velocity=_masked(velocity, notes),
        duration=_durations(at, code, tracked, types, content, tables), tempo=tempo)
    return TableBatch(table, timing.bar_offsets, np.searchsorted(event, heads.first))


def _durations(at: np.ndarray, code: np.ndarray, tracked: np.ndarray | None, types: np.ndarray,
               content: np.ndarray, tables: "_Lookups") -> np.ndarray:
    """Each event's Durations summed: the first at a fixed offset from its head, the rare
    further ones (a Duration right after a Duration) added apart."""
    duration = tables.value_of[content[np.minimum(at + FIRST_DURATION[code], len(content) - 1)]]
    duration = _masked(duration, tracked)
    num_tracked = len(at) if tracked is None else np.count_nonzero(tracked)
    if np.count_nonzero(types == T.DURATION) > num_tracked:
        further = np.flatnonzero((types[1:] == T.DURATION) & (types[:-1] == T.DURATION)) + 1
        np.add.at(duration, np.searchsorted(at, further, side="right") - 1, tables.value_of[content[further]])
    return duration


def _masked(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """`values` where `mask`, else 0 (mask None: everywhere)."""
    if mask is None or mask.all():
        return values
    return np.where(mask, values, 0)


@dataclasses.dataclass
class _Lookups:
    type_of: np.ndarray  # [V] int8
    value_of: np.ndarray  # [V] int64
    first_velocity: int
    first_tempo: int
    default_velocity: int  # Velocity index of notes decoded from the composition view


_LOOKUPS: "weakref.WeakKeyDictionary[Vocabulary, _Lookups]" = weakref.WeakKeyDictionary()


def _lookups(vocab: Vocabulary) -> _Lookups:
    """Per-vocabulary tables, built once."""
    if vocab not in _LOOKUPS:
        _LOOKUPS[vocab] = _Lookups(vocab.type_of.astype(np.int8), vocab.value_of,
                                   vocab.first_id(T.VELOCITY), vocab.first_id(T.TEMPO), vocab.default_velocity_index)
    return _LOOKUPS[vocab]


def grammatical(types: np.ndarray, content: np.ndarray, sequence: np.ndarray, first: np.ndarray,
                full: np.ndarray, num_sequences: int, value_of: np.ndarray) -> bool:
    """True when every sequence obeys every rule but the bar-line one (`prove` on `decode`'s columns).

    Args:
      types, content, sequence, first, full: per token as in `decode_tokens.Tokens`.
    """
    if not len(types):
        return True
    if types.min() < 0:
        return False
    bounds = segments.offsets(sequence, num_sequences)
    full_sequence = np.zeros(num_sequences, bool)
    full_sequence[sequence] = full
    index = np.flatnonzero(IS_HEAD[types])
    return prove(types, index, value_of[content[index]], bounds, full_sequence) is not None
