"""PerTok's composition grammar as a state machine over a batch, for constrained sampling.

At every step `allowed` says which tokens keep the sequence decodable, and `advance` updates
the state with the sampled token. The rules are those of `pertok.decode`: Bar first; TimeSig
only right after Bar; a Program before the first note, and only notes after a Program; Pitch
on melodic programs and DrumPitch on drums; each note followed by one or more Durations; a
TimeShift leads to an event in the same bar and never reaches the next bar line. Ideas also
stop after `num_bars` bars (EOS instead of another Bar).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pertok import TokenType as T
from pertok.vocab import DRUM_PROGRAM

BOS_ID, EOS_ID = 1, 2
NO_KIT, MELODIC, DRUMS = -1, 0, 1


@dataclasses.dataclass(frozen=True)
class GrammarTables:
    """Per-token lookups [V] (numpy, so the tables are constants of a jitted sampler)."""

    types: np.ndarray  # TokenType of each id
    shift_ticks: np.ndarray  # TimeShift length, 0 for other tokens
    bar_ticks: np.ndarray  # bar length set by a TimeSig, 0 for other tokens
    kit: np.ndarray  # MELODIC or DRUMS for Program ids, NO_KIT otherwise
    default_bar_ticks: int  # a 4/4 bar, in force until the first TimeSig

    @classmethod
    def from_tokenizer(cls, tokenizer) -> GrammarTables:
        vocab, ids = tokenizer.vocab, np.arange(tokenizer.vocab_size)
        types = tokenizer.token_types(ids).astype(np.int32)
        values = np.asarray(vocab.value_of)
        tpq = tokenizer.config.ticks_per_quarter
        lengths = vocab.bar_lengths  # per TimeSig, 4/4 last
        is_signature = types == T.TIME_SIG
        bar_ticks = np.where(is_signature, lengths[np.where(is_signature, values, -1)], 0)
        kit = np.where(types == T.PROGRAM, np.where(values == DRUM_PROGRAM, DRUMS, MELODIC), NO_KIT)
        return cls(types, np.where(types == T.TIME_SHIFT, values, 0).astype(np.int32),
                   bar_ticks.astype(np.int32), kit.astype(np.int32), 4 * tpq)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GrammarState:
    """Where each sequence of a batch stands: all int32 [B]."""

    previous: jax.Array  # TokenType of the last token (BOS at the start)
    kit: jax.Array  # kit of the Program in force
    position: jax.Array  # ticks since the current bar line
    bar_ticks: jax.Array  # length of the current bar
    bars: jax.Array  # Bar tokens so far

    @classmethod
    def start(cls, batch: int, tables: GrammarTables) -> GrammarState:
        zeros = jnp.zeros((batch,), jnp.int32)
        return cls(zeros + T.BOS, zeros + NO_KIT, zeros, zeros + tables.default_bar_ticks, zeros)


def allowed(state: GrammarState, tables: GrammarTables, num_bars: int) -> jax.Array:
    """bool [B, V]: the tokens that may come next."""
    types_1xV = jnp.asarray(tables.types)[None]
    is_type = lambda kind: types_1xV == kind  # noqa: E731
    kit_Bx1, previous_Bx1 = state.kit[:, None], state.previous[:, None]
    note = (is_type(T.PITCH) & (kit_Bx1 == MELODIC)) | (is_type(T.DRUM_PITCH) & (kit_Bx1 == DRUMS))
    shift = is_type(T.TIME_SHIFT) & (
        state.position[:, None] + jnp.asarray(tables.shift_ticks)[None] < state.bar_ticks[:, None])
    bar = is_type(T.BAR) & (state.bars[:, None] < num_bars)
    eos = (jnp.arange(types_1xV.shape[1]) == EOS_ID)[None]
    any_head = bar | shift | is_type(T.PROGRAM) | note | eos  # after a bar line or a whole note
    return jnp.select(
        [previous_Bx1 == T.BOS, previous_Bx1 == T.BAR, previous_Bx1 == T.TIME_SIG,
         previous_Bx1 == T.PROGRAM, (previous_Bx1 == T.PITCH) | (previous_Bx1 == T.DRUM_PITCH),
         previous_Bx1 == T.DURATION, previous_Bx1 == T.TIME_SHIFT],
        [is_type(T.BAR), any_head | is_type(T.TIME_SIG), any_head, note, is_type(T.DURATION),
         any_head | is_type(T.DURATION), shift | is_type(T.PROGRAM) | note],
        eos)


def advance(state: GrammarState, tokens_B: jax.Array, tables: GrammarTables) -> GrammarState:
    """The state after each sequence's next token."""
    kind = jnp.asarray(tables.types)[tokens_B]
    is_bar = kind == T.BAR
    return GrammarState(
        previous=kind,
        kit=jnp.where(kind == T.PROGRAM, jnp.asarray(tables.kit)[tokens_B], state.kit),
        position=jnp.where(is_bar, 0, state.position + jnp.asarray(tables.shift_ticks)[tokens_B]),
        bar_ticks=jnp.where(kind == T.TIME_SIG, jnp.asarray(tables.bar_ticks)[tokens_B], state.bar_ticks),
        bars=state.bars + is_bar.astype(jnp.int32))
