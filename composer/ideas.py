"""Musical ideas: a few bars of composition-only PerTok tokens that decode on their own.

An idea is cut at bar lines. Cut from the middle of a piece, it is given back the context
that its tokens lean on: the time signature in force goes right after its first Bar, and
the Program in force goes right before its first note (if no Program comes earlier in the
idea). All tracks of the bars stay together, as PerTok interleaves them in time.

An idea's conditions (its meter, its instruments, its bar count) are also given to the
decoder as a prefix (`prefix_ids`), so the latent need not carry them and a user can ask for
"a 3/4 piano idea" (`named_conditions`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pertok import TokenType

NOTE_HEADS = (TokenType.PITCH, TokenType.DRUM_PITCH, TokenType.PEDAL)
PERFORMANCE = (TokenType.MICROTIMING, TokenType.VELOCITY)
INSERTED_MAX = 2  # a TimeSig and a Program may be put back into a cut idea
UNKNOWN = 0  # PAD id: a prefix field that is not given (the decoder learns it as "any")


def composition_view(full_ids: np.ndarray, tokenizer) -> np.ndarray:
    """The composition-only ids of a full-view sequence (its MicroTiming and Velocity dropped)."""
    full_ids = np.asarray(full_ids)
    return full_ids[~np.isin(tokenizer.token_types(full_ids), PERFORMANCE)]


@dataclasses.dataclass(frozen=True)
class Idea:
    """Tokens [start, end) of a piece, and the context ids to put back (-1 = none needed)."""

    start: int
    end: int
    time_signature: int
    program: int
    num_bars: int


def context_at(ids: np.ndarray, types: np.ndarray, start: int) -> tuple[int, int]:
    """(TimeSig id, Program id) in force at position `start`; -1 where none was set."""
    signatures = np.flatnonzero(types[:start] == TokenType.TIME_SIG)
    programs = np.flatnonzero(types[:start] == TokenType.PROGRAM)
    return (int(ids[signatures[-1]]) if len(signatures) else -1,
            int(ids[programs[-1]]) if len(programs) else -1)


def standalone(ids: np.ndarray, types: np.ndarray, idea: Idea) -> np.ndarray:
    """The idea's tokens with its context put back, so it decodes on its own."""
    tokens, kinds = ids[idea.start:idea.end], types[idea.start:idea.end]
    parts = [tokens[:1]]
    rest, rest_kinds = tokens[1:], kinds[1:]
    if idea.time_signature >= 0 and not (len(rest) and rest_kinds[0] == TokenType.TIME_SIG):
        parts.append(np.array([idea.time_signature]))
    notes = np.flatnonzero(np.isin(rest_kinds, NOTE_HEADS))
    first_note = int(notes[0]) if len(notes) else len(rest)
    has_program = bool((rest_kinds[:first_note] == TokenType.PROGRAM).any())
    if len(notes) and not has_program and idea.program >= 0:
        parts += [rest[:first_note], np.array([idea.program]), rest[first_note:]]
    else:
        parts.append(rest)
    return np.concatenate(parts).astype(np.int32)


def cut_points(types: np.ndarray) -> np.ndarray:
    """Positions where a sequence may end without breaking a group: after a note's Duration."""
    heads = np.flatnonzero(np.isin(types, NOTE_HEADS + (TokenType.TIME_SHIFT, TokenType.BAR,
                                                         TokenType.PROGRAM)))
    return heads[(heads > 0) & (types[np.maximum(heads - 1, 0)] == TokenType.DURATION)]


def cut_ideas(ids: np.ndarray, types: np.ndarray, num_bars: int, max_tokens: int) -> list[Idea]:
    """Consecutive ideas of `num_bars` bars (fewer where they would exceed `max_tokens`).

    Every bar is in exactly one idea. A single bar longer than `max_tokens` is cut after the
    last note that fits, and the rest of that bar is left out.
    """
    bars = np.flatnonzero(types == TokenType.BAR)
    if not len(bars):
        return []
    ends = np.append(bars[1:], len(ids))
    budget = max_tokens - INSERTED_MAX
    ideas, first = [], 0
    while first < len(bars):
        last = first
        while (last + 1 < len(bars) and last + 1 - first < num_bars
               and ends[last + 1] - bars[first] <= budget):
            last += 1
        start, end = int(bars[first]), int(ends[last])
        if end - start > budget:  # one bar alone is too long
            fits = cut_points(types[start:start + budget + 1])
            end = start + (int(fits[-1]) if len(fits) else budget)
        ideas.append(Idea(start, end, *context_at(ids, types, start), num_bars=last - first + 1))
        first = last + 1
    return ideas


def bars_of(ids: np.ndarray, tokenizer) -> int:
    """Number of bars of a token sequence."""
    return int((tokenizer.token_types(ids) == TokenType.BAR).sum())


def select_bars(ids: np.ndarray, tokenizer, start_bar: int, num_bars: int,
                max_tokens: int | None = None) -> tuple[np.ndarray, int, bool]:
    """Bars start_bar .. start_bar + num_bars - 1 of a sequence (either view) as a standalone idea.

    With `max_tokens`, fewer bars are taken where their composition tokens would not fit,
    and a single bar too long is cut after its last note that fits. Returns (ids, bars taken,
    whether the last bar was cut); raises ValueError when start_bar is past the end.
    """
    ids = np.asarray(ids)
    types = tokenizer.token_types(ids)
    bars = np.flatnonzero(types == TokenType.BAR)
    if not 0 <= start_bar < len(bars):
        raise ValueError(f"start bar {start_bar + 1} is past the {len(bars)} bars of the piece")
    counted = np.concatenate([[0], np.cumsum(~np.isin(types, PERFORMANCE))])
    limit = np.inf if max_tokens is None else max_tokens - INSERTED_MAX
    ends = np.append(bars[1:], len(ids))
    start, last = int(bars[start_bar]), min(start_bar + num_bars, len(bars)) - 1
    while last > start_bar and counted[ends[last]] - counted[start] > limit:
        last -= 1
    end, truncated = int(ends[last]), False
    if counted[end] - counted[start] > limit:
        fits = start + cut_points(types[start:end])
        fits = fits[counted[fits] - counted[start] <= limit]
        end, truncated = (int(fits[-1]) if len(fits) else start + 1), True
    idea = Idea(start, end, *context_at(ids, types, start), num_bars=last - start_bar + 1)
    return standalone(ids, types, idea), idea.num_bars, truncated


@dataclasses.dataclass(frozen=True)
class Conditions:
    """What the decoder is told about an idea: ids of its TimeSig and Programs, and its bars.

    UNKNOWN (0) in time_signature or num_bars, or no programs, leaves that field open.
    """

    time_signature: int
    programs: tuple[int, ...]
    num_bars: int


def conditions_of(tokens: np.ndarray, tokenizer) -> Conditions:
    """The conditions of a standalone idea: its first TimeSig (4/4 when it has none, as PerTok
    assumes), its Programs in order of first appearance, and its number of bars."""
    tokens = np.asarray(tokens)
    types = tokenizer.token_types(tokens)
    signatures = tokens[types == TokenType.TIME_SIG]
    signature = int(signatures[0]) if len(signatures) else tokenizer.vocab.ids["TimeSig_4/4"]
    programs = tokens[types == TokenType.PROGRAM]
    _, first = np.unique(programs, return_index=True)
    return Conditions(signature, tuple(int(p) for p in programs[np.sort(first)]),
                      int((types == TokenType.BAR).sum()))


def named_conditions(tokenizer, time_signature: str, programs: str, num_bars: int) -> Conditions:
    """Conditions from a user's words: time_signature like "3/4" ("" = any), programs a comma
    list of General MIDI numbers or "drums" ("" = any), num_bars (0 = any).

    Raises ValueError naming the value that is not in PerTok's vocabulary.
    """
    ids = tokenizer.vocab.ids
    signature = UNKNOWN
    if time_signature:
        signature = ids.get(f"TimeSig_{time_signature.strip()}", -1)
        if signature < 0:
            raise ValueError(f"time signature {time_signature!r} is not in PerTok's vocabulary "
                             f"(numerator/denominator, e.g. 4/4, 3/4, 6/8, 12/8)")
    program_ids = []
    for name in filter(None, (part.strip() for part in programs.split(","))):
        program = ids.get(f"Program_{name}", -1)
        if program < 0:
            raise ValueError(f"program {name!r} must be a General MIDI number 0-127 or 'drums'")
        program_ids.append(program)
    if num_bars < 0:
        raise ValueError(f"num_bars={num_bars} must be >= 0 (0 = any)")
    return Conditions(signature, tuple(dict.fromkeys(program_ids)), num_bars)


def prefix_ids(conditions: Conditions, *, vocab_size: int, max_programs: int,
               max_bars: int) -> np.ndarray:
    """int32 [max_programs + 2]: [TimeSig, Program x max_programs (sorted, UNKNOWN-filled), bars].

    The bar count is the id vocab_size + num_bars - 1, beyond PerTok's vocabulary (the
    decoder's embedding has `max_bars` extra rows). Programs past `max_programs` (in order of
    first appearance) are left out; a bar count past `max_bars` is a ValueError.
    """
    if not 0 <= conditions.num_bars <= max_bars:
        raise ValueError(f"an idea of {conditions.num_bars} bars: the Composer knows 1-{max_bars}")
    programs = sorted(conditions.programs[:max_programs])
    prefix = np.full(max_programs + 2, UNKNOWN, np.int32)
    prefix[0] = conditions.time_signature
    prefix[1:1 + len(programs)] = programs
    if conditions.num_bars:
        prefix[-1] = vocab_size + conditions.num_bars - 1
    return prefix


def drop_conditions(conditions: Conditions, rng: np.random.Generator, share: float) -> Conditions:
    """Each field left open (UNKNOWN) with probability `share`, so the decoder also learns to
    compose when a user gives only some of them."""
    keep = rng.random(3) >= share
    return Conditions(conditions.time_signature if keep[0] else UNKNOWN,
                      conditions.programs if keep[1] else (), conditions.num_bars if keep[2] else UNKNOWN)
