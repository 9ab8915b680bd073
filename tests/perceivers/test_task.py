"""The PerceiverS task: loss, config checks, the config file, training and --mode=generate."""
import math
import os

import jax
import numpy as np
import optax
import pytest

from experiments import config_file
from experiments.sweep import points
from perceivers import PerceiverSTask
from tests.perceivers.tiny import (L, N, VOCAB, full_forward, make_model, model_and_params,
                                   random_tokens)
from training.data import MemoryPieces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "experiments/configs/perceivers.py")


def _config(variant="tiny", **overrides):
    config = config_file.load_config(f"{CONFIG}:{variant}")
    for key, value in overrides.items():
        block, field = key.split(".")
        config[block][field] = value
    return config


def _tiny_task(**overrides):
    """A task whose model is tests.perceivers.tiny's "cascade" model."""
    model = make_model("cascade")
    values = {"model.context_length": L, "model.query_length": N, "model.d_model": model.d_model,
              "model.num_heads": model.num_heads, "model.num_layers": model.num_layers,
              "model.mlp_dim": model.mlp_dim, "model.scale_window": model.scale_window}
    config = _config(**{**values, **overrides})
    return PerceiverSTask(config.model, VOCAB, config.data.segmentation), config


def test_loss_counts_weighted_targets_only_in_bits():
    task, _ = _tiny_task()
    assert task.model == make_model("cascade")
    _, params = model_and_params("cascade")
    inputs = random_tokens(L, seed=5, batch=2)
    inputs[1, :10] = 0  # left padding
    targets = random_tokens(N, seed=6, batch=2)
    weights = np.ones((2, N), np.float32)
    weights[0, :3] = 0
    batch = {"inputs": inputs, "targets": targets, "weights": weights}
    loss_fn = jax.jit(lambda params, batch: task.loss(params, batch, jax.random.key(0), False))
    loss, metrics = loss_fn(params, batch)
    logits = full_forward("cascade", params, inputs, inputs != 0)
    per_token = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
    np.testing.assert_allclose(loss, (per_token * weights).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(metrics["bits_per_token"], loss / math.log(2), rtol=1e-6)
    changed = dict(batch, targets=np.where(weights > 0, targets, 7))  # only weight-0 targets
    np.testing.assert_allclose(loss_fn(params, changed)[0], loss, rtol=1e-6)


def test_validate_names_every_bad_key():
    task, _ = _tiny_task(**{"model.query_length": 40, "model.combination": "product",
                            "model.rotary_fraction": 0.3, "data.segmentation": "sliding"})
    with pytest.raises(ValueError) as error:
        task.validate()
    for key in ("model.query_length=40", "model.combination='product'",
                "model.rotary_fraction=0.3", "data.segmentation='sliding'"):
        assert key in str(error.value)


def test_config_variants_are_locked_and_the_sweep_lists_its_points():
    for variant in ("tiny", "base", "paper"):
        config = _config(variant)
        task = PerceiverSTask(config.model, 603, config.data.segmentation)
        task.validate()
        with pytest.raises(AttributeError):
            config.model.unknown_field = 1
    assert _config("paper").model.context_length == 32768
    assert _config("paper").model.query_length == 1024
    sweep = points(f"{CONFIG}:base")
    assert sweep[0] == {} and len(sweep) == 12  # the base point, then 3 + 2 + 1 + 2 + 3 others
    assert {"model.scale_window": 0} in sweep and {"data.segmentation": "fixed"} in sweep
    assert {"model.scale_mask": "last"} in sweep
    assert len({tuple(sorted(p.items())) for p in sweep}) == len(sweep)


def test_train_two_steps_then_generate_writes_midi(tmp_path, capsys):
    from experiments.perceivers import generate
    from pertok import PerTok
    from training import Trainer
    from training import mesh as mesh_lib

    tokenizer = PerTok()
    _, config = _tiny_task(**{"model.num_layers": 1, "train.steps": 2, "train.batch_size": 2,
                              "train.warmup_steps": 1, "eval.every": 0, "checkpoint.every": 2,
                              "data.valid_fraction": 0.0, "sample.num_tokens": 6,
                              "sample.num_samples": 2, "sample.reset_fill": 3})
    task = PerceiverSTask(config.model, tokenizer.vocab_size, config.data.segmentation)
    rng = np.random.default_rng(0)
    pieces = MemoryPieces([rng.integers(4, tokenizer.vocab_size, 40) for _ in range(4)],
                          [f"{i}.mid" for i in range(4)])
    mesh = mesh_lib.make_mesh(1, devices=jax.devices()[:1])
    trainer = Trainer(task, config, str(tmp_path), pieces, mesh=mesh)
    try:
        trainer.train()
    finally:
        trainer.close()
    paths = generate(config, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["step2-seed0-0.mid", "step2-seed0-1.mid"]
    assert all(os.path.getsize(p) > 0 for p in paths)
    printed = capsys.readouterr().out
    assert printed.count("0 of the generated tokens dropped by decoding (sampled under PerTok's "
                         "grammar)") == 2 and paths[0] in printed


@pytest.mark.parametrize("overrides, message", [
    ({"model.scale_window": 33}, "model.scale_window=33 must lie in 0..model.context_length=32"),
    ({"model.scale_window": -1}, "model.scale_window=-1 must lie in 0..model.context_length=32"),
    ({"model.query_length": 33}, "model.query_length=33 must lie in 1..model.context_length=32"),
])
def test_impossible_points_are_refused_in_one_line(overrides, message):
    task, _ = _tiny_task(**overrides)
    with pytest.raises(ValueError) as error:
        task.validate()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_window_as_long_as_the_context_is_allowed():
    task, _ = _tiny_task(**{"model.scale_window": L})
    task.validate()


def test_lm_small_is_perceivers_smalls_control():
    """Same data, split, held-out protocol and training target tokens; parameters within 10%."""
    from experiments.tasks import build_task
    from pertok import PerTok

    tokenizer = PerTok()
    configs = {name: config_file.load_config(os.path.join(ROOT, f"experiments/configs/{name}.py:small"))
               for name in ("perceivers", "lm")}
    counts = {}
    for name, config in configs.items():
        task = build_task(config, tokenizer)
        task.validate()
        batch = {key: value[:1] for key, value in task.example_batch(1).items()}
        shapes = jax.eval_shape(lambda: task.init(jax.random.key(0), batch))
        counts[name] = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    ps, lm = configs["perceivers"], configs["lm"]
    assert abs(counts["lm"] / counts["perceivers"] - 1) <= 0.10, counts
    for key in ("midi_dir", "split", "beats", "valid_fraction"):
        assert ps.data[key] == lm.data[key], key
    assert ps.train.steps == lm.train.steps
    assert ps.train.batch_size * ps.model.query_length == lm.train.batch_size * lm.model.context_length
    assert lm.eval.heldout_stride == ps.model.query_length and ps.eval.heldout_stride == 0
    assert lm.eval.heldout_buckets == ps.eval.heldout_buckets
    assert ps.model.scale_window < ps.model.context_length  # the two branches differ
