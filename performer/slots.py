"""Performance slots: where a full PerTok sequence holds MicroTiming and Velocity, which of them
the Performer is asked to fill (masked) and which it is given, the dynamic level it is told,
and windows of whole bars (or whole notes) that it reads at once."""
from __future__ import annotations

import numpy as np

from pertok import TokenType

NO_SLOT, MICROTIMING_SLOT, VELOCITY_SLOT = 0, 1, 2
LEVEL_SLOT = 3  # the window's first position: the piece's dynamic level, a Velocity id (or MASK)
NUM_SLOT_KINDS = 4
MASK_ID = 3
_NOTES = (TokenType.PITCH, TokenType.DRUM_PITCH)
_HEADS = _NOTES + (TokenType.PEDAL, TokenType.BAR, TokenType.TIME_SIG, TokenType.TIME_SHIFT,
                   TokenType.TEMPO, TokenType.PROGRAM)


def slot_kinds(full_ids: np.ndarray, tokenizer) -> np.ndarray:
    """int32 [T]: MICROTIMING_SLOT or VELOCITY_SLOT where a full sequence holds one, else NO_SLOT."""
    types = tokenizer.token_types(full_ids)
    return np.select([types == TokenType.MICROTIMING, types == TokenType.VELOCITY],
                     [MICROTIMING_SLOT, VELOCITY_SLOT], NO_SLOT).astype(np.int32)


def masked_slot_kinds(slotted_ids: np.ndarray, tokenizer) -> np.ndarray:
    """Slot kinds of `PerTok.add_performance_slots` output, read from its structure: the MASK
    after a note or pedal is its MicroTiming, the MASK after that a note's Velocity."""
    ids = np.asarray(slotted_ids)
    types = tokenizer.token_types(ids)
    before_1 = np.concatenate([[-1], types[:-1]])
    before_2 = np.concatenate([[-1, -1], types[:-2]])[:len(ids)]
    is_mask = ids == MASK_ID
    microtiming = is_mask & np.isin(before_1, _NOTES + (TokenType.PEDAL,))
    velocity = is_mask & (before_1 == TokenType.MASK) & np.isin(before_2, _NOTES)
    return np.select([microtiming, velocity], [MICROTIMING_SLOT, VELOCITY_SLOT], NO_SLOT).astype(np.int32)


def mask_slots(full_ids: np.ndarray, kinds: np.ndarray, masked: np.ndarray | None = None) -> np.ndarray:
    """The Performer's input: the slots in `masked` (default: every MicroTiming and Velocity)
    replaced by MASK; the other slots keep their values, as given performance."""
    masked = kinds != NO_SLOT if masked is None else masked & (kinds != NO_SLOT)
    return np.where(masked, MASK_ID, full_ids).astype(np.int32)


def random_mask(kinds: np.ndarray, rng: np.random.Generator, continuation: float = 0.25) -> np.ndarray:
    """bool [T]: a random share of the slots to fill, as iterative decoding meets them.

    The share is cos(pi/2 u) for u ~ U(0, 1) (MaskGIT's schedule: every round of decoding is
    seen in training, the fully masked first round most often). With probability
    `continuation`, the slots before a random point in the window's first half are all given,
    as when a window continues the performance of the one before it. At least one slot is masked.
    """
    slots = np.flatnonzero(kinds != NO_SLOT)
    masked = np.zeros(len(kinds), bool)
    if not len(slots):
        return masked
    share = np.cos(np.pi / 2 * rng.random())
    masked[slots] = rng.random(len(slots)) < share
    if rng.random() < continuation:
        masked[:int(rng.integers(0, len(kinds) // 2 + 1))] = False
    if not masked.any():
        masked[slots[rng.integers(len(slots))]] = True
    return masked


def level_id(velocities: np.ndarray | float | None, tokenizer) -> int:
    """The Velocity id nearest the mean of MIDI `velocities` (a level such as 80 or the notes
    of a performance); MASK when there are none: the level is then not given."""
    values = np.atleast_1d(np.asarray(velocities if velocities is not None else [], np.float64))
    if not len(values):
        return MASK_ID
    mean = int(np.clip(np.round(values.mean()), 1, 127))
    return int(tokenizer.type_ranges["Velocity"].start + tokenizer.vocab.velocity_index_of[mean])


def piece_velocities(full_ids: np.ndarray, tokenizer) -> np.ndarray:
    """MIDI velocities of a full-view sequence's Velocity tokens."""
    full_ids = np.asarray(full_ids)
    return tokenizer.vocab.value_of[full_ids[tokenizer.token_types(full_ids) == TokenType.VELOCITY]]


def windows(types: np.ndarray, context_length: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) windows of at most `context_length` tokens covering a sequence.

    Each window ends at a bar line when one lies in its second half, else before the last
    group head that fits (so a note never loses its slots to the next window).
    """
    is_bar = types == TokenType.BAR
    is_head = np.isin(types, _HEADS)
    bounds, start, total = [], 0, len(types)
    while start < total:
        end = start + context_length
        if end < total:
            inside = np.arange(start + context_length // 2 + 1, end + 1)
            bars, heads = inside[is_bar[inside]], np.arange(start + 1, end + 1)
            heads = heads[is_head[heads]]
            end = int(bars[-1]) if len(bars) else int(heads[-1]) if len(heads) else end
        bounds.append((start, min(end, total)))
        start = min(end, total)
    return bounds
