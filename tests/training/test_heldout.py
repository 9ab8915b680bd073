"""The held-out protocol: every target once, the same targets for PerceiverS and the LM, and the
numbers equal to the losses of the examples they stand for."""
import math

import jax
import ml_collections
import numpy as np
import pytest

from baseline import LMTask
from perceivers import PerceiverSTask
from training.data import MemoryPieces
from training.heldout import blocks, bucket_names, chosen_pieces, evaluate

VOCAB, L, N = 40, 16, 4


def pieces(lengths, seed=0) -> MemoryPieces:
    rng = np.random.default_rng(seed)
    return MemoryPieces([rng.integers(4, VOCAB, n).astype(np.int32) for n in lengths],
                        [f"p{i}.mid" for i in range(len(lengths))])


def lm_task(context_length=L) -> LMTask:
    model = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, mlp_dim=32, dropout=0.0,
                                           dtype="float32"))
    return LMTask(model, VOCAB, context_length)


def perceivers_task(segmentation="effective") -> PerceiverSTask:
    model = ml_collections.ConfigDict(dict(
        context_length=L, query_length=N, d_model=16, num_heads=2, num_layers=1, mlp_dim=32, scale_window=4,
        combination="cascade", scale_mask="sliding", rotary_fraction=0.5, context_dropout=0.0, dropout=0.0,
        attention_impl="xla", remat=False, dtype="float32"))
    return PerceiverSTask(model, VOCAB, segmentation)


def params_of(task):
    return task.init(jax.random.key(0), {k: v[:1] for k, v in task.example_batch(1).items()})


def test_blocks_cover_every_target_once():
    # piece 0: 3 tokens -> 4 targets (BOS t1 t2 t3 -> t1 t2 t3 EOS); piece 1: empty -> EOS only
    np.testing.assert_array_equal(blocks(np.array([3, 0]), 2), [[0, 0, 2], [0, 2, 4], [1, 0, 1]])
    assert bucket_names((4, 8)) == ["0-4", "4-8", "8+"]


def test_the_subset_is_a_prefix_of_pieces_within_the_token_budget():
    data = pieces([10, 10, 10])
    assert chosen_pieces(data, 0) == [0, 1, 2]
    assert chosen_pieces(data, 22) == [0, 1]  # 11 + 11 targets
    assert chosen_pieces(data, 5) == [0]  # never none


@pytest.mark.parametrize("make", [lm_task, perceivers_task])
def test_every_target_is_scored_once_and_the_buckets_add_up(make):
    task, data = make(), pieces([0, 3, 17, 40])
    result = evaluate(task, params_of(task), data, N, batch_size=5, edges=(4, 16))
    assert result["targets"] == sum([1, 4, 18, 41]) and result["pieces"] == 4
    buckets = result["by_position"]
    assert [b["targets"] for b in buckets.values()] == [1 + 4 + 4 + 4, 12 + 12, 2 + 25]
    mean = sum(b["targets"] * b["bits_per_token"] for b in buckets.values()) / result["targets"]
    assert math.isclose(mean, result["bits_per_token"], rel_tol=1e-9)
    assert 0 < result["bits_per_token"] < 2 * math.log2(VOCAB)


def test_perceivers_heldout_equals_effective_segmentation_whatever_it_trained_with():
    """At stride N the held-out examples are effective segmentation's: the same weighted loss."""
    data = pieces([5, 23, 40], seed=1)
    fixed = perceivers_task("fixed")  # trained with another segmentation: evaluated the same way
    params = params_of(fixed)
    result = evaluate(fixed, params, data, N, batch_size=4)
    sampler = perceivers_task("effective").sampler(data)
    examples = [sampler.example(i, np.random.default_rng(0)) for i in range(len(sampler))]
    batch = {key: np.stack([e[key] for e in examples]) for key in ("inputs", "targets")}
    weights = np.stack([e["weights"] for e in examples])
    losses = np.asarray(fixed.token_losses(params, batch))
    expected = (losses * weights).sum() / weights.sum() / math.log(2)
    assert weights.sum() == result["targets"]
    assert math.isclose(result["bits_per_token"], expected, rel_tol=1e-5)


def test_lm_heldout_at_stride_c_equals_its_window_loss():
    """Pieces whose targets fill whole windows: the blocks are the LM's own training windows."""
    task = lm_task()
    data = pieces([L - 1, 2 * L - 1])
    params = params_of(task)
    result = evaluate(task, params, data, L, batch_size=3)
    sampler = task.sampler(data)
    examples = [sampler.example(i, np.random.default_rng(0)) for i in range(len(sampler))]
    batch = {key: np.stack([e[key] for e in examples]) for key in ("inputs", "targets", "weights")}
    loss, _ = task.loss(params, batch, jax.random.key(0), False)
    assert result["targets"] == 3 * L
    assert math.isclose(result["bits_per_token"], float(loss) / math.log(2), rel_tol=1e-5)


def test_blocks_larger_than_the_model_can_score_are_refused():
    with pytest.raises(ValueError, match="does not fit query_length=4"):
        perceivers_task().heldout_example(np.arange(4, 20), 0, 5)
    with pytest.raises(ValueError, match="does not fit context_length=16"):
        lm_task().heldout_example(np.arange(4, 40), 0, 17)
