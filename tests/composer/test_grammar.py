"""Sampling under the grammar state machine gives sequences that PerTok decodes strictly."""
import jax
import jax.numpy as jnp
import numpy as np

from composer import grammar
from pertok import PerTok, TokenType

NUM_BARS, LENGTH, BATCH = 3, 80, 32


def test_random_walks_through_the_allowed_tokens_decode_strictly():
    tokenizer = PerTok()
    tables = grammar.GrammarTables.from_tokenizer(tokenizer)
    types = jnp.asarray(tables.types)

    @jax.jit
    def walk(rng):
        def step(carry, key):
            state, done = carry
            allowed = grammar.allowed(state, tables, NUM_BARS)
            # Favour the rare structural tokens so that walks end within LENGTH.
            logits = jnp.where(allowed, 4.0 * ((types == TokenType.BAR) | (types == TokenType.EOS)), -jnp.inf)
            token = jax.random.categorical(key, logits)
            token = jnp.where(done, 0, token)
            return (grammar.advance(state, token, tables), done | (token == 2)), (token, allowed.sum(-1))
        start = (grammar.GrammarState.start(BATCH, tables), jnp.zeros(BATCH, bool))
        _, (tokens, choices) = jax.lax.scan(step, start, jax.random.split(rng, LENGTH))
        return tokens.T, choices.T

    finished = 0
    for seed in range(3):
        tokens, choices = (np.asarray(a) for a in walk(jax.random.key(seed)))
        assert (choices[:, 0] == 1).all()  # only Bar may open an idea
        for row in tokens:
            end = np.flatnonzero(row == 2)
            if not len(end):
                continue  # ran out of tokens mid-idea; finish_idea's business
            finished += 1
            ids = row[:end[0]]
            tokenizer.decode(ids, strict=True)  # raises on any broken rule
            assert 1 <= (tokenizer.token_types(ids) == TokenType.BAR).sum() <= NUM_BARS
    assert finished >= BATCH  # most of the 3 x BATCH walks
