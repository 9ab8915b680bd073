"""Inference: give a composition its performance (MicroTiming and Velocity) with the Performer.

Decoding is iterative (MaskGIT): every round predicts all open slots, keeps the most confident
share and re-reads the rest with those in view, so slots condition on each other. A long piece
is read window by window, each window carrying the end of the one before it, already
performed, as context.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from performer.slots import (LEVEL_SLOT, MASK_ID, MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT,
                             level_id, windows)
from performer.task import PAD_ID, PerformerTask
from pertok import TokenType

_NOTES = (TokenType.PITCH, TokenType.DRUM_PITCH)
_SLOT_TOKENS = (TokenType.MASK, TokenType.MICROTIMING, TokenType.VELOCITY)
GREEDY = ("median", "mode")  # temperature-0 readouts of PerformanceFiller


def performance_slot_kinds(ids: np.ndarray, tokenizer) -> np.ndarray:
    """Slot kinds of a full-view sequence whose slots are filled, MASK, or a mix of both: the
    token after a note or pedal is its MicroTiming, the one after that a note's Velocity."""
    ids = np.asarray(ids)
    types = tokenizer.token_types(ids)
    before_1 = np.concatenate([[-1], types[:-1]])
    before_2 = np.concatenate([[-1, -1], types[:-2]])[:len(ids)]
    is_slot = np.isin(types, _SLOT_TOKENS)
    microtiming = is_slot & np.isin(before_1, _NOTES + (TokenType.PEDAL,))
    velocity = is_slot & np.isin(before_1, _SLOT_TOKENS) & np.isin(before_2, _NOTES)
    return np.select([microtiming, velocity], [MICROTIMING_SLOT, VELOCITY_SLOT], NO_SLOT).astype(np.int32)


def reveal_schedule(total: jax.Array, round_index: int, rounds: int) -> jax.Array:
    """Slots still masked after round `round_index` (0-based) of `rounds`: total x cos(pi/2 x
    (round + 1) / rounds), rounded down; 0 after the last round."""
    if round_index + 1 >= rounds:
        return jnp.zeros_like(total)
    return jnp.floor(total * np.cos(np.pi / 2 * (round_index + 1) / rounds)).astype(total.dtype)


def hold_level(ids: np.ndarray, chosen: np.ndarray, level: float, tokenizer) -> None:
    """Shift, in place, the Velocity tokens of `ids` where `chosen` (those the Performer filled)
    by one amount so the mean velocity of all of them is `level`, each re-quantized to the
    nearest Velocity token; others are kept."""
    velocity = tokenizer.token_types(ids) == TokenType.VELOCITY
    moved = velocity & chosen
    if not moved.any():
        return
    values = tokenizer.vocab.value_of[ids[velocity]].astype(np.float64)
    shift = (level - values.mean()) * velocity.sum() / moved.sum()
    target = np.clip(np.round(tokenizer.vocab.value_of[ids[moved]] + shift), 1, 127).astype(np.int64)
    ids[moved] = tokenizer.type_ranges["Velocity"].start + tokenizer.vocab.velocity_index_of[target]


class PerformanceFiller:
    """Fills the performance slots of many sequences at once.

    Args:
      task: the trained Performer's task.
      rounds: rounds of iterative decoding per window (1 = every slot in one pass).
      carry: tokens of the previous window, already performed, read before each window
        (default a quarter of the context).
      greedy: what temperature 0 takes per slot: "median" of the predicted distribution over
        the slot's ordered values (velocity, timing offset; the guess with the least expected
        absolute error) or its "mode" (the single most likely token).
      hold_level: where a level is given, shift the velocities the Performer chose so that the
        piece's mean velocity is that level (the model shapes the dynamics, the level sets how
        loud); anchors keep their values.
    """

    def __init__(self, task: PerformerTask, rounds: int = 8, carry: int | None = None,
                 greedy: str = "median", hold_level: bool = True):
        self.task, self.tokenizer, self.rounds, self.greedy = task, task.tokenizer, rounds, greedy
        self.hold_level = hold_level
        self.carry = task.context_length // 4 if carry is None else carry
        if not 0 <= self.carry <= task.context_length // 2 or rounds < 1:
            raise ValueError(f"carry={self.carry} must be in [0, context_length / 2] and rounds={rounds} >= 1")
        if greedy not in GREEDY:
            raise ValueError(f"greedy={greedy!r} must be one of {GREEDY}")
        self._fill = jax.jit(self._fill_impl)

    def _fill_impl(self, params, inputs_RxT, kinds_RxT, masked_RxT, rng, temperature):
        total_R = masked_RxT.sum(axis=1)
        for round_index in range(self.rounds):
            rng, draw = jax.random.split(rng)
            logits_RxTxV = self.task.logits(params, inputs_RxT, kinds_RxT)
            log_probs_RxTxV = jax.nn.log_softmax(logits_RxTxV, axis=-1)
            sampled_RxT = jax.random.categorical(draw, logits_RxTxV / jnp.maximum(temperature, 1e-6))
            chosen_RxT = jnp.where(temperature > 0, sampled_RxT, self._greedy(log_probs_RxTxV))
            confidence_RxT = jnp.take_along_axis(log_probs_RxTxV, chosen_RxT[..., None], -1)[..., 0]
            confidence_RxT = jnp.where(masked_RxT, confidence_RxT, -jnp.inf)
            reveal_R = masked_RxT.sum(axis=1) - reveal_schedule(total_R, round_index, self.rounds)
            rank_RxT = jnp.argsort(jnp.argsort(-confidence_RxT, axis=1), axis=1)
            reveal_RxT = masked_RxT & (rank_RxT < reveal_R[:, None])
            inputs_RxT = jnp.where(reveal_RxT, chosen_RxT, inputs_RxT)
            masked_RxT = masked_RxT & ~reveal_RxT
        return inputs_RxT

    def _greedy(self, log_probs_RxTxV: jax.Array) -> jax.Array:
        """Temperature-0 token per position. A slot's logits are restricted to its own token
        type, whose ids run in increasing value, so the cumulative probability over all ids
        first reaches 1/2 at the slot's median value."""
        if self.greedy == "mode":
            return log_probs_RxTxV.argmax(-1)
        cdf_RxTxV = jnp.cumsum(jnp.exp(log_probs_RxTxV), axis=-1)
        return jnp.argmax(cdf_RxTxV >= 0.5, axis=-1)

    def __call__(self, params, compositions: list[np.ndarray], rng: jax.Array,
                 temperature: float = 1.0, levels: Sequence | None = None) -> list[np.ndarray]:
        """Full-view ids of each composition; temperature 0 takes the most likely tokens.

        Args:
          levels: per composition, the dynamic level to play at: a MIDI velocity, the
            velocities of a performance to match, or None (not given); default all None.
        """
        slotted = [self.tokenizer.add_performance_slots(ids) for ids in compositions]
        return self.fill(params, slotted, rng, temperature, levels)

    def fill(self, params, sequences: list[np.ndarray], rng: jax.Array, temperature: float = 1.0,
             levels: Sequence | None = None) -> list[np.ndarray]:
        """Full-view ids where every MASK slot of `sequences` is filled; slots that hold a
        MicroTiming or Velocity are given performance (anchors) and kept."""
        levels = [None] * len(sequences) if levels is None else list(levels)
        if len(levels) != len(sequences):
            raise ValueError(f"{len(levels)} levels for {len(sequences)} sequences")
        level_ids = [level_id(level, self.tokenizer) for level in levels]
        performed = [np.asarray(ids, np.int32).copy() for ids in sequences]
        kinds = [performance_slot_kinds(ids, self.tokenizer) for ids in performed]
        body = self.task.context_length - 1 - self.carry
        spans = [windows(self.tokenizer.token_types(ids), body) for ids in performed]
        for index in range(max((len(s) for s in spans), default=0)):
            rng, draw = jax.random.split(rng)
            todo = [(n, *s[index]) for n, s in enumerate(spans) if index < len(s)]
            self._fill_windows(params, performed, kinds, level_ids, todo, draw, temperature)
        if self.hold_level:
            for ids, before, level in zip(performed, sequences, levels):
                if level is not None and np.size(level):
                    hold_level(ids, np.asarray(before) == MASK_ID, float(np.mean(level)), self.tokenizer)
        return performed

    def _fill_windows(self, params, performed, kinds, level_ids, todo, rng, temperature) -> None:
        """Fill window [start, end) of each (sequence n, start, end) in `todo`, in place, with
        up to `carry` performed tokens before it as context. Rows are padded to a power of two
        so that a handful of shapes are compiled."""
        length = self.task.context_length
        rows = 1 << max(len(todo) - 1, 0).bit_length()
        inputs = np.full((rows, length), PAD_ID, np.int32)
        kinds_in = np.zeros((rows, length), np.int32)
        for row, (n, start, end) in enumerate(todo):
            first = max(start - self.carry, 0)
            inputs[row, 0], kinds_in[row, 0] = level_ids[n], LEVEL_SLOT
            inputs[row, 1:1 + end - first] = performed[n][first:end]
            kinds_in[row, 1:1 + end - first] = kinds[n][first:end]
        masked = (inputs == MASK_ID) & (kinds_in != NO_SLOT) & (kinds_in != LEVEL_SLOT)
        filled = np.asarray(self._fill(params, jnp.asarray(inputs), jnp.asarray(kinds_in),
                                       jnp.asarray(masked), rng, jnp.float32(temperature)))
        for row, (n, start, end) in enumerate(todo):
            first = max(start - self.carry, 0)
            performed[n][start:end] = filled[row, 1 + start - first:1 + end - first]
