"""Performance slots: where a full PerTok sequence holds MicroTiming and Velocity, and windows
of whole bars (or whole notes) that the Performer reads at once."""
from __future__ import annotations

import numpy as np

from pertok import TokenType

NO_SLOT, MICROTIMING_SLOT, VELOCITY_SLOT = 0, 1, 2
NUM_SLOT_KINDS = 3
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


def mask_slots(full_ids: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """The Performer's input: every MicroTiming and Velocity replaced by MASK."""
    return np.where(kinds != NO_SLOT, MASK_ID, full_ids).astype(np.int32)


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
