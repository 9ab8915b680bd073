"""The demo task: a causal LM whose logits never see the future, its loss and its FLOPs."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from baseline import CausalTransformer, LMDecoder, LMTask, flops_per_token


def _model_config(**values):
    config = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, mlp_dim=32,
                                            dropout=0.0, dtype="float32"))
    config.update(values)
    return config


def test_changing_later_tokens_leaves_earlier_logits_unchanged():
    model = CausalTransformer(vocab_size=20, context_length=8, d_model=16, num_layers=2,
                              num_heads=2, mlp_dim=32)
    ids_BxT = np.random.default_rng(1).integers(4, 20, size=(2, 8))
    params = jax.jit(model.init)(jax.random.key(0), ids_BxT)["params"]  # eager init compiles per op
    apply = jax.jit(lambda ids: model.apply({"params": params}, ids))
    logits_BxTxV = apply(ids_BxT)
    assert logits_BxTxV.shape == (2, 8, 20) and logits_BxTxV.dtype == jnp.float32
    for t in (0, 3, 6):
        changed_BxT = ids_BxT.copy()
        changed_BxT[:, t + 1:] = (ids_BxT[:, t + 1:] + 7) % 16 + 4
        changed = apply(changed_BxT)
        np.testing.assert_array_equal(changed[:, : t + 1], logits_BxTxV[:, : t + 1])
        assert not np.allclose(changed[:, t + 1], logits_BxTxV[:, t + 1])


def test_loss_ignores_padding_and_is_finite():
    task = LMTask(_model_config(), vocab_size=20, context_length=8)
    batch = {"inputs": np.array([[1, 5, 6, 7, 2, 0, 0, 0]]), "targets": np.array([[5, 6, 7, 2, 0, 0, 0, 0]]),
             "weights": np.array([[1, 1, 1, 1, 0, 0, 0, 0]], np.float32)}
    params = jax.jit(task.init)(jax.random.key(0), batch)
    loss_fn = jax.jit(lambda params, batch: task.loss(params, batch, jax.random.key(1), False))
    loss, metrics = loss_fn(params, batch)
    padded = dict(batch, targets=np.where(batch["weights"] > 0, batch["targets"], 9))  # under weight 0
    assert float(loss) == float(loss_fn(params, padded)[0])
    assert np.isfinite(float(loss)) and 0 <= float(metrics["accuracy"]) <= 1


def test_flops_per_token_and_config_checks():
    assert flops_per_token(512, 8, 2048, 600, 1024) == pytest.approx(
        6 * (8 * (4 * 512**2 + 2 * 512 * 2048) + 512 * 600) + 6 * 8 * 2 * 1024 * 512)
    with pytest.raises(ValueError, match="model.d_model=16 must be divisible by model.num_heads=3"):
        LMTask(_model_config(num_heads=3), 20, 8).validate()
    with pytest.raises(ValueError, match="model.dtype"):
        LMTask(_model_config(dtype="float16"), 20, 8).validate()


def test_greedy_sampling_follows_the_sliding_window_argmax():
    model = CausalTransformer(vocab_size=20, context_length=8, d_model=16, num_layers=1,
                              num_heads=2, mlp_dim=32)
    prompt = np.array([[1, 5, 6], [1, 9, 4]], np.int32)
    params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    out = LMDecoder(model, chunk=4).generate(params, prompt, 10, jax.random.key(0), temperature=0.0)
    tokens = np.concatenate([prompt, out], axis=1)
    apply = jax.jit(lambda ids: model.apply({"params": params}, ids))
    for n in range(3, 13):  # the token at n from the (up to) 8 tokens before it
        window = tokens[:, max(n - 8, 0):n]
        padded = np.pad(window, ((0, 0), (0, 8 - window.shape[1])))
        expected = np.asarray(apply(padded))[:, window.shape[1] - 1].argmax(-1)
        np.testing.assert_array_equal(tokens[:, n], expected)


def test_sampling_under_the_grammar_decodes_strictly():
    from pertok import PerTok
    from pertok.grammar import Grammar

    tokenizer = PerTok()
    model = CausalTransformer(vocab_size=tokenizer.vocab_size, context_length=8, d_model=16,
                              num_layers=1, num_heads=2, mlp_dim=32)
    params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    decoder = LMDecoder(model, Grammar(tokenizer, "full"), chunk=12)
    seen = []
    out = decoder.generate(params, np.ones((3, 1), np.int32), 30, jax.random.key(1),
                           eos_id=tokenizer.eos_id, progress=seen.append)
    assert out.shape == (3, 30) and seen == [12, 24, 30]
    for row in out:
        assert tokenizer.decode(row, strict=True).note_num() > 0
