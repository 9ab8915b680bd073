"""The Performer: slots, type-restricted logits, a loss on the masked slots only, filling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config_file
from experiments.tasks import build_task
from performer import (MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT, PerformanceFiller, mask_slots,
                       masked_slot_kinds, restrict_logits, slot_kinds, windows)
from pertok import PerTok, TokenType
from pertok.synthetic import write_corpus
from training import MemoryPieces


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tokenizer = PerTok()
    config = config_file.load_config("experiments/configs/performer.py:tiny")
    with config.unlocked():
        config.model.update(d_model=16, num_layers=1, num_heads=2, mlp_dim=32, context_length=64)
    task = build_task(config, tokenizer)
    paths = write_corpus(tmp_path_factory.mktemp("corpus"), 3, seed=2)
    pieces = MemoryPieces([tokenizer.encode(p) for p in paths], [p.name for p in paths])
    sampler = task.sampler(pieces)
    batch = {k: np.stack([sampler.example(i, None)[k] for i in range(4)]) for k in sampler.example(0, None)}
    params = jax.jit(task.init)(jax.random.key(0), batch)
    return tokenizer, task, pieces, batch, params


def test_restricted_logits_allow_only_the_slot_type():
    logits = jnp.zeros((1, 3, 10))
    kinds = jnp.array([[NO_SLOT, MICROTIMING_SLOT, VELOCITY_SLOT]])
    allowed = np.asarray(restrict_logits(logits, kinds, (2, 5), (5, 8))) > -1e8
    np.testing.assert_array_equal(allowed[0].astype(int), [[1] * 10, [0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
                                                          [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]])


def test_slots_read_from_the_masked_structure_equal_the_token_types(setup):
    tokenizer, _, pieces, _, _ = setup
    for index in range(len(pieces)):
        full = pieces.piece(index)
        composition = full[~np.isin(tokenizer.token_types(full), (TokenType.MICROTIMING, TokenType.VELOCITY))]
        slotted = tokenizer.add_performance_slots(composition)
        kinds = slot_kinds(full, tokenizer)
        np.testing.assert_array_equal(masked_slot_kinds(slotted, tokenizer), kinds)
        np.testing.assert_array_equal(mask_slots(full, kinds), slotted)
        bounds = windows(tokenizer.token_types(full), 64)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(full)
        assert all(a[1] == b[0] and 0 < a[1] - a[0] <= 64 for a, b in zip(bounds, bounds[1:]))


def test_loss_is_the_cross_entropy_of_the_masked_slots_only(setup):
    tokenizer, task, _, batch, params = setup
    assert np.array_equal(batch["weights"] > 0, batch["slot_kinds"] != NO_SLOT)
    assert (batch["inputs"][batch["weights"] > 0] == tokenizer.mask_id).all()
    loss = jax.jit(lambda b: task.loss(params, b, jax.random.key(0), False)[0])
    logits = np.asarray(jax.jit(task.logits)(params, batch["inputs"], batch["slot_kinds"]))
    assert logits.shape == (4, 64, tokenizer.vocab_size) and np.isfinite(logits).all()
    log_probs = jax.nn.log_softmax(logits)
    slots = batch["weights"] > 0
    chosen = np.take_along_axis(np.asarray(log_probs), batch["targets"][..., None], -1)[..., 0]
    assert float(loss(batch)) == pytest.approx(-chosen[slots].mean(), rel=1e-5)
    # All probability lies on the slot's own type.
    types = tokenizer.token_types(np.arange(tokenizer.vocab_size))
    velocity_mass = np.exp(np.asarray(log_probs))[..., types == TokenType.VELOCITY].sum(-1)
    np.testing.assert_allclose(velocity_mass[batch["slot_kinds"] == VELOCITY_SLOT], 1.0, rtol=1e-5)
    # Targets off the slots do not count; a slot's target does.
    off_slots = dict(batch, targets=np.where(slots, batch["targets"], 5))
    assert float(loss(off_slots)) == float(loss(batch))
    one_slot = np.argwhere(slots)[0]
    moved = batch["targets"].copy()
    moved[tuple(one_slot)] += 1 if batch["slot_kinds"][tuple(one_slot)] == VELOCITY_SLOT else -1
    assert float(loss(dict(batch, targets=moved))) != float(loss(batch))


def test_filler_gives_every_slot_its_type_and_the_result_decodes(setup):
    tokenizer, task, pieces, _, params = setup
    full = pieces.piece(2)[:300]
    composition = full[~np.isin(tokenizer.token_types(full), (TokenType.MICROTIMING, TokenType.VELOCITY))]
    composition = composition[:np.flatnonzero(tokenizer.token_types(composition) == TokenType.BAR)[-1]]
    performed = PerformanceFiller(task)(params, [composition], jax.random.key(1), temperature=1.0)[0]
    assert len(performed) == len(tokenizer.add_performance_slots(composition))
    assert (performed != tokenizer.mask_id).all()
    np.testing.assert_array_equal(slot_kinds(performed, tokenizer),
                                  masked_slot_kinds(tokenizer.add_performance_slots(composition), tokenizer))
    tokenizer.decode(performed, strict=True)
