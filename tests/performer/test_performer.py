"""The Performer: slots, random masks and the dynamic level, type-restricted logits, a loss on
the masked slots only, iterative window-by-window filling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config_file
from experiments.tasks import build_task
from performer import (LEVEL_SLOT, MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT, PerformanceFiller,
                       hold_level, level_id, mask_slots, masked_slot_kinds, performance_slot_kinds,
                       piece_velocities, random_mask, restrict_logits, reveal_schedule, slot_kinds,
                       windows)
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
    is_slot = (batch["slot_kinds"] != NO_SLOT) & (batch["slot_kinds"] != LEVEL_SLOT)
    assert np.array_equal(batch["weights"] > 0, is_slot)  # without an rng: every slot masked
    assert (batch["inputs"][batch["weights"] > 0] == tokenizer.mask_id).all()
    assert (batch["slot_kinds"][:, 0] == LEVEL_SLOT).all() and (batch["weights"][:, 0] == 0).all()
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
    performed = PerformanceFiller(task, rounds=3)(params, [composition], jax.random.key(1), temperature=1.0)[0]
    assert len(performed) == len(tokenizer.add_performance_slots(composition))
    assert (performed != tokenizer.mask_id).all()
    np.testing.assert_array_equal(slot_kinds(performed, tokenizer),
                                  masked_slot_kinds(tokenizer.add_performance_slots(composition), tokenizer))
    tokenizer.decode(performed, strict=True)
    assert len(windows(tokenizer.token_types(performed), 64 - 1 - 16)) > 1  # carried across windows


def test_random_masks_cover_every_share_and_the_examples_give_the_rest(setup):
    tokenizer, task, pieces, _, _ = setup
    full = pieces.piece(0)[:63]
    kinds = slot_kinds(full, tokenizer)
    rng = np.random.default_rng(0)
    masks = [random_mask(kinds, rng) for _ in range(300)]
    assert all(m.any() and not (m & (kinds == NO_SLOT)).any() for m in masks)
    shares = np.array([m.sum() / (kinds != NO_SLOT).sum() for m in masks])
    assert shares.min() < 0.1 and shares.max() == 1.0 and 0.5 < shares.mean() < 0.75  # E cos(pi u / 2) = 0.64
    level = level_id(piece_velocities(pieces.piece(0), tokenizer), tokenizer)
    sampler = task.sampler(pieces)
    anchored = 0
    for seed in range(10):
        example = sampler.example(0, np.random.default_rng(seed))
        given = (example["slot_kinds"][1:] != NO_SLOT) & (example["weights"][1:] == 0)
        anchored += bool(given.any())
        assert example["weights"].any()
        np.testing.assert_array_equal(example["inputs"][1:][given], example["targets"][1:][given])
        assert (example["inputs"][1:][example["weights"][1:] > 0] == tokenizer.mask_id).all()
        assert example["inputs"][0] in (level, tokenizer.mask_id)
    assert anchored >= 5
    levels = [task.sampler(pieces).example(0, np.random.default_rng(s))["inputs"][0] for s in range(60)]
    assert 0 < levels.count(tokenizer.mask_id) < 30  # level_dropout 0.2


def test_the_level_is_the_velocity_id_nearest_the_mean(setup):
    tokenizer = setup[0]
    velocity = tokenizer.type_ranges["Velocity"]
    assert level_id([96, 100, 101], tokenizer) == level_id(99, tokenizer)
    assert tokenizer.vocab.value_of[level_id(99, tokenizer)] == pytest.approx(99, abs=2)
    assert level_id(1, tokenizer) == velocity.start and level_id(127, tokenizer) == velocity.stop - 1
    assert level_id(None, tokenizer) == level_id([], tokenizer) == tokenizer.mask_id


class _CountingTask:
    """A fake Performer: every slot's best token is 100 + the number of slots already filled in
    its row, more confident at earlier positions; so the filled values show the rounds."""

    def __init__(self, tokenizer, context_length):
        self.tokenizer, self.context_length = tokenizer, context_length

    def logits(self, params, inputs, kinds):
        is_slot = (kinds == MICROTIMING_SLOT) | (kinds == VELOCITY_SLOT)
        filled = (is_slot & (inputs != self.tokenizer.mask_id)).sum(1)
        best = jax.nn.one_hot(100 + filled, self.tokenizer.vocab_size)[:, None, :]
        return best * (20.0 - 0.1 * jnp.arange(inputs.shape[1]))[None, :, None]


def test_iterative_decoding_fills_the_most_confident_slots_first_and_rereads_the_rest(setup):
    tokenizer = setup[0]
    assert [int(reveal_schedule(jnp.int32(8), r, 4)) for r in range(4)] == [7, 5, 3, 0]
    composition = np.array([tokenizer.type_ranges["Bar"].start] + [
        tokenizer.type_ranges["Pitch"].start + 60, tokenizer.type_ranges["Duration"].start + 7] * 4)
    slotted = tokenizer.add_performance_slots(composition)  # 4 notes: 8 slots
    fake = _CountingTask(tokenizer, 32)
    one_pass = PerformanceFiller(fake, rounds=1, carry=0).fill(None, [slotted], jax.random.key(0), 0.0)[0]
    slots = performance_slot_kinds(slotted, tokenizer) != NO_SLOT
    np.testing.assert_array_equal(one_pass[slots], [100] * 8)
    iterative = PerformanceFiller(fake, rounds=4, carry=0).fill(None, [slotted], jax.random.key(0), 0.0)[0]
    # Rounds reveal 1, 2, 2, 3 slots, earliest (most confident) first, each seeing those before.
    np.testing.assert_array_equal(iterative[slots], [100, 101, 101, 103, 103, 105, 105, 105])
    anchored = slotted.copy()
    given = tokenizer.type_ranges["Velocity"].start + 5
    anchored[np.flatnonzero(slots)[-1]] = given  # the last note's Velocity: kept, and seen as filled
    kept = PerformanceFiller(fake, rounds=1, carry=0).fill(None, [anchored], jax.random.key(0), 0.0)[0]
    np.testing.assert_array_equal(kept[slots], [101] * 7 + [given])


def test_the_dynamic_level_reaches_the_velocities(setup):
    tokenizer, task, pieces, _, params = setup
    full = pieces.piece(1)[:120]
    composition = full[~np.isin(tokenizer.token_types(full), (TokenType.MICROTIMING, TokenType.VELOCITY))]
    filler = PerformanceFiller(task, rounds=2)
    soft, loud = (filler(params, [composition], jax.random.key(0), 0.0, levels=[v])[0] for v in (20, 120))
    assert (soft != loud).any()


class _SkewedTask:
    """A fake Performer whose every slot predicts velocity ids 0, 1, 2 (of the Velocity range)
    with probabilities 0.3, 0.25, 0.45: the mode is id 2, the median id 1."""

    def __init__(self, tokenizer, context_length):
        self.tokenizer, self.context_length = tokenizer, context_length

    def logits(self, params, inputs, kinds):
        first = self.tokenizer.type_ranges["Velocity"].start
        logits = jnp.full((self.tokenizer.vocab_size,), -1e9).at[first:first + 3].set(
            jnp.log(jnp.array([0.3, 0.25, 0.45])))
        return jnp.broadcast_to(logits, (*inputs.shape, self.tokenizer.vocab_size))


def test_greedy_takes_the_median_value_or_the_mode(setup):
    tokenizer = setup[0]
    composition = np.array([tokenizer.type_ranges["Bar"].start, tokenizer.type_ranges["Pitch"].start + 60,
                            tokenizer.type_ranges["Duration"].start + 7])
    slotted = tokenizer.add_performance_slots(composition)
    first = tokenizer.type_ranges["Velocity"].start
    for greedy, expected in (("median", first + 1), ("mode", first + 2)):
        filled = PerformanceFiller(_SkewedTask(tokenizer, 16), rounds=1, carry=0, greedy=greedy).fill(
            None, [slotted], jax.random.key(0), 0.0)[0]
        assert (filled[tokenizer.token_types(filled) == TokenType.VELOCITY] == expected).all(), greedy
    with pytest.raises(ValueError, match="greedy"):
        PerformanceFiller(_SkewedTask(tokenizer, 16), greedy="mean")


def test_a_held_level_sets_the_mean_velocity_and_keeps_the_anchors(setup):
    tokenizer, task, pieces, _, params = setup
    full = pieces.piece(1)[:120]
    velocity = tokenizer.token_types(full) == TokenType.VELOCITY
    ids = full.copy()
    chosen = velocity.copy()
    chosen[np.flatnonzero(velocity)[0]] = False  # the first Velocity is an anchor
    hold_level(ids, chosen, 100.0, tokenizer)
    values = tokenizer.vocab.value_of[ids[velocity]]
    assert abs(values.mean() - 100) <= 2  # re-quantized to Velocity tokens 4 apart
    assert ids[np.flatnonzero(velocity)[0]] == full[np.flatnonzero(velocity)[0]]
    assert (ids[~velocity] == full[~velocity]).all()
    composition = full[~np.isin(tokenizer.token_types(full), (TokenType.MICROTIMING, TokenType.VELOCITY))]
    miss = {}
    for hold in (True, False):
        filler = PerformanceFiller(task, rounds=2, hold_level=hold)
        for level in (30, 110):
            out = filler(params, [composition], jax.random.key(0), 0.0, levels=[level])[0]
            mean = tokenizer.vocab.value_of[out[tokenizer.token_types(out) == TokenType.VELOCITY]].mean()
            miss[hold, level] = abs(mean - level)
    assert miss[True, 30] <= 3 and miss[True, 110] <= 3, miss
    assert max(miss[False, 30], miss[False, 110]) > 3, miss  # the untrained model alone misses
