"""Token ids -> EventTable, checking PerTok's grammar without a Python loop over tokens.

A sequence is split into groups, each starting at a head token (Bar, TimeSig, TimeShift,
Tempo, Program, Pitch, DrumPitch, Pedal) and continuing with its tail (MicroTiming,
Velocity, Duration). First each group's own shape is checked; then the rules between
groups (TimeSig right after Bar, a Program before every note, drum pitches only on the
drum track, no TimeShift past the bar line). Strict parsing raises at the first broken
token; lenient parsing drops broken groups and decodes the rest.

Several sequences parse in one pass: their tokens lie back to back, and every rule that
looks back (the group a tail belongs to, the Program or TimeSig in force, the bar line)
stops at its sequence's first token (`pertok.segments`). One sequence is a batch of one.

A batch is first offered to `decode_fast.parse_grammatical`, which proves most batches
grammatical (and decodes them) looking at the group heads only; the checks here run on the
batches it declines, to find the errors and decode leniently.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pertok import segments
from pertok.events import TableBatch
from pertok.decode_fast import parse_grammatical
from pertok.decode_tokens import IS_EVENT, IS_HEAD, IS_TIMED, LEADS_TO_EVENT, T, Tokens, content_of, subset
from pertok.errors import PerTokDecodeError
from pertok.events import NOTE, PEDAL, TEMPO, EventTable, four_four_index
from pertok.timing import BarMap
from pertok.vocab import DRUM_PROGRAM, TYPE_NAMES, TokenType, Vocabulary

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


# [composition view, full view] stacked, indexed by each token's sequence's view.
_PATTERNS = [_tail_patterns(False), _tail_patterns(True)]
EXPECTED = np.stack([p[0] for p in _PATTERNS])
MIN_LENGTH = np.stack([p[1] for p in _PATTERNS])
_NONE = np.iinfo(np.int64).max


class _Errors:
    """Collects (position, rule) of violations per sequence; keeps each sequence's earliest."""

    def __init__(self, num_sequences: int):
        self.position = np.full(num_sequences, _NONE, np.int64)
        self.rule: list[str | None] = [None] * num_sequences

    def add(self, sequence: np.ndarray, position: np.ndarray, rule) -> None:
        """`rule`: the message, or a function of the sequence index that makes it."""
        if not len(position):
            return
        earliest = np.full(len(self.position), _NONE, np.int64)
        np.minimum.at(earliest, sequence, position)
        for index in np.flatnonzero(earliest < self.position):
            self.position[index] = earliest[index]
            self.rule[index] = rule if isinstance(rule, str) else rule(index)

    def error(self, index: int) -> PerTokDecodeError | None:
        return PerTokDecodeError(int(self.position[index]), self.rule[index]) if self.rule[index] else None


def parse_batch(sequences: list, vocab: Vocabulary, strict: bool = True, view: str = "auto"):
    """Parse several token sequences in one pass.

    Returns:
      (batch, reports, errors): a TableBatch with one piece per sequence (empty for a
      sequence that failed in strict mode), a DecodeReport per sequence, and per sequence
      its first PerTokDecodeError or None.
    """
    proved = parse_grammatical(sequences, vocab, view)
    if proved is not None:  # the full checks would find nothing
        table, num_tokens = proved
        reports = [DecodeReport(num_tokens=n, num_dropped=0, first_error=None) for n in num_tokens.tolist()]
        return table, reports, [None] * len(reports)
    tokens = content_of(sequences, vocab, view)
    errors = _Errors(tokens.num_sequences)
    keep = _check_rules(tokens, vocab, errors)
    checked, timing = _check_bar_overflow(tokens, keep, vocab, errors)
    failed = errors.position < _NONE
    if strict and failed.any():  # a failed sequence decodes to nothing; the others are untouched
        checked, timing = _check_bar_overflow(tokens, keep & ~failed[tokens.sequence], vocab,
                                              _Errors(tokens.num_sequences))
    table = _build_table(tokens, checked, vocab, timing)
    dropped = np.bincount(tokens.sequence[~checked], minlength=tokens.num_sequences)
    num_tokens = np.bincount(tokens.sequence, minlength=tokens.num_sequences)
    first_errors = [errors.error(i) for i in range(tokens.num_sequences)]
    reports = [DecodeReport(num_tokens=int(n), num_dropped=int(d), first_error=e)
               for n, d, e in zip(num_tokens, dropped, first_errors)]
    return table, reports, first_errors


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
    batch, reports, errors = parse_batch([ids], vocab, strict=strict, view=view)
    if strict and errors[0] is not None:
        raise errors[0]
    return batch.item(0), reports[0]


def _check_rules(tokens: Tokens, vocab: Vocabulary, errors: _Errors) -> np.ndarray:
    """Every rule but the bar-line one; the tokens that survive them (all, for a grammatical batch)."""
    special = tokens.types < T.BAR
    errors.add(tokens.sequence[special], tokens.position[special],
               "PAD, BOS, MASK or an unknown id inside the sequence")
    keep = ~special
    keep &= _check_group_shapes(tokens, keep, errors)
    return keep & _check_context(tokens, keep, vocab, errors)


def _check_group_shapes(tokens: Tokens, keep: np.ndarray, errors: _Errors) -> np.ndarray:
    """Each group must be a head and exactly the tail its head asks for."""
    types, position, sequence = tokens.types, tokens.position, tokens.sequence
    is_head = keep & IS_HEAD[types]
    group = np.cumsum(is_head) - 1
    heads_before = segments.count_before(sequence[is_head], tokens.num_sequences)
    orphan = keep & (group < heads_before[sequence])  # a tail before its sequence's first head
    group = np.where(keep & ~orphan, group, -1)
    errors.add(sequence[orphan], position[orphan], "MicroTiming, Velocity or Duration without a note before it")
    starts = np.flatnonzero(is_head)
    if not len(starts):
        return ~orphan
    good = np.ones(len(starts), bool)
    tail = (group >= 0) & ~IS_HEAD[types]
    head_of = starts[np.maximum(group, 0)]
    offset = np.arange(len(types)) - head_of
    view = tokens.full.astype(np.int64)
    wanted = EXPECTED[view, types[head_of], np.clip(offset, 0, 3)]
    wrong = tail & (wanted != types)
    if wrong.any():
        _add_wrong_tails(tokens, np.flatnonzero(wrong), head_of, wanted, errors)
        good[group[wrong]] = False
    # The table is built from the kept tokens, so the tail must fit at its offsets among them
    # too: a dropped PAD/MASK in place of a Velocity, say, would move a Duration into its
    # slot. No error is added: the dropped token, earlier in the group, is reported.
    kept_rank = np.cumsum(keep)
    shifted = tail & (EXPECTED[view, types[head_of], np.clip(kept_rank - kept_rank[head_of], 0, 3)] != types)
    good[group[shifted]] = False
    member = np.flatnonzero(group >= 0)
    length = np.bincount(group[member], minlength=len(starts))
    short = length < MIN_LENGTH[tokens.full[starts].astype(np.int64), types[starts]]
    # Groups are numbered in token order, so a group's last member is found by a search.
    last_member = member[np.searchsorted(group[member], np.arange(len(starts)), side="right") - 1]
    # The rule shows at the token after the group's last one (or the end of the sequence).
    errors.add(sequence[starts[short]], position[last_member[short]] + 1,
               "note or pedal ends before its MicroTiming/Velocity/Duration")
    good &= ~short
    return ~orphan & ~((group >= 0) & ~good[np.maximum(group, 0)])


def _add_wrong_tails(tokens: Tokens, wrong: np.ndarray, head_of, wanted, errors: _Errors) -> None:
    """Report the first misplaced tail token of each sequence, naming what was expected."""
    types = tokens.types
    first_of_sequence = wrong[np.flatnonzero(np.diff(tokens.sequence[wrong], prepend=-1))]
    for first in first_of_sequence:
        actual, head = TYPE_NAMES[TokenType(types[first])], TYPE_NAMES[TokenType(types[head_of[first]])]
        full = bool(tokens.full[first])
        errors.add(tokens.sequence[first:first + 1], tokens.position[first:first + 1],
                   f"{actual} without a note or pedal before it" if wanted[first] == _ANY else
                   f"{actual} out of place: {head} expects {TYPE_NAMES[TokenType(wanted[first])]} here "
                   f"({'full' if full else 'composition'} view)")


def _check_context(tokens: Tokens, keep: np.ndarray, vocab: Vocabulary, errors: _Errors) -> np.ndarray:
    """Rules between groups: order around Bar, TimeSig, Program, TimeShift."""
    types, content, position = tokens.types, tokens.content, tokens.position
    heads = np.flatnonzero(keep & IS_HEAD[types])
    head_type = types[heads]
    head_sequence = tokens.sequence[heads]
    first_head = segments.first_of_segment(head_sequence, tokens.num_sequences)
    is_first = np.arange(len(heads)) == first_head
    previous_type = np.where(is_first, -1, np.concatenate([[-1], head_type[:-1]]))
    is_bar = head_type == T.BAR
    before_bar = segments.cumsum(is_bar, first_head) == 0
    errors.add(head_sequence[before_bar], position[heads[before_bar]], "the sequence must start with Bar")
    misplaced_signature = (head_type == T.TIME_SIG) & (previous_type != T.BAR)
    errors.add(head_sequence[misplaced_signature], position[heads[misplaced_signature]],
               "TimeSig must come right after Bar")
    bad = before_bar | misplaced_signature

    is_program = (head_type == T.PROGRAM) & ~bad
    program_value = vocab.value_of[content[heads]]
    last_program = segments.last_true(is_program, first_head)
    current = np.where(last_program >= 0, program_value[np.maximum(last_program, 0)], -999)
    no_program = IS_TIMED[head_type] & (current == -999) & ~bad
    errors.add(head_sequence[no_program], position[heads[no_program]], "a note or pedal before any Program")
    wrong_kit = ((head_type == T.PITCH) & (current == DRUM_PROGRAM)) | (
        (head_type == T.DRUM_PITCH) & (current != DRUM_PROGRAM) & (current != -999))
    errors.add(head_sequence[wrong_kit & ~bad], position[heads[wrong_kit & ~bad]],
               "Pitch on the drum track or DrumPitch on a melodic track")
    bad |= no_program | wrong_kit

    # Look-ahead rules report where the problem shows (the next group, or the sequence's
    # end). The lone Program or TimeShift is kept when decoding leniently: it changes
    # nothing, and dropping a Program would move the notes after it onto another track.
    alive = np.flatnonzero(~bad)
    alive_sequence = head_sequence[alive]
    same_next = np.append(alive_sequence[1:] == alive_sequence[:-1], False)
    next_type = np.where(same_next, np.append(head_type[alive][1:], -1), -1)
    next_position = np.where(same_next, np.append(position[heads[alive]][1:], 0), tokens.end[alive_sequence])
    lone_program = (head_type[alive] == T.PROGRAM) & ~IS_TIMED[next_type]
    errors.add(alive_sequence[lone_program], next_position[lone_program], "Program must be followed by a note or pedal")
    lone_shift = (head_type[alive] == T.TIME_SHIFT) & ~LEADS_TO_EVENT[next_type]
    errors.add(alive_sequence[lone_shift], next_position[lone_shift], "TimeShift must lead to an event in the same bar")
    group = np.where(keep, np.cumsum(keep & IS_HEAD[types]) - 1, -1)
    bad_group = np.append(bad, False)  # index -1: tokens outside any group
    return keep & ~bad_group[group]


def _check_bar_overflow(tokens: Tokens, keep: np.ndarray, vocab: Vocabulary, errors: _Errors):
    """No TimeShift may reach the next bar line; what lies past it in that bar is dropped,
    except a Program: the notes of later bars are still on its track.

    Every sequence's kept tokens start with a Bar (the rules drop whatever comes before the
    first), so bar numbers and bar lines found across the whole batch never reach back into
    the sequence before.

    Returns:
      (keep, timing): the kept mask, and (signature, lengths, bar_sequence) per bar with
      (bar_of, grid_position) aligned to the kept tokens; dropping what lies past a bar line
      moves no kept token, so the build reuses them.
    """
    kept, types, content, sequence, _, _ = subset(tokens, keep)
    values = tokens.values[kept]
    is_bar = types == T.BAR
    bar_sequence = sequence[is_bar]
    bar_of = np.cumsum(is_bar) - 1
    # TimeSig carries over from bar to bar within a sequence; 4/4 before the first.
    signature = np.full(len(bar_sequence), -1, np.int64)
    is_signature = types == T.TIME_SIG
    signature[bar_of[is_signature]] = values[is_signature]
    last = segments.last_true(signature >= 0, segments.first_of_segment(bar_sequence, tokens.num_sequences))
    signature = np.where(last >= 0, signature[np.maximum(last, 0)], four_four_index(vocab))
    lengths = vocab.bar_lengths[signature]
    # Grid position: TimeShifts summed since the bar line.
    total = np.cumsum(np.where(types == T.TIME_SHIFT, values, 0))
    at_bar_line = np.maximum.accumulate(np.where(is_bar, np.arange(len(types)), 0)) if len(types) else total
    grid_position = total - total[at_bar_line] if len(total) else total
    past = (grid_position >= lengths[bar_of]) & ~is_bar & (types != T.PROGRAM) if len(types) else is_bar
    if not past.any():
        return keep, (signature, lengths, bar_sequence, bar_of, grid_position)
    shift_past = past & (types == T.TIME_SHIFT)
    errors.add(sequence[shift_past], tokens.position[kept][shift_past], "TimeShift passes the next bar line")
    out = keep.copy()
    out[np.flatnonzero(keep)[past]] = False
    return out, (signature, lengths, bar_sequence, bar_of[~past], grid_position[~past])


def _build_table(tokens: Tokens, keep: np.ndarray, vocab: Vocabulary, timing) -> TableBatch:
    """EventTables of grammatical token streams, given their bars and positions."""
    num_sequences = tokens.num_sequences
    signature, lengths, bar_sequence, bar_of, grid_position = timing
    kept, types, content, sequence, first, full = subset(tokens, keep)
    ends = segments.cumsum(lengths, segments.first_of_segment(bar_sequence, num_sequences))
    values = tokens.values[kept]
    heads = np.flatnonzero(IS_HEAD[types])
    is_event = IS_EVENT[types[heads]]
    head = heads[is_event]
    # A group's tail runs to the next head, so its Durations add up as a difference of sums.
    duration_sum = np.cumsum(np.where(types == T.DURATION, values, 0))
    group_end = np.append(heads[1:], len(types))[is_event] - 1
    duration = duration_sum[group_end] - duration_sum[head] if len(head) else np.zeros(0, np.int64)
    last_program = segments.last_true(types == T.PROGRAM, first)[head]
    program = np.where(last_program >= 0, values[np.maximum(last_program, 0)], -2)
    head_type = types[head]
    kind = np.select([head_type == T.TEMPO, head_type == T.PEDAL], [TEMPO, PEDAL], NOTE)
    is_tracked = kind != TEMPO
    head_full = full[head]
    follows = np.minimum(head + 1, len(types) - 1)
    second = np.minimum(head + 2, len(types) - 1)
    microtiming = np.where(head_full & is_tracked, values[follows], 0)
    velocity = np.where(head_full, content[second] - vocab.first_id(T.VELOCITY), vocab.default_velocity_index)
    table = EventTable(
        bars=BarMap((ends - lengths).astype(np.int64), lengths.astype(np.int64), signature),
        kind=kind.astype(np.int64), bar=bar_of[head], position=grid_position[head],
        microtiming=microtiming, program=np.where(is_tracked, program, -2),
        pitch=np.where(kind == NOTE, values[head], 0),
        velocity=np.where(kind == NOTE, velocity, 0), duration=np.where(is_tracked, duration, 0),
        tempo=np.where(kind == TEMPO, content[head] - vocab.first_id(T.TEMPO), 0))
    return TableBatch(table, segments.offsets(bar_sequence, num_sequences),
                      segments.offsets(sequence[head], num_sequences))
