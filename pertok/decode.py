"""Token ids -> EventTable, checking PerTok's grammar without a Python loop over tokens.

A sequence is split into groups, each starting at a head token (Bar, TimeSig, TimeShift,
Tempo, Program, Pitch, DrumPitch, Pedal) and continuing with its tail (MicroTiming,
Velocity, Duration). First each group's own shape is checked; then the rules between
groups (TimeSig right after Bar, a Program before every note, drum pitches only on the
drum track, no TimeShift past the bar line). Strict parsing raises at the first broken
token; lenient parsing drops broken groups and decodes the rest.
"""
from __future__ import annotations

import dataclasses
import types as _namespace

import numpy as np

from pertok.errors import PerTokDecodeError
from pertok.events import NOTE, PEDAL, TEMPO, EventTable, four_four_index
from pertok.timing import BarMap
from pertok.vocab import DRUM_PROGRAM, TYPE_NAMES, TokenType, Vocabulary

# Plain ints: enum attribute lookups cost more than the array work on short pieces.
T = _namespace.SimpleNamespace(**{name: int(kind) for name, kind in TokenType.__members__.items()})


def _type_set(*kinds: int) -> np.ndarray:
    """Membership table indexed by token type; index -1 (not in the vocabulary) is False."""
    table = np.zeros(len(TokenType) + 1, bool)
    table[list(kinds)] = True
    return table


HEADS = [T.BAR, T.TIME_SIG, T.TIME_SHIFT, T.TEMPO, T.PROGRAM, T.PITCH, T.DRUM_PITCH, T.PEDAL]
IS_HEAD = _type_set(*HEADS)
IS_NOTE = _type_set(T.PITCH, T.DRUM_PITCH)
IS_TIMED = _type_set(T.PITCH, T.DRUM_PITCH, T.PEDAL)
IS_EVENT = _type_set(T.TEMPO, T.PITCH, T.DRUM_PITCH, T.PEDAL)
IS_PERFORMANCE = _type_set(T.MICROTIMING, T.VELOCITY)
LEADS_TO_EVENT = _type_set(T.TIME_SHIFT, T.PROGRAM, T.TEMPO, T.PITCH, T.DRUM_PITCH, T.PEDAL)
_ANY = -1  # in a tail pattern: no token expected at this offset


@dataclasses.dataclass(frozen=True)
class DecodeReport:
    """How much of a sequence was decoded: content tokens, dropped tokens, first error."""

    num_tokens: int
    num_dropped: int
    first_error: PerTokDecodeError | None

    @property
    def error_rate(self) -> float:
        return self.num_dropped / max(self.num_tokens, 1)


def _tail_patterns(full: bool) -> tuple[np.ndarray, np.ndarray]:
    """Expected tail type at offsets 1, 2, 3+ per head type, and minimum group lengths."""
    expected = np.full((len(TokenType), 4), _ANY, np.int64)
    min_length = np.ones(len(TokenType), np.int64)
    note = [T.MICROTIMING, T.VELOCITY, T.DURATION] if full else [T.DURATION] * 3
    pedal = [T.MICROTIMING, T.DURATION, T.DURATION] if full else [T.DURATION] * 3
    for head in (T.PITCH, T.DRUM_PITCH):
        expected[head, 1:] = note
        min_length[head] = 4 if full else 2
    expected[T.PEDAL, 1:] = pedal
    min_length[T.PEDAL] = 3 if full else 2
    return expected, min_length


class _Errors:
    """Collects (position, rule) of violations; keeps the earliest."""

    def __init__(self):
        self.first: tuple[int, str] | None = None

    def add(self, positions: np.ndarray, rule: str) -> None:
        if len(positions) and (self.first is None or positions.min() < self.first[0]):
            self.first = (int(positions.min()), rule)


def parse(ids: np.ndarray, vocab: Vocabulary, strict: bool = True,
          view: str = "auto") -> tuple[EventTable, DecodeReport]:
    """Parse token ids into an EventTable.

    Args:
      ids: 1-D token ids; leading PAD/BOS are skipped and everything from the first EOS on
        is ignored.
      strict: raise PerTokDecodeError at the first broken token; else drop broken groups.
      view: "full", "composition" or "auto" (full when any MicroTiming or Velocity token is
        present).
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    errors = _Errors()
    content_like = ids > 1  # not PAD (0) or BOS (1)
    start = int(np.argmax(content_like)) if content_like.any() else len(ids)
    eos = np.flatnonzero(ids[start:] == 2)
    end = start + int(eos[0]) if len(eos) else len(ids)
    position = np.arange(start, end)
    content = ids[start:end]
    in_vocab = (content >= 0) & (content < len(vocab))
    types = np.where(in_vocab, vocab.type_of[np.clip(content, 0, len(vocab) - 1)], -1)
    special = types < T.BAR
    errors.add(position[special], "PAD, BOS, MASK or an unknown id inside the sequence")
    keep = ~special
    if view == "auto":
        full = bool(IS_PERFORMANCE[types].any())
    elif view in ("full", "composition"):
        full = view == "full"
    else:
        raise ValueError(f"view must be 'full', 'composition' or 'auto', not {view!r}")

    keep &= _check_group_shapes(types, keep, position, full, errors)
    keep &= _check_context(types, content, keep, position, vocab, errors)
    keep, timing = _check_bar_overflow(types, content, keep, position, vocab, errors)
    first_error = PerTokDecodeError(*errors.first) if errors.first else None
    if strict and first_error is not None:
        raise first_error
    table = _build_table(types[keep], content[keep], vocab, full, timing)
    report = DecodeReport(num_tokens=len(content), num_dropped=int((~keep).sum()), first_error=first_error)
    return table, report


def _groups(types: np.ndarray, keep: np.ndarray):
    """Group index of each kept token (-1 before the first head) and each group's start."""
    is_head = keep & IS_HEAD[types]
    group = np.where(keep, np.cumsum(is_head) - 1, -1)
    starts = np.flatnonzero(is_head)
    return group, starts


def _check_group_shapes(types, keep, position, full, errors) -> np.ndarray:
    """Each group must be a head and exactly the tail its head asks for."""
    expected, min_length = _tail_patterns(full)
    group, starts = _groups(types, keep)
    orphan = keep & (group < 0)
    errors.add(position[orphan], "MicroTiming, Velocity or Duration without a note before it")
    if not len(starts):
        return ~orphan
    good = np.ones(len(starts), bool)
    tail = keep & (group >= 0) & ~IS_HEAD[types]
    offset = np.arange(len(types)) - starts[np.maximum(group, 0)]
    wanted = expected[types[starts[np.maximum(group, 0)]], np.clip(offset, 0, 3)]
    wrong = tail & (wanted != types)
    if wrong.any():
        first = int(np.argmax(wrong))
        actual, head = TYPE_NAMES[TokenType(types[first])], TYPE_NAMES[TokenType(types[starts[group[first]]])]
        errors.add(position[first:first + 1],
                   f"{actual} without a note or pedal before it" if wanted[first] == _ANY else
                   f"{actual} out of place: {head} expects {TYPE_NAMES[TokenType(wanted[first])]} here "
                   f"({'full' if full else 'composition'} view)")
    np.logical_and.at(good, group[wrong], False)
    member = np.flatnonzero(keep & (group >= 0))
    length = np.bincount(group[member], minlength=len(starts))
    short = length < min_length[types[starts]]
    last_member = np.zeros(len(starts), np.int64)
    np.maximum.at(last_member, group[member], member)
    # The rule shows at the token after the group's last one (or the end of the sequence).
    errors.add(position[0] + last_member[short] + 1 if len(position) else last_member[short],
               "note or pedal ends before its MicroTiming/Velocity/Duration")
    good &= ~short
    return ~orphan & ~(keep & (group >= 0) & ~good[np.maximum(group, 0)])


def _check_context(types, content, keep, position, vocab: Vocabulary, errors) -> np.ndarray:
    """Rules between groups: order around Bar, TimeSig, Program, TimeShift."""
    ok = keep.copy()
    heads = np.flatnonzero(keep & IS_HEAD[types])
    head_type = types[heads]
    previous_type = np.concatenate([[-1], head_type[:-1]])
    is_bar = head_type == T.BAR
    before_bar = np.cumsum(is_bar) == 0
    errors.add(position[heads[before_bar]], "the sequence must start with Bar")
    misplaced_signature = (head_type == T.TIME_SIG) & (previous_type != T.BAR)
    errors.add(position[heads[misplaced_signature]], "TimeSig must come right after Bar")
    bad = before_bar | misplaced_signature

    is_program = (head_type == T.PROGRAM) & ~bad
    program_value = vocab.value_of[content[heads]]
    last_program = np.maximum.accumulate(np.where(is_program, np.arange(len(heads)), -1))
    current = np.where(last_program >= 0, program_value[np.maximum(last_program, 0)], -999)
    is_note = IS_TIMED[head_type]
    no_program = is_note & (current == -999) & ~bad
    errors.add(position[heads[no_program]], "a note or pedal before any Program")
    wrong_kit = ((head_type == T.PITCH) & (current == DRUM_PROGRAM)) | (
        (head_type == T.DRUM_PITCH) & (current != DRUM_PROGRAM) & (current != -999))
    errors.add(position[heads[wrong_kit & ~bad]], "Pitch on the drum track or DrumPitch on a melodic track")
    bad |= no_program | wrong_kit

    # Look-ahead rules report where the problem shows (the next group). The lone Program or
    # TimeShift is kept when decoding leniently: it changes nothing, and dropping a Program
    # would move the notes after it onto another track.
    alive = np.flatnonzero(~bad)
    next_type = np.append(head_type[alive][1:], -1)
    next_position = np.append(position[heads[alive]][1:], position[-1] + 1 if len(position) else 0)
    lone_program = (head_type[alive] == T.PROGRAM) & ~IS_TIMED[next_type]
    errors.add(next_position[lone_program], "Program must be followed by a note or pedal")
    lone_shift = (head_type[alive] == T.TIME_SHIFT) & ~LEADS_TO_EVENT[next_type]
    errors.add(next_position[lone_shift], "TimeShift must lead to an event in the same bar")
    group, _ = _groups(types, keep)
    bad_group = np.zeros(len(heads) + 1, bool)
    bad_group[:len(heads)] = bad
    return ok & ~bad_group[group]


def _bar_lengths(types, content, vocab: Vocabulary) -> np.ndarray:
    """Length in ticks of every bar of a valid token stream (TimeSig carries over)."""
    is_bar = types == T.BAR
    bar_of = np.cumsum(is_bar) - 1
    lengths_of = vocab.bar_lengths
    signature = np.full(int(is_bar.sum()), -1, np.int64)
    is_signature = types == T.TIME_SIG
    signature[bar_of[is_signature]] = vocab.value_of[content[is_signature]]
    last = np.maximum.accumulate(np.where(signature >= 0, np.arange(len(signature)), -1))
    signature = np.where(last >= 0, signature[np.maximum(last, 0)], four_four_index(vocab))
    return signature, lengths_of[signature]


def _positions(types, content, vocab):
    """Bar index and grid position (ticks after the bar line) of every token."""
    is_bar = types == T.BAR
    bar_of = np.cumsum(is_bar) - 1
    shift = np.where(types == T.TIME_SHIFT, vocab.value_of[content], 0)
    total = np.cumsum(shift)
    at_bar_line = np.maximum.accumulate(np.where(is_bar, np.arange(len(types)), 0))
    return bar_of, total - total[at_bar_line]


def _check_bar_overflow(types, content, keep, position, vocab, errors):
    """No TimeShift may reach the next bar line; what lies past it in that bar is dropped.

    Returns:
      (keep, timing): the kept mask, and (signature, lengths, bar_of, grid_position) with
      the last two aligned to the kept tokens; dropping what lies past a bar line moves no
      kept token, so the build reuses them.
    """
    kept = np.flatnonzero(keep)
    t, c = types[kept], content[kept]
    signature, lengths = _bar_lengths(t, c, vocab)
    bar_of, grid_position = _positions(t, c, vocab)
    past = (bar_of >= 0) & (t != T.BAR)
    past[past] = grid_position[past] >= lengths[bar_of[past]]
    errors.add(position[kept[past & (t == T.TIME_SHIFT)]], "TimeShift passes the next bar line")
    out = keep.copy()
    out[kept[past]] = False
    return out, (signature, lengths, bar_of[~past], grid_position[~past])


def _build_table(types: np.ndarray, content: np.ndarray, vocab: Vocabulary, full: bool, timing) -> EventTable:
    """EventTable of a grammatical token stream, given its bars and positions."""
    config = vocab.config
    signature, lengths, bar_of, grid_position = timing
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    values = vocab.value_of[content] if len(content) else np.zeros(0, np.int64)
    is_program = types == T.PROGRAM
    last_program = np.maximum.accumulate(np.where(is_program, np.arange(len(types)), -1))
    program = np.where(last_program >= 0, values[np.maximum(last_program, 0)], -2)
    head = np.flatnonzero(IS_EVENT[types])
    kind = np.select([types[head] == T.TEMPO, types[head] == T.PEDAL], [TEMPO, PEDAL], NOTE)
    is_tracked = kind != TEMPO
    group = np.cumsum(IS_HEAD[types]) - 1
    event_of_group = np.full(group[-1] + 1 if len(group) else 0, -1)
    event_of_group[group[head]] = np.arange(len(head))
    is_duration = types == T.DURATION
    duration = np.bincount(event_of_group[group[is_duration]], weights=values[is_duration],
                           minlength=len(head)).astype(np.int64)
    microtiming = np.zeros(len(head), np.int64)
    velocity = np.full(len(head), int(np.argmin(np.abs(vocab.values_velocity - config.default_velocity))))
    if full and len(head):
        follows = np.minimum(head + 1, len(types) - 1)
        microtiming = np.where(is_tracked, values[follows], 0)
        second = np.minimum(head + 2, len(types) - 1)
        velocity = np.where(kind == NOTE, content[second] - vocab.first_id(T.VELOCITY), 0)
    return EventTable(
        bars=BarMap(starts, lengths.astype(np.int64), signature),
        kind=kind.astype(np.int64), bar=bar_of[head], position=grid_position[head],
        microtiming=microtiming, program=np.where(is_tracked, program[head], -2),
        pitch=np.where(kind == NOTE, values[head], 0),
        velocity=np.where(kind == NOTE, velocity, 0), duration=np.where(is_tracked, duration, 0),
        tempo=np.where(kind == TEMPO, content[head] - vocab.first_id(T.TEMPO), 0))
