"""The PerceiverS module: parameters per combination, causality, the scale window, padding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceivers import context_dropout_mask, flops_per_token
from tests.perceivers.tiny import (L, N, VOCAB, fast_compile, full_forward, make_model,
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
    # L=32, N=8, D=16, F=32, one layer, V=50, per example (forward):
    #   q,o 2*2*8*16*16 = 8192; k,v 2*2*32*16*16 = 32768; scores 2*2*8*32*16 = 16384;
    #   cross MLP 2*2*8*16*32 = 16384; layer 16384 + 16384 + 4096; logits 2*8*16*50 = 12800.
    model = make_model("perceiver_ar").clone(d_model=16, mlp_dim=32, num_layers=1, vocab_size=50)
    forward = 8192 + 32768 + 16384 + 16384 + 16384 + 16384 + 4096 + 12800
    assert flops_per_token(model, 32) == 3 * forward / 8
    # The scale branch adds its projections and W (here 6) keys per latent.
    windowed = model.clone(scale_window=6)
    assert flops_per_token(windowed, 32) - flops_per_token(model, 32) == 3 * (
        8192 + 32768 + 2 * 2 * 8 * 6 * 16) / 8
