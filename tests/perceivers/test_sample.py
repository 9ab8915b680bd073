"""Cached sampling: logits equal the full forward pass step by step, resets, seeds, filters.

Tolerance: cached and full-forward float32 logits agree to max abs difference 2e-5 (they
differ only in summation order: masked keys get exactly zero weight in both).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceivers import Decoder, PerceiverS, SampleSettings, filter_logits, sample_tokens
from pertok import TokenType
from tests.perceivers import tiny
from tests.perceivers.tiny import L, N, VARIANTS, full_forward, model_and_params, random_tokens

ATOL = 2e-5
FILL = 3  # reset_fill: a reset keeps 3 latents, then N - 3 = 5 steps fill the latent cache


def _window(tokens, end):
    """The full forward pass's input for latents ending at `end`: last L tokens, left padded."""
    ids = np.zeros((tokens.shape[0], L), np.int32)
    real = tokens[:, max(end - L, 0):end]
    ids[:, L - real.shape[1]:] = real
    mask = np.arange(L)[None] >= L - real.shape[1]
    return ids, np.broadcast_to(mask, ids.shape)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cached_logits_equal_the_full_forward_pass_across_resets(name):
    """Three windows: a short left-padded prompt, then two latent resets, teacher forced."""
    _, params = model_and_params(name)
    decoder = tiny.decoder(name, FILL)
    K = decoder.steps_per_reset
    tokens = random_tokens(10 + 3 * (K + 1), seed=1, batch=2)
    end, cached, windows = 10, [], []
    for _ in range(3):
        logits, cache = decoder.prefill(params, tokens[:, :end])  # a reset: FILL latents
        steps = [logits]
        for t in range(end, end + K):
            step_logits, cache = decoder.step(params, tokens[:, t], cache)
            steps.append(step_logits[:, None])
        cached.append(np.concatenate(steps, axis=1))  # N latents: positions end + K - N ..
        windows.append(_window(tokens, end + K))
        end += K + 1  # the token drawn from the last step's logits starts the next reset
    ids, mask = (np.concatenate(parts) for parts in zip(*windows))
    expected = full_forward(name, params, ids, mask)
    np.testing.assert_allclose(np.concatenate(cached), expected, atol=ATOL, rtol=0)


def test_generate_greedy_follows_the_full_forward_argmax_and_pads_after_eos():
    _, params = model_and_params("cascade")
    decoder = tiny.decoder("cascade", FILL)
    K = decoder.steps_per_reset
    prompt = random_tokens(4, seed=2, batch=2)
    greedy = SampleSettings(temperature=0.0)
    out = decoder.generate(params, prompt, 2 * (K + 1), jax.random.key(0), greedy)
    tokens = np.concatenate([prompt, out], axis=1)
    ends = [4 + K, 4 + 2 * K + 1]  # each reset window's last input
    ids, mask = (np.concatenate(parts) for parts in zip(*[_window(tokens, end) for end in ends]))
    logits = full_forward("cascade", params, ids, mask)
    predicted = np.concatenate([logits[0:2, -(K + 1):], logits[2:4, -(K + 1):]], axis=1).argmax(-1)
    # Latent N - K - 1 predicts the first token of its round, ... the last latent the round's last.
    np.testing.assert_array_equal(out, predicted)
    eos = int(out[0, 2])
    cut = decoder.generate(params, prompt, 2 * (K + 1), jax.random.key(0), greedy, eos_id=eos)
    first = np.argmax(out == eos, axis=1)
    for row in range(2):
        if (out[row] == eos).any():
            np.testing.assert_array_equal(cut[row, :first[row] + 1], out[row, :first[row] + 1])
            assert (cut[row, first[row] + 1:] == 0).all()


def test_a_seed_reproduces_a_sample_and_another_seed_does_not():
    _, params = model_and_params("cascade")
    decoder = tiny.decoder("cascade", FILL)
    prompt = random_tokens(1, batch=2)
    settings = SampleSettings(temperature=1.0, top_p=0.9)
    first = decoder.generate(params, prompt, 12, jax.random.key(5), settings)
    assert first.shape == (2, 12)
    np.testing.assert_array_equal(decoder.generate(params, prompt, 12, jax.random.key(5), settings),
                                  first)
    assert (decoder.generate(params, prompt, 12, jax.random.key(6), settings) != first).any()


def test_filter_logits_top_k_and_top_p_literal():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda **kw: np.isfinite(np.asarray(filter_logits(logits, **kw)))[0].tolist()
    assert keep(top_k=2) == [True, True, False, False]
    assert keep(top_p=0.5) == [True, False, False, False]  # 0.5 is reached by the first
    assert keep(top_p=0.6) == [True, True, False, False]
    assert keep(top_p=0.96) == [True, True, True, True]
    assert keep(top_k=3, top_p=0.7) == [True, True, False, False]
    assert keep() == [True] * 4


def test_sample_tokens_greedy_and_top_k_one_are_the_argmax():
    logits = jnp.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    for settings in (dict(temperature=0.0), dict(temperature=2.0, top_k=1)):
        assert sample_tokens(jax.random.key(0), logits, **settings).tolist() == [1, 0]


def test_decoder_refuses_a_reset_fill_outside_1_to_N_minus_1():
    model, _ = model_and_params("perceiver_ar")
    for fill in (0, N):
        with pytest.raises(ValueError, match="reset_fill"):
            Decoder(model, L, reset_fill=fill)


def test_sampling_under_the_grammar_continues_the_prompt_and_decodes_strictly():
    """An untrained model (random logits), a prompt cut inside a note, several latent resets."""
    from pertok import PerTok
    from pertok.grammar import Grammar

    tokenizer = PerTok()
    model = PerceiverS(vocab_size=tokenizer.vocab_size, query_length=N, d_model=16, num_heads=2,
                       num_layers=1, mlp_dim=32, scale_window=4)
    params = tiny.fast_compile(lambda key: model.init(key, jnp.zeros((1, L), jnp.int32))["params"],
                               jax.random.key(3))(jax.random.key(3))
    decoder = Decoder(model, L, reset_fill=FILL, grammar=Grammar(tokenizer, "full"))
    names = ["Bar", "Program_0", "Pitch_60", "MicroTiming_0"]  # a note still waiting for its Velocity
    prompt = np.array([[tokenizer.bos_id] + [tokenizer.vocab.ids[n] for n in names]] * 3)
    seen = []
    out = decoder.generate(params, prompt, 40, jax.random.key(0), SampleSettings(top_p=0.9),
                           eos_id=tokenizer.eos_id, progress=seen.append)
    assert out.shape == (3, 40) and seen[-1] == 40 and seen == sorted(seen)
    for row in out:
        assert tokenizer.token_types(row[:1])[0] == TokenType.VELOCITY  # the prompt's note goes on
        tokenizer.decode(np.concatenate([prompt[0], row]), strict=True)
    with pytest.raises(ValueError, match="breaks PerTok's grammar at token 1"):
        decoder.generate(params, prompt[:, [0, 2]], 8, jax.random.key(0))  # Program before Bar
    with pytest.raises(ValueError, match="needs 2 more tokens; 1 is too few"):
        decoder.generate(params, prompt, 1, jax.random.key(0))
