"""A fast proof that token sequences are grammatical, so that parsing can skip the rule checks.

Most sequences that reach the decoder are grammatical (the encoder's, or a sampler's that
follows the grammar). For them the group and context checks of `decode.py` find nothing, at
the cost of most of the parse. In a grammatical sequence every group is contiguous and
heads without a tail are one token long, so every local rule is a rule on three
consecutive token types (for a Duration: is it the third tail of a note or the second of a
pedal?); one table lookup per token checks them all. The Program in force (a note needs
one, and Pitch/DrumPitch must match it) is the one rule that looks further back.

A sequence this check accepts is one the full checks accept too (tested on random and
corrupted sequences); a batch it does not accept takes the full checks, which find the
errors and their positions.
"""
from __future__ import annotations

import numpy as np

from pertok import segments
from pertok.vocab import DRUM_PROGRAM, TokenType

OUTSIDE = 15  # the type code before a sequence's first token, and of ids outside the vocabulary
_BAR, _SIG, _SHIFT, _TEMPO, _PROGRAM = (int(k) for k in (TokenType.BAR, TokenType.TIME_SIG, TokenType.TIME_SHIFT,
                                                         TokenType.TEMPO, TokenType.PROGRAM))
_PITCH, _DRUM, _PEDAL = int(TokenType.PITCH), int(TokenType.DRUM_PITCH), int(TokenType.PEDAL)
_MT, _VEL, _DUR = int(TokenType.MICROTIMING), int(TokenType.VELOCITY), int(TokenType.DURATION)
_HEADS = {_BAR, _SIG, _SHIFT, _TEMPO, _PROGRAM, _PITCH, _DRUM, _PEDAL}
_NOTES, _TIMED = {_PITCH, _DRUM}, {_PITCH, _DRUM, _PEDAL}
_LEADS_TO_EVENT = {_SHIFT, _PROGRAM, _TEMPO, _PITCH, _DRUM, _PEDAL}
# A group may end (the next token starts a new one, or the sequence ends) after these.
_GROUP_ENDS = {_BAR, _SIG, _TEMPO, _DUR}


def _allowed(before: int, previous: int, current: int, full: bool) -> bool:
    """May `current` follow `previous` (itself after `before`) in a grammatical sequence?"""
    if current in _HEADS:
        if previous == OUTSIDE:
            return current == _BAR  # the sequence must start with Bar
        if current == _SIG:
            return previous == _BAR
        if previous == _SHIFT:
            return current in _LEADS_TO_EVENT
        if previous == _PROGRAM:
            return current in _TIMED
        return previous in _GROUP_ENDS  # a note or pedal must have its whole tail first
    if full and current == _MT:
        return previous in _TIMED
    if full and current == _VEL:
        return previous == _MT and before in _NOTES
    if current == _DUR and full:
        return previous in (_VEL, _DUR) or (previous == _MT and before == _PEDAL)
    if current == _DUR:
        return previous in _TIMED or previous == _DUR
    return False  # PAD, BOS, EOS, MASK, unknown ids; performance tokens in the composition view


def _table() -> np.ndarray:
    """[view (composition, full), 16 * 16 * 16] allowed (before, previous, current) type triples."""
    table = np.zeros((2, 16 ** 3), bool)
    for full in (0, 1):
        for before in range(16):
            for previous in range(16):
                for current in range(16):
                    table[full, (before * 16 + previous) * 16 + current] = _allowed(before, previous, current,
                                                                                  bool(full))
    return table


ALLOWED = _table()
ALLOWED_FLAT = ALLOWED.reshape(-1)  # indexed by view * 16 ** 3 + triple
LAST_ALLOWED = np.zeros(16, bool)
LAST_ALLOWED[list(_GROUP_ENDS)] = True


def grammatical(types: np.ndarray, content: np.ndarray, sequence: np.ndarray, first: np.ndarray,
                full: np.ndarray, num_sequences: int, value_of: np.ndarray) -> bool:
    """True when every sequence obeys every rule but the bar-line one (checked while parsing).

    Args:
      types, content, sequence, first, full: per token as in `decode._Tokens`.
    """
    if not len(types):
        return True
    code = np.where(types < 0, OUTSIDE, types).astype(np.int16)
    previous = np.empty_like(code)
    previous[0], previous[1:] = OUTSIDE, code[:-1]
    before = np.empty_like(code)
    before[0], before[1:] = OUTSIDE, previous[:-1]
    starts = np.flatnonzero(np.diff(sequence, prepend=-1))
    previous[starts] = OUTSIDE
    before[starts] = OUTSIDE
    second = starts + 1
    second = second[(second < len(code)) & (sequence[np.minimum(second, len(code) - 1)] == sequence[starts])]
    before[second] = OUTSIDE
    if not ALLOWED_FLAT[full * np.int16(16 ** 3) + (before * 16 + previous) * 16 + code].all():
        return False
    ends = np.append(starts[1:], len(code)) - 1
    if not LAST_ALLOWED[code[ends]].all():
        return False
    timed = np.flatnonzero((code == _PITCH) | (code == _DRUM) | (code == _PEDAL))
    last_program = segments.last_true(code == _PROGRAM, first)[timed]
    if (last_program < 0).any():
        return False  # a note or pedal before any Program
    is_drum = value_of[content[last_program]] == DRUM_PROGRAM
    return not (((code[timed] == _PITCH) & is_drum) | ((code[timed] == _DRUM) & ~is_drum)).any()
