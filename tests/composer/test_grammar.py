"""Ideas sampled under the Composer's grammar decode strictly and keep to their bars and budget."""
import jax
import jax.numpy as jnp
import numpy as np

from composer import grammar
from pertok import PerTok, TokenType

NUM_BARS, LENGTH, BATCH = 3, 80, 32


def test_random_walks_through_the_allowed_tokens_decode_strictly():
    tokenizer = PerTok()
    automaton = grammar.idea_grammar(tokenizer, NUM_BARS)
    types = jnp.asarray(automaton.types)

    @jax.jit
    def walk(rng):
        def step(state, inputs):
            position, key = inputs
            allowed = automaton.allowed(state, LENGTH - position, xp=jnp)
            # Favour the rare structural tokens so that walks use up their bars.
            logits = jnp.where(allowed, 4.0 * ((types == TokenType.BAR) | (types == TokenType.EOS)), -jnp.inf)
            token = jax.random.categorical(key, logits)
            return automaton.advance(state, token, xp=jnp), (token, allowed.sum(-1))
        inputs = (jnp.arange(LENGTH), jax.random.split(rng, LENGTH))
        _, (tokens, choices) = jax.lax.scan(step, automaton.start(BATCH, xp=jnp), inputs)
        return tokens.T, choices.T

    ended = 0
    for seed in range(3):
        tokens, choices = (np.asarray(a) for a in walk(jax.random.key(seed)))
        assert (choices[:, 0] == 1).all()  # only Bar may open an idea
        for row in tokens:
            end = np.flatnonzero(row == 2)
            ended += len(end) > 0
            ids = row[:end[0]] if len(end) else row  # no EOS: the budget ended it after a note
            tokenizer.decode(ids, strict=True, view="composition")  # raises on any broken rule
            assert 1 <= (tokenizer.token_types(ids) == TokenType.BAR).sum() <= NUM_BARS
    assert ended >= BATCH  # most of the 3 x BATCH walks chose EOS
