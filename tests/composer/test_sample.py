"""The sampler starts from the conditioning prefix (the same tokens as a full pass with it),
keeps to the prefix's TimeSig, Programs and bar count, and is greedy at temperature 0."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from composer import IdeaGenerator, named_conditions
from composer.sample import EOS_ID, _NEVER
from composer.model import BOS_ID, PAD_ID
from pertok import PerTok, TokenType

TOKENS, BATCH = 24, 3


@pytest.fixture(scope="module")
def setup(tiny_composer):
    task, params, _ = tiny_composer
    tokenizer = PerTok()
    generator = IdeaGenerator(task.model, tokenizer, TOKENS, task.num_bars)
    z = jax.random.normal(jax.random.key(1), (BATCH, *task.model.latent_shape))
    prefix = task.model.prefix_ids(named_conditions(tokenizer, "3/4", "33", 1))
    return task.model, params, tokenizer, generator, z, prefix


def _greedy_by_full_passes(model, params, generator, z, prefix_BxP):
    """Greedy decoding re-reading [prefix, BOS, tokens so far] with no cache at every step."""
    decode = jax.jit(model.decode)
    ids = np.full((BATCH, TOKENS + 1), PAD_ID, np.int32)
    ids[:, 0] = BOS_ID
    rules, done = generator.grammar.start(BATCH), np.zeros(BATCH, bool)
    for position in range(TOKENS):
        logits = np.asarray(decode(params, jnp.asarray(ids[:, :-1]), z, prefix_BxP))[:, position]
        allowed = generator.grammar.allowed(rules, TOKENS - position)
        constrained = allowed & np.asarray(generator._prefix_mask(prefix_BxP, rules))
        allowed = np.where(constrained.any(-1, keepdims=True), constrained, allowed)
        token = np.where(done, PAD_ID, np.where(allowed, logits, _NEVER).argmax(-1))
        rules, done = generator.grammar.advance(rules, token), done | (token == EOS_ID)
        ids[:, position + 1] = token
    return ids[:, 1:]


def test_temperature_0_is_the_greedy_decoding_of_the_full_pass_with_the_prefix(setup):
    model, params, _, generator, z, prefix = setup
    prefix_BxP = jnp.broadcast_to(jnp.asarray(prefix)[None], (BATCH, len(prefix)))
    greedy = generator(params, z, jax.random.key(0), temperature=0.0, prefix_BxP=prefix)
    again = generator(params, z, jax.random.key(7), temperature=0.0, top_p=0.5, prefix_BxP=prefix_BxP)
    np.testing.assert_array_equal(greedy, again)  # no randomness at temperature 0
    np.testing.assert_array_equal(greedy, _greedy_by_full_passes(model, params, generator, z, prefix_BxP))
    sampled = generator(params, z, jax.random.key(0), temperature=1.0, prefix_BxP=prefix)
    assert not np.array_equal(sampled, greedy)  # temperature 1 draws


def test_ideas_keep_to_the_prefix_meter_programs_and_bars(setup):
    _, params, tokenizer, generator, _, _ = setup
    batch = 16
    prefix = generator.model.prefix_ids(named_conditions(tokenizer, "3/4", "33,drums", 1))
    ids = generator(params, jax.random.normal(jax.random.key(2), (batch, *generator.model.latent_shape)),
                    jax.random.key(3), temperature=2.0, prefix_BxP=prefix)
    allowed_programs = {tokenizer.vocab.ids["Program_33"], tokenizer.vocab.ids["Program_drums"]}
    for row in ids:
        types = tokenizer.token_types(row)
        assert types[0] == TokenType.BAR and row[1] == tokenizer.vocab.ids["TimeSig_3/4"]
        assert set(row[types == TokenType.TIME_SIG]) == {row[1]}
        assert set(row[types == TokenType.PROGRAM]) <= allowed_programs
        assert (types == TokenType.BAR).sum() == 1
    # With every field open the meter and programs are free: some of the same draws differ.
    free = generator(params, jax.random.normal(jax.random.key(2), (batch, *generator.model.latent_shape)),
                     jax.random.key(3), temperature=2.0)
    assert not all(row[1] == tokenizer.vocab.ids["TimeSig_3/4"] for row in free)


def test_an_idea_with_a_known_bar_count_does_not_end_before_its_last_bar(setup):
    model, params, tokenizer, _, _, _ = setup
    generator = IdeaGenerator(model, tokenizer, 96, 2)  # room for two bars
    bars = 2
    prefix = generator.model.prefix_ids(named_conditions(tokenizer, "4/4", "0", bars))
    z = jax.random.normal(jax.random.key(5), (32, *generator.model.latent_shape))
    ids = generator(params, z, jax.random.key(6), temperature=2.0, prefix_BxP=prefix)
    ended = [row for row in ids if (row == EOS_ID).any()]
    assert ended  # an untrained model at temperature 2 ends some ideas by EOS
    for row in ended:
        before_eos = row[:np.flatnonzero(row == EOS_ID)[0]]
        assert (tokenizer.token_types(before_eos) == TokenType.BAR).sum() == bars
    open_ = generator(params, z, jax.random.key(6), temperature=2.0)  # bar count open: EOS anywhere
    early = [row for row in open_ if (row == EOS_ID).any()
             and (tokenizer.token_types(row[:np.flatnonzero(row == EOS_ID)[0]]) == TokenType.BAR).sum() < bars]
    assert early, "the control: with the bar count open, some ideas end early"


def test_a_prefix_of_the_wrong_shape_is_one_clear_error(setup):
    _, params, _, generator, z, prefix = setup
    with pytest.raises(ValueError, match="model.prefix_ids"):
        generator(params, z, jax.random.key(0), prefix_BxP=prefix[:-1])


def test_latents_of_the_wrong_shape_are_one_clear_error(setup):
    _, params, _, generator, z, _ = setup
    with pytest.raises(ValueError, match="model.latent_shape"):
        generator(params, z[:, 0], jax.random.key(0))  # one latent per idea, for a per-bar model
