"""PerTok's grammar as a finite automaton over a batch, for constrained sampling.

The rules are exactly those `pertok.decode` checks in strict mode: a Bar first; TimeSig only
right after Bar; a Program before the first note or pedal, and a note or pedal right after
every Program; Pitch on melodic programs and DrumPitch on drums; each note followed by its
MicroTiming and Velocity (full view) and one or more Durations, each pedal by its MicroTiming
(full view) and Durations; a TimeShift leads to an event and never reaches the next bar line
(bar lengths from the TimeSig in force, 4/4 before the first); EOS only where the sequence
may end. Leading PAD/BOS are skipped as decode skips them; everything after EOS is ignored.

The tables are NumPy arrays and every function takes the array namespace `xp` (`numpy` or
`jax.numpy`), so the same code checks a prompt on the host and masks logits inside a jitted
`lax.scan`; a step is a handful of table lookups. The state is a NamedTuple (a jax pytree).

A token budget (`remaining`) keeps a sample that must stop after a fixed number of tokens
decodable: a token is allowed only if the sequence can still be completed (the open note
finished, the TimeShift led to its event) within the tokens left after it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pertok.vocab import DRUM_PROGRAM, TokenType as T

# Phases: what the tokens so far leave open.
START, AFTER_BAR, OPEN, AFTER_SHIFT, AFTER_PROGRAM = 0, 1, 2, 3, 4
NOTE_MICROTIMING, NOTE_VELOCITY, NOTE_DURATION, PEDAL_MICROTIMING, MORE_DURATION, ENDED = range(5, 11)
NUM_PHASES = 11
COMPLETE = (AFTER_BAR, OPEN, MORE_DURATION, ENDED)  # where a sequence may end
NO_KIT, MELODIC, DRUMS, ANY_KIT = 0, 1, 2, 3  # kit of the Program in force / a token needs
_FAR = 1 << 20  # "no completion" cost; also the budget when there is none
PAD_ID, EOS_ID = 0, 2


class GrammarState(NamedTuple):
    """Where each sequence of a batch stands; every field has shape [B]."""

    phase: object  # int32, one of the phases above
    kit: object  # int32, kit of the Program in force (NO_KIT before the first)
    position: object  # int32, ticks from the current bar line (sum of its TimeShifts)
    bar_ticks: object  # int32, length of the current bar
    bars: object  # int32, Bar tokens so far
    valid: object  # bool, every token so far was allowed


def _transitions(full: bool, has_tempo: bool, has_pedal: bool):
    """next phase [P, types] (-1 = not allowed) and the cost to complete each phase [P, kits]."""
    nxt = np.full((NUM_PHASES, len(T)), -1, np.int64)
    note_phase = NOTE_MICROTIMING if full else NOTE_DURATION
    pedal_phase = PEDAL_MICROTIMING if full else NOTE_DURATION
    events = {T.TIME_SHIFT: AFTER_SHIFT, T.TEMPO: OPEN, T.PROGRAM: AFTER_PROGRAM,
              T.PITCH: note_phase, T.DRUM_PITCH: note_phase, T.PEDAL: pedal_phase}
    for phase in (AFTER_BAR, OPEN, MORE_DURATION):
        nxt[phase, T.BAR], nxt[phase, T.EOS] = AFTER_BAR, ENDED
        for kind, after in events.items():
            nxt[phase, kind] = after
    nxt[AFTER_BAR, T.TIME_SIG] = OPEN
    nxt[MORE_DURATION, T.DURATION] = MORE_DURATION
    for kind, after in events.items():
        nxt[AFTER_SHIFT, kind] = after
    for kind in (T.PITCH, T.DRUM_PITCH, T.PEDAL):
        nxt[AFTER_PROGRAM, kind] = events[kind]
    nxt[START, T.BAR] = AFTER_BAR
    nxt[NOTE_MICROTIMING, T.MICROTIMING] = NOTE_VELOCITY
    nxt[NOTE_VELOCITY, T.VELOCITY] = NOTE_DURATION
    nxt[PEDAL_MICROTIMING, T.MICROTIMING] = NOTE_DURATION
    nxt[NOTE_DURATION, T.DURATION] = MORE_DURATION
    nxt[ENDED, T.PAD] = ENDED

    # Fewest tokens that finish each phase, per kit in force.
    cost = np.zeros((NUM_PHASES, 4), np.int64)
    note = 4 if full else 2  # Pitch [MicroTiming Velocity] Duration
    pedal = (3 if full else 2) if has_pedal else _FAR
    cost[START] = 1
    cost[NOTE_DURATION], cost[NOTE_VELOCITY], cost[NOTE_MICROTIMING] = 1, 2, 3
    cost[PEDAL_MICROTIMING] = 2
    cost[AFTER_PROGRAM] = min(note, pedal)  # the Program chose a kit whose notes exist
    with_program = 1 + min(note, pedal)
    tempo = 1 if has_tempo else _FAR
    cost[AFTER_SHIFT, NO_KIT] = min(tempo, with_program)
    cost[AFTER_SHIFT, MELODIC:] = min(tempo, note, pedal, with_program)
    return nxt, cost


class Grammar:
    """The automaton of one tokenizer and view.

    Args:
      tokenizer: a `pertok.PerTok` (its vocabulary and config).
      view: "full" (MicroTiming and Velocity slots) or "composition".
      max_bars: 0 = no limit; else Bar is refused once this many bars were written.
    """

    def __init__(self, tokenizer, view: str = "full", max_bars: int = 0):
        if view not in ("full", "composition"):
            raise ValueError(f"view must be 'full' or 'composition', not {view!r}")
        vocab = tokenizer.vocab
        self.view, self.max_bars, self.vocab_size = view, max_bars, len(vocab)
        types = vocab.type_of.astype(np.int64)
        values = vocab.value_of
        self.types = types.astype(np.int32)
        has_drums = len(vocab.type_ranges["DrumPitch"]) > 0
        has_melodic = len(vocab.type_ranges["Pitch"]) > 0
        has_pedal = len(vocab.type_ranges["Pedal"]) > 0
        nxt, cost = _transitions(view == "full", len(vocab.type_ranges["Tempo"]) > 0, has_pedal)
        self.next_phase = nxt[:, types].astype(np.int32)  # [P, V]
        self.cost = cost.astype(np.int32)  # [P, kits]
        is_program = types == T.PROGRAM
        kit = np.where(values == DRUM_PROGRAM, DRUMS, MELODIC)
        self.sets_kit = np.where(is_program, kit, NO_KIT).astype(np.int32)  # [V]
        # A Program is usable only if its kit has a note or a pedal to follow it.
        usable = np.where(kit == DRUMS, has_drums or has_pedal, has_melodic or has_pedal)
        self.needs_kit = np.select(
            [types == T.PITCH, types == T.DRUM_PITCH, types == T.PEDAL], [MELODIC, DRUMS, ANY_KIT],
            NO_KIT).astype(np.int32)
        self.never = (is_program & ~usable)  # [V] bool
        self.shift_ticks = np.where(types == T.TIME_SHIFT, values, 0).astype(np.int32)
        self.is_bar = types == T.BAR
        signature = np.where(types == T.TIME_SIG, values, -1)
        self.sets_bar_ticks = np.where(types == T.TIME_SIG, vocab.bar_lengths[signature], 0).astype(np.int32)
        self.skipped_at_start = (types == T.PAD) | (types == T.BOS)  # decode skips them
        self.default_bar_ticks = int(4 * tokenizer.config.ticks_per_quarter)

    def start(self, batch: int, xp=np) -> GrammarState:
        """The state before any token."""
        zeros = xp.zeros((batch,), xp.int32)
        return GrammarState(zeros + START, zeros + NO_KIT, zeros, zeros + self.default_bar_ticks,
                            zeros, xp.ones((batch,), bool))

    def _next(self, state: GrammarState, ids, xp):
        """(next phase, next kit, allowed ignoring the budget) of tokens `ids` (broadcast with
        the state's [B] fields expanded by the caller)."""
        s = state
        phase = xp.asarray(self.next_phase)[s.phase, ids]
        need = xp.asarray(self.needs_kit)[ids]
        kit_ok = (need == NO_KIT) | (need == s.kit) | ((need == ANY_KIT) & (s.kit != NO_KIT))
        shift_ok = s.position + xp.asarray(self.shift_ticks)[ids] < s.bar_ticks
        bar_ok = (self.max_bars <= 0) | ~xp.asarray(self.is_bar)[ids] | (s.bars < self.max_bars)
        ok = (phase >= 0) & kit_ok & shift_ok & bar_ok & ~xp.asarray(self.never)[ids]
        sets = xp.asarray(self.sets_kit)[ids]
        return phase, xp.where(sets != NO_KIT, sets, s.kit), ok

    def allowed(self, state: GrammarState, remaining=None, xp=np):
        """bool [B, V]: the tokens that may come next.

        Args:
          remaining: tokens left in the budget including this one ([B] or a scalar; None =
            no budget): a token is allowed only if the sequence can be finished after it.
        """
        expanded = GrammarState(*(field[:, None] for field in state))
        ids = xp.arange(self.vocab_size)[None]
        phase, kit, ok = self._next(expanded, ids, xp)
        if remaining is not None:
            left = xp.reshape(xp.asarray(remaining), (-1, 1)) - 1
            ok = ok & (xp.asarray(self.cost)[xp.maximum(phase, 0), kit] <= left)
        return ok

    def advance(self, state: GrammarState, ids_B, xp=np) -> GrammarState:
        """The state after each sequence's next token; `valid` turns False at a broken one."""
        s = state
        ids_B = xp.asarray(ids_B).astype(xp.int32)
        phase, kit, ok = self._next(s, ids_B, xp)
        skipped = (s.phase == START) & xp.asarray(self.skipped_at_start)[ids_B]
        ended = s.phase == ENDED  # decode ignores everything after EOS
        keep = skipped | ended
        phase = xp.where(keep, s.phase, xp.maximum(phase, 0)).astype(xp.int32)
        is_bar = xp.asarray(self.is_bar)[ids_B] & ~keep
        shift = xp.where(keep, 0, xp.asarray(self.shift_ticks)[ids_B])
        sets_bar = xp.asarray(self.sets_bar_ticks)[ids_B]
        return GrammarState(
            phase=phase, kit=xp.where(keep, s.kit, kit).astype(xp.int32),
            position=xp.where(is_bar, 0, s.position + shift).astype(xp.int32),
            bar_ticks=xp.where((sets_bar > 0) & ~keep, sets_bar, s.bar_ticks).astype(xp.int32),
            bars=(s.bars + is_bar).astype(xp.int32), valid=s.valid & (ok | keep))

    def tokens_to_finish(self, state: GrammarState, xp=np):
        """int32 [B]: the fewest tokens that bring each sequence to a place where it may end."""
        return xp.asarray(self.cost)[state.phase, state.kit]

    def run(self, ids, state: GrammarState | None = None) -> tuple[GrammarState, np.ndarray]:
        """Feed one sequence (NumPy, on the host): (final state [1], finished [len(ids)]).

        `finished[i]` says whether the sequence may end after token i (for cutting a prompt at
        a whole note); the state says whether every token was allowed (`valid`).
        """
        state = self.start(1) if state is None else state
        ids = np.asarray(ids, np.int64).reshape(-1)
        finished = np.zeros(len(ids), bool)
        complete = np.isin(np.arange(NUM_PHASES), COMPLETE)
        for index, token in enumerate(ids):
            if not 0 <= token < self.vocab_size:
                return state._replace(valid=np.zeros(1, bool)), finished
            state = self.advance(state, np.array([token]))
            finished[index] = complete[state.phase[0]] and state.valid[0]
        return state, finished

    def after_prompt(self, prompt_BxP, budget: int | None = None) -> GrammarState:
        """The state after each row of a prompt [B, P] (NumPy), ready to be continued.

        Raises:
          ValueError: a prompt token breaks the grammar, or the prompt ends inside a note that
            `budget` tokens cannot finish.
        """
        prompt_BxP = np.asarray(prompt_BxP, np.int64)
        state = self.start(prompt_BxP.shape[0])
        if ((prompt_BxP < 0) | (prompt_BxP >= self.vocab_size)).any():
            raise ValueError(f"the prompt holds ids outside the vocabulary of {self.vocab_size}")
        for index in range(prompt_BxP.shape[1]):
            state = self.advance(state, prompt_BxP[:, index])
            if not state.valid.all():
                raise ValueError(f"the prompt breaks PerTok's grammar at token {index}")
        needed = int(self.tokens_to_finish(state).max(initial=0))
        if budget is not None and needed > budget:
            raise ValueError(f"the prompt ends inside a note that needs {needed} more tokens; "
                             f"{budget} is too few")
        return state

    def accepts(self, ids) -> bool:
        """Whether the automaton allows every token of `ids` and may end after the last."""
        state, _ = self.run(ids)
        return bool(state.valid[0]) and int(self.tokens_to_finish(state)[0]) == 0
