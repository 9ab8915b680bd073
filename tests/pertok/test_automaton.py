"""The grammar automaton (`pertok.grammar`) and strict decoding agree.

Both directions: every sequence the automaton accepts decodes strictly (random walks under the
automaton for thousands of steps, jitted), and every encoded piece is accepted; on one-token
edits of real sequences, the automaton accepts exactly what `decode(strict=True)` accepts.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from pertok import PerTok, PerTokConfig, PerTokDecodeError
from pertok.grammar import EOS_ID, Grammar
from pertok.synthetic import generate_score
from pertok.vocab import TokenType
from tests.pertok.scores import random_scores

PLAIN = PerTok()
RICH = PerTok(PerTokConfig(use_tempos=True, use_sustain_pedal=True))  # Tempo and Pedal tokens
STEPS, BATCH = 1000, 6


def _strict_ok(tokenizer, ids, view) -> bool:
    try:
        tokenizer.decode(ids, strict=True, view=view)
        return True
    except PerTokDecodeError:
        return False


def _walks(grammar: Grammar, seed: int, budget: int):
    """BATCH random walks of `budget` tokens: random logits masked by the automaton, half the
    rows never choosing EOS (so they run into the budget). Returns tokens and allowed counts."""
    types = jnp.asarray(grammar.types)
    no_eos = (jnp.arange(BATCH) % 2 == 0)[:, None]

    @jax.jit
    def walk(rng):
        def step(state, inputs):
            index, key = inputs
            allowed = grammar.allowed(state, budget - index, xp=jnp)
            logits = 3.0 * jax.random.normal(key, allowed.shape)
            # Favour the rare structural tokens, so that bars, meters and programs change.
            logits += 4.0 * ((types == TokenType.BAR) | (types == TokenType.PROGRAM))
            logits = jnp.where(no_eos & (jnp.arange(grammar.vocab_size) == EOS_ID), -jnp.inf, logits)
            token = jax.random.categorical(key, jnp.where(allowed, logits, -jnp.inf))
            return grammar.advance(state, token, xp=jnp), (token, allowed.sum(-1))

        keys = jax.random.split(rng, budget)
        return jax.lax.scan(step, grammar.start(BATCH, xp=jnp), (jnp.arange(budget), keys))

    state, (tokens, choices) = walk(jax.random.key(seed))
    return np.asarray(tokens).T, np.asarray(choices).T, state


@pytest.mark.parametrize("tokenizer", [PLAIN, RICH], ids=["plain", "tempo+pedal"])
@pytest.mark.parametrize("view", ["full", "composition"])
def test_random_walks_under_the_automaton_always_decode_strictly(tokenizer, view):
    grammar = Grammar(tokenizer, view)
    seen = set()
    for seed in range(2):
        tokens, choices, state = _walks(grammar, seed, STEPS)
        assert (choices >= 1).all()  # never stuck, even at the end of the budget
        assert (choices[:, 0] == 1).all()  # only Bar may open a sequence
        assert np.asarray(state.valid).all()
        assert (np.asarray(grammar.tokens_to_finish(state, xp=jnp)) == 0).all()  # budget respected
        for row in tokens:
            end = np.flatnonzero(row == EOS_ID)
            content = row[:end[0]] if len(end) else row
            assert (row[len(content) + 1:] == 0).all()  # only PAD after EOS
            score = tokenizer.decode(row, strict=True, view=view)  # raises on any broken rule
            seen.update(tokenizer.token_types(content).tolist())
            if len(end) == 0:
                assert len(content) == STEPS and score.note_num() > 0
    wanted = {TokenType.BAR, TokenType.TIME_SIG, TokenType.TIME_SHIFT, TokenType.PROGRAM,
              TokenType.PITCH, TokenType.DRUM_PITCH, TokenType.DURATION}
    wanted |= {TokenType.MICROTIMING, TokenType.VELOCITY} if view == "full" else set()
    wanted |= {TokenType.TEMPO, TokenType.PEDAL} if tokenizer is RICH else set()
    assert wanted <= seen  # the walks reached every kind of token


@pytest.mark.parametrize("view", ["full", "composition"])
def test_the_built_in_corpus_is_accepted(view):
    grammar = Grammar(PLAIN, view)
    for seed in range(4):  # piano, drums and bands, several meters and tempos
        ids = PLAIN.encode(generate_score(seed), view=view)
        assert grammar.accepts(np.concatenate([[PLAIN.bos_id], ids, [EOS_ID, 0, 0]]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_scores(max_notes=40))
def test_random_scores_are_accepted(score):
    for view in ("full", "composition"):
        assert Grammar(RICH, view).accepts(RICH.encode(score, view=view))


def test_the_automaton_accepts_exactly_what_strict_decoding_accepts():
    """One to three random edits (replace, delete, insert) of real sequences."""
    rng, accepted, total = np.random.default_rng(0), 0, 0
    families = [r for r in PLAIN.type_ranges.values() if len(r)]
    for view in ("full", "composition"):
        grammar = Grammar(PLAIN, view)
        for seed in range(2):  # a piano piece and a drum groove
            ids = PLAIN.encode(generate_score(seed), view=view)[:120]
            ids = ids[:np.flatnonzero(grammar.run(ids)[1])[-1] + 1]  # end after a whole note
            for _ in range(60):
                edited = ids.copy()
                for _ in range(rng.integers(1, 4)):
                    family = families[rng.integers(len(families))]
                    new, where = rng.integers(family.start, family.stop), rng.integers(len(edited))
                    edited = [lambda x: np.where(np.arange(len(x)) == where, new, x),
                              lambda x: np.delete(x, where),
                              lambda x: np.insert(x, where, new)][rng.integers(3)](edited)
                expected = _strict_ok(PLAIN, edited, view)
                assert grammar.accepts(edited) == expected, PLAIN.names(edited)
                accepted, total = accepted + expected, total + 1
    assert 0.03 * total < accepted < 0.9 * total  # both answers were exercised


def test_bar_lines_budget_and_prompt_state():
    grammar = Grammar(PLAIN, "composition", max_bars=1)
    tpq = PLAIN.config.ticks_per_quarter
    bar, shift4 = PLAIN.vocab.ids["Bar"], PLAIN.vocab.ids[f"TimeShift_{4 * tpq}"]  # a 4/4 bar
    program, pitch, duration = (PLAIN.vocab.ids[n] for n in ("Program_0", "Pitch_60", f"Duration_{tpq}"))
    state, finished = grammar.run([PLAIN.bos_id, bar, program, pitch])
    assert finished.tolist() == [False, True, False, False]
    assert int(grammar.tokens_to_finish(state)[0]) == 1  # the note's Duration
    allowed = grammar.allowed(state, remaining=1)[0]
    assert allowed.sum() == len(PLAIN.type_ranges["Duration"])
    state, _ = grammar.run([duration], state)
    allowed = grammar.allowed(state)[0]
    assert not allowed[shift4] and allowed[shift4 - 1]  # 4 beats would reach the bar line
    assert not allowed[bar] and allowed[EOS_ID]  # max_bars reached
    assert not grammar.allowed(state, remaining=1)[0, PLAIN.type_ranges["TimeShift"].start]
    assert not grammar.accepts([bar, pitch, duration])  # a note before any Program
