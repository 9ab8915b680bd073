"""The PerceiverS module: parameters per combination, causality, the scale window, padding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceivers import Decoder, context_dropout_mask, flops_per_token
from tests.perceivers.tiny import (BATCH, L, N, VOCAB, fast_compile, full_forward, make_model,
                                   model_and_params, random_tokens)


def _changed(logits_a, logits_b):
    """Per latent: do the two [N, V] logits differ at all?"""
    return np.abs(np.asarray(logits_a) - np.asarray(logits_b)).max(axis=-1) > 0


def _with_token(ids, position):
    """`ids` with position's token replaced by 3, an id `random_tokens` never draws."""
    ids = ids.copy()
    ids[:, position] = 3
    return ids


def _zero_out(params, *path):
    """Params with the kernel of `path`'s output projection set to zero."""
    if not path:
        return {**params, "kernel": jnp.zeros_like(params["kernel"])}
    return {**params, path[0]: _zero_out(params[path[0]], *path[1:])}


@pytest.mark.parametrize("name, expected", [
    ("perceiver_ar", {"global", "global_norm", "context_norm"}),
    ("cascade", {"global", "global_norm", "context_norm", "scale", "scale_norm"}),
    ("sum", {"global", "global_norm", "context_norm", "scale"}),
    ("concat", {"global", "global_norm", "context_norm", "scale", "combine"}),
])
def test_cross_attention_parameters_per_combination(name, expected):
    model = make_model(name)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, L), jnp.int32)))
    assert set(shapes["params"]["cross_attention"]) == expected
    assert {k for k in shapes["params"] if k.startswith("layer_")} == {
        f"layer_{i}" for i in range(model.num_layers)}


def test_logits_shape_finite_and_causal():
    model, params = model_and_params("cascade")
    ids = random_tokens(L)
    probe = L - N + 3  # latent 3
    batch = np.concatenate([ids, _with_token(ids, probe), _with_token(ids, 2)])
    logits = full_forward("cascade", params, batch, np.ones(batch.shape, bool))
    assert logits.shape == (3, N, VOCAB) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    # A latent never sees a later token; from the changed position on, every latent does.
    np.testing.assert_array_equal(_changed(logits[0], logits[1]), np.arange(N) >= 3)
    # An early prefix token reaches every latent (through the global cross-attention).
    assert _changed(logits[0], logits[2]).all()


def test_scale_branch_sees_only_the_last_W_tokens():
    """With the global branch's and the latents' self-attention outputs zeroed, a token reaches
    a latent only through the scale branch: token j changes latent q (at key position q_pos)
    iff q_pos - W < j <= q_pos."""
    model, params = model_and_params("cascade")
    W = model.scale_window
    params = _zero_out(params, "cross_attention", "global", "out")
    for index in range(model.num_layers):
        params = _zero_out(params, f"layer_{index}", "self_attention", "attention", "out")
    ids = random_tokens(L, seed=3)
    probes = [2, L - N - W, L - N - 2, L - 3]
    batch = np.concatenate([ids] + [_with_token(ids, j) for j in probes])
    logits = full_forward("cascade", params, batch, np.ones(batch.shape, bool))
    q_pos = L - N + np.arange(N)
    for row, j in enumerate(probes, start=1):
        np.testing.assert_array_equal(_changed(logits[0], logits[row]),
                                      (q_pos - W < j) & (j <= q_pos), err_msg=f"token {j}")


@functools.cache
def _last_reading():
    """The cascade model with the "last" scale mask and W = N, its params and full pass."""
    model = make_model("cascade").clone(scale_mask="last", scale_window=N)
    params = model_and_params("cascade")[1]  # the same parameters serve both readings
    ids, mask = jnp.zeros((BATCH, L), jnp.int32), jnp.ones((BATCH, L), bool)
    forward = fast_compile(lambda p, ids, mask: model.apply({"params": p}, ids, mask),
                           params, ids, mask)

    def full(params, ids_BxL, mask_BxL):
        pad = ((0, BATCH - ids_BxL.shape[0]), (0, 0))
        return np.asarray(forward(params, np.pad(ids_BxL, pad), np.pad(mask_BxL, pad)))[
            :ids_BxL.shape[0]]

    return model, params, full


def test_last_reading_scale_branch_sees_only_the_latents_own_positions():
    """As above, with "last" and W = N: token j reaches latent q only if L - N <= j <= q_pos,
    so the scale branch is a causal self-attention over the latents' positions."""
    model, params, full = _last_reading()
    params = _zero_out(params, "cross_attention", "global", "out")
    for index in range(model.num_layers):
        params = _zero_out(params, f"layer_{index}", "self_attention", "attention", "out")
    ids = random_tokens(L, seed=5)
    probes = [2, L - N - 1, L - N, L - 3]
    batch = np.concatenate([ids] + [_with_token(ids, j) for j in probes])
    logits = full(params, batch, np.ones(batch.shape, bool))
    q_pos = L - N + np.arange(N)
    for row, j in enumerate(probes, start=1):
        np.testing.assert_array_equal(_changed(logits[0], logits[row]),
                                      (L - N <= j) & (j <= q_pos), err_msg=f"token {j}")


def test_last_reading_cached_logits_equal_the_full_pass_across_resets():
    """Teacher-forced cached decoding, a short left-padded prompt then two latent resets,
    equals the full pass of each window (float32, max abs difference 2e-5)."""
    model, params, full = _last_reading()
    decoder = Decoder(model, L, reset_fill=3)
    K = decoder.steps_per_reset
    tokens = random_tokens(10 + 3 * (K + 1), seed=1, batch=2)
    end, cached, expected = 10, [], []
    for _ in range(3):
        logits, cache = decoder.prefill(params, tokens[:, :end])  # a reset: 3 latents
        steps = [np.asarray(logits)]
        for t in range(end, end + K):
            step_logits, cache = decoder.step(params, tokens[:, t], cache)
            steps.append(np.asarray(step_logits)[:, None])
        cached.append(np.concatenate(steps, axis=1))
        real = tokens[:, max(end + K - L, 0):end + K]  # the last L tokens, left padded
        ids = np.zeros((2, L), np.int32)
        ids[:, L - real.shape[1]:] = real
        mask = np.broadcast_to(np.arange(L) >= L - real.shape[1], ids.shape)
        expected.append(full(params, ids, mask))
        end += K + 1
    np.testing.assert_allclose(np.concatenate(cached), np.concatenate(expected), atol=2e-5,
                               rtol=0)


def test_left_padding_changes_nothing():
    """A context of S < L real tokens, left padded to L, gives the logits of the S tokens alone
    (float32; max abs difference <= 1e-5)."""
    model, params = model_and_params("cascade")
    S = 20
    ids = random_tokens(S, seed=4)
    alone = fast_compile(lambda p, x: model.apply({"params": p}, x), params, ids)(params, ids)
    padded = np.concatenate([np.full((1, L - S), 7, np.int32), ids], axis=1)  # 7: not PAD
    mask = np.arange(L)[None] >= L - S
    np.testing.assert_allclose(full_forward("cascade", params, padded, mask), alone, atol=1e-5)


def test_context_dropout_drops_prefix_keys_only():
    mask = jnp.ones((64, 40), bool).at[:, :5].set(False)  # 5 left-padded positions
    kept = np.asarray(context_dropout_mask(jax.random.key(0), mask, 8, rate=0.5))
    assert kept[:, -8:].all()  # the latents are always keys
    assert not kept[:, :5].any()  # padding stays masked
    assert 0.4 < kept[:, 5:-8].mean() < 0.6
    none_dropped = context_dropout_mask(jax.random.key(0), mask, 8, rate=0.0)
    assert np.asarray(none_dropped).sum() == mask.sum()


def test_flops_per_token_literal():
    # L=32, N=8, D=16, F=32, one layer, V=50, per example (forward), useful work only:
    #   q,o 2*2*8*16*16 = 8192; k,v 2*2*32*16*16 = 32768; latent t at 24 + t sees 25 + t keys,
    #   228 in all: 2*2*228*16 = 14592; cross MLP 2*2*8*16*32 = 16384; layer 16384 + 16384 +
    #   causal 36 pairs 2*2*36*16 = 2304; logits 2*8*16*50 = 12800.
    model = make_model("perceiver_ar").clone(d_model=16, mlp_dim=32, num_layers=1, vocab_size=50)
    forward = 8192 + 32768 + 14592 + 16384 + 16384 + 16384 + 2304 + 12800
    assert flops_per_token(model, 32) == 3 * forward / 8
    # "sliding" W=6: projections of N + W - 1 = 13 keys, 6 keys per latent.
    sliding = model.clone(scale_window=6)
    assert flops_per_token(sliding, 32) - flops_per_token(model, 32) == 3 * (
        8192 + 2 * 2 * 13 * 16 * 16 + 2 * 2 * 8 * 6 * 16) / 8
    # "last" W=6: projections of the keys 26..31; latent t sees 26..24+t: 0+0+1+...+6 = 21.
    last = sliding.clone(scale_mask="last")
    assert flops_per_token(last, 32) - flops_per_token(model, 32) == 3 * (
        8192 + 2 * 2 * 6 * 16 * 16 + 2 * 2 * 21 * 16) / 8
