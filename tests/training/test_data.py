"""Step-indexed data: determinism, process slices, epoch coverage, the split and augmentation."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from baseline import WindowSampler
from tests.training.tiny import PITCH_IDS, VELOCITY_IDS, random_pieces
from training.data import (Augmentation, MemoryPieces, Prefetcher, StepSampler, is_validation,
                           split_pieces, step_positions)

CONTEXT = 16


def _step_sampler(seed=0, augment=True, pieces=None):
    sampler = WindowSampler(pieces or random_pieces(), CONTEXT, pad_id=0, bos_id=1, eos_id=2)
    augmentation = Augmentation(PITCH_IDS, VELOCITY_IDS, 2, 1) if augment else None
    return StepSampler(sampler, seed, augmentation)


def _batch_digest(seed: int, step: int) -> str:
    batch = _step_sampler(seed).batch(step_positions(step, 8, 2, slice(0, 4)))
    return hashlib.sha256(b"".join(batch[k].tobytes() for k in sorted(batch))).hexdigest()


def test_same_seed_and_step_give_the_same_batch_in_another_process():
    here = _batch_digest(seed=3, step=17)
    assert here == _batch_digest(seed=3, step=17)
    assert here != _batch_digest(seed=3, step=18) and here != _batch_digest(seed=4, step=17)
    code = "from tests.training.test_data import _batch_digest; print(_batch_digest(3, 17))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def test_process_rows_put_together_are_the_one_process_batch():
    sampler = _step_sampler()
    whole = sampler.batch(step_positions(5, 12, 3, slice(0, 4)))  # [accum 3, 4 rows]
    halves = [sampler.batch(step_positions(5, 12, 3, rows)) for rows in (slice(0, 2), slice(2, 4))]
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves], axis=1), whole[key])


def test_every_example_once_per_epoch_and_every_token_a_target_once():
    pieces = random_pieces(num_pieces=7)
    sampler = _step_sampler(augment=False, pieces=pieces)
    count = len(sampler.sampler)
    for epoch in range(2):
        indices = [sampler.example_index(p) for p in range(epoch * count, (epoch + 1) * count)]
        assert sorted(indices) == list(range(count))
    assert [sampler.example_index(p) for p in range(count)] != list(range(count))  # shuffled
    # Each piece's tokens then EOS appear exactly once as targets over the epoch, in order.
    targets = {}
    for index in range(count):
        piece, start = sampler.sampler.windows[index]
        example = sampler.sampler.example(index, np.random.default_rng(0))
        targets.setdefault(int(piece), {})[int(start)] = example["targets"][example["weights"] > 0]
    for piece in range(len(pieces)):
        joined = np.concatenate([targets[piece][s] for s in sorted(targets[piece])])
        np.testing.assert_array_equal(joined, np.append(pieces.piece(piece), 2))


def test_validation_split_is_by_path_and_stable_when_files_are_added():
    files = [f"corpus/{i:04d}.mid" for i in range(2000)]
    valid = {f for f in files if is_validation(f, 0.1)}
    assert 150 < len(valid) < 250
    more = files + [f"corpus/new_{i}.mid" for i in range(500)]
    assert {f for f in more[:2000] if is_validation(f, 0.1)} == valid
    pieces = MemoryPieces([np.arange(i + 1) for i in range(len(files))], files)
    train, held_out = split_pieces(pieces, 0.1)
    assert set(held_out.files) == valid and not set(train.files) & valid
    assert len(train) + len(held_out) == len(files)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 99), min_size=1, max_size=40), st.integers(0, 2**31))
def test_pitch_shift_stays_in_range_and_leaves_other_tokens(ids, seed):
    augmentation = Augmentation(PITCH_IDS, VELOCITY_IDS, max_pitch_shift=5, max_velocity_shift=3)
    inputs = np.array(ids, np.int32)
    example = {"inputs": inputs, "targets": inputs[::-1].copy(), "weights": np.ones(len(ids))}
    out = augmentation(example, ("inputs", "targets"), np.random.default_rng(seed))
    is_pitch = (inputs >= PITCH_IDS.start) & (inputs < PITCH_IDS.stop)
    is_velocity = (inputs >= VELOCITY_IDS.start) & (inputs < VELOCITY_IDS.stop)
    other = ~is_pitch & ~is_velocity  # drums (another id range), time, specials: untouched
    np.testing.assert_array_equal(out["inputs"][other], inputs[other])
    assert np.all((out["inputs"][is_pitch] >= PITCH_IDS.start) & (out["inputs"][is_pitch] < PITCH_IDS.stop))
    shifts = set((out["inputs"][is_pitch] - inputs[is_pitch]).tolist())
    assert len(shifts) <= 1 and all(abs(s) <= 5 for s in shifts)  # one transposition per example
    np.testing.assert_array_equal(out["targets"], out["inputs"][::-1])  # keys shifted alike
    assert np.all((out["inputs"][is_velocity] >= VELOCITY_IDS.start)
                  & (out["inputs"][is_velocity] < VELOCITY_IDS.stop))
    np.testing.assert_array_equal(out["weights"], example["weights"])


def test_pitch_shift_uses_the_whole_range_when_there_is_room():
    augmentation = Augmentation(PITCH_IDS, None, max_pitch_shift=3)
    example = {"inputs": np.array([30, 31], np.int32)}
    shifts = {int(augmentation(example, ("inputs",), np.random.default_rng(s))["inputs"][0]) - 30
              for s in range(200)}
    assert shifts == set(range(-3, 4))
    edge = {"inputs": np.array([PITCH_IDS.stop - 1], np.int32)}  # highest pitch: only down
    assert all(augmentation(edge, ("inputs",), np.random.default_rng(s))["inputs"][0] <= edge["inputs"][0]
               for s in range(50))


def test_prefetcher_yields_steps_in_order_and_raises_builder_errors():
    prefetch = Prefetcher(lambda step: {"step": np.array(step)}, 3, 7, depth=2)
    assert [step for step, _ in prefetch] == [3, 4, 5, 6]
    prefetch.close()

    def broken(step):
        if step == 2:
            raise RuntimeError("bad piece")
        return {}

    prefetch = Prefetcher(broken, 0, 5)
    with pytest.raises(RuntimeError, match="bad piece"):
        list(prefetch)
    prefetch.close()


def test_content_hash_names_the_tokens_and_takes_a_stores_recorded_checksum(tmp_path):
    from pertok.store import TokenStore, build_store
    from pertok.synthetic import write_corpus
    from training.data import content_hash

    a = MemoryPieces([np.array([5, 6, 7]), np.array([8])], ["a.mid", "b.mid"])
    b = MemoryPieces([np.array([5, 6, 9]), np.array([8])], ["a.mid", "b.mid"])
    assert content_hash(a) != content_hash(b) and content_hash(a) == content_hash(a)
    write_corpus(str(tmp_path / "midi"), 2, seed=0)
    store = build_store(tmp_path / "midi", tmp_path / "store", workers=1)
    opened = TokenStore(tmp_path / "store")  # verified against the recorded SHA-256
    assert content_hash(opened) == content_hash(store)
    recorded = opened.meta["checksums"]["tokens.u16"]
    opened.meta["checksums"]["tokens.u16"] = dict(recorded, sha256="0" * 64)
    assert content_hash(opened) != content_hash(store)  # the recorded checksum names the tokens
