"""Segmentation samplers: which target positions each one trains on, and how often.

Pieces here are 1-D arrays of ids >= 10, so BOS (1), EOS (2) and PAD (0) are easy to spot.
A piece of n tokens has P = n + 1 targets, positions 0 .. n (target p is BOS, t_1 .. t_n
shifted by one: target 0 is t_1, target n is EOS).
"""
import collections

import numpy as np
from hypothesis import given, settings, strategies as st

from perceivers.segmentation import (EffectiveSampler, FixedSampler, RandomCropSampler,
                                     bucket_lengths, make_sampler, sequence_slice, window_example)
from training.data import (BucketedStepSampler, MemoryPieces, StepSampler, step_positions,
                           train_step_sampler)
from training.task import Sampler

PAD, BOS, EOS = 0, 1, 2


def _pieces(*lengths):
    return MemoryPieces([np.arange(10, 10 + n, dtype=np.uint16) for n in lengths],
                        [f"p{i}.mid" for i in range(len(lengths))])


def _target_positions(example, n):
    """Target positions (0 .. n) of the weighted targets, recovered from their ids."""
    ids = example["targets"][example["weights"] > 0]
    return [n if t == EOS else int(t) - 10 for t in ids]  # id 10 + k is t_{k+1}, target k


def _coverage(sampler, lengths, rng=None):
    counts = collections.Counter()
    for index in range(len(sampler)):
        piece = int(sampler.table[index, 0])
        example = sampler.example(index, rng or np.random.default_rng(index))
        counts.update((piece, p) for p in _target_positions(example, lengths[piece]))
    return counts


def test_sequence_slice_adds_bos_and_eos_virtually():
    tokens = np.array([10, 11, 12])
    assert sequence_slice(tokens, 0, 5, BOS, EOS).tolist() == [BOS, 10, 11, 12, EOS]
    assert sequence_slice(tokens, 1, 3, BOS, EOS).tolist() == [10, 11]
    assert sequence_slice(tokens, 3, 5, BOS, EOS).tolist() == [12, EOS]
    assert sequence_slice(tokens, 0, 1, BOS, EOS).tolist() == [BOS]


def test_window_example_literal():
    # Piece of 9 tokens, L=8, N=4, inputs 2..7 (6 real, 2 padding), targets from 5 on count.
    example = window_example(np.arange(10, 19), 2, 8, 5, 8, 4, PAD, BOS, EOS)
    assert example["inputs"].tolist() == [PAD, PAD, 11, 12, 13, 14, 15, 16]
    assert example["targets"].tolist() == [14, 15, 16, 17]  # targets 4..7
    assert example["weights"].tolist() == [0, 1, 1, 1]


def test_effective_literal_segments_grow_their_context_up_to_L():
    # n = 9: P = 10 targets; N = 4, L = 8: segments end at 4, 8, 10.
    sampler = EffectiveSampler(_pieces(9), context_length=8, query_length=4, pad_id=PAD,
                               bos_id=BOS, eos_id=EOS)
    examples = [sampler.example(i, None) for i in range(len(sampler))]
    assert len(examples) == 3
    assert [e["inputs"].tolist() for e in examples] == [
        [PAD, PAD, PAD, PAD, BOS, 10, 11, 12],  # context N = 4
        [BOS, 10, 11, 12, 13, 14, 15, 16],  # context 2N = 8 = L
        [11, 12, 13, 14, 15, 16, 17, 18],  # context L, sliding
    ]
    assert [e["targets"].tolist() for e in examples] == [
        [10, 11, 12, 13], [14, 15, 16, 17], [16, 17, 18, EOS]]
    assert [e["weights"].tolist() for e in examples] == [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]]


def test_fixed_literal_only_the_last_N_of_each_chunk_are_targets():
    # P = 10 targets, L = 8, N = 4: chunk 0 = inputs 0..7 (targets 4..7), chunk 1 = inputs 8..9.
    sampler = FixedSampler(_pieces(9), 8, 4, PAD, BOS, EOS)
    examples = [sampler.example(i, None) for i in range(len(sampler))]
    assert [e["inputs"].tolist() for e in examples] == [
        [BOS, 10, 11, 12, 13, 14, 15, 16], [PAD] * 6 + [17, 18]]  # chunk 1 sees only itself
    assert [e["targets"].tolist() for e in examples] == [[14, 15, 16, 17], [PAD, PAD, 18, EOS]]
    assert [e["weights"].tolist() for e in examples] == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert sorted(p for _, p in _coverage(sampler, [9])) == [4, 5, 6, 7, 8, 9]


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
       query_length=st.integers(1, 6), extra=st.integers(0, 10))
def test_effective_every_target_exactly_once(lengths, query_length, extra):
    sampler = EffectiveSampler(_pieces(*lengths), query_length + extra, query_length, PAD, BOS, EOS)
    counts = _coverage(sampler, lengths)
    expected = {(piece, p) for piece, n in enumerate(lengths) for p in range(n + 1)}
    assert set(counts) == expected and set(counts.values()) == {1}
    assert len(sampler) == sum(-(-(n + 1) // query_length) for n in lengths)


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
       query_length=st.integers(1, 6), extra=st.integers(0, 10))
def test_fixed_targets_are_the_last_N_of_each_chunk_once(lengths, query_length, extra):
    L, N = query_length + extra, query_length
    counts = _coverage(FixedSampler(_pieces(*lengths), L, N, PAD, BOS, EOS), lengths)
    expected = set()
    for piece, n in enumerate(lengths):
        for start in range(0, n + 1, L):
            end = min(start + L, n + 1)
            expected |= {(piece, p) for p in range(max(start, end - N), end)}
    assert set(counts) == expected and set(counts.values()) == {1}


def test_random_crop_ends_uniformly_with_N_targets_and_covers_every_position():
    lengths = [30, 2]
    sampler = RandomCropSampler(_pieces(*lengths), 8, 4, PAD, BOS, EOS)
    assert len(sampler) == 8 + 1  # as many examples as effective: ceil(31 / 4) + ceil(3 / 4)
    ends = collections.Counter()
    counts = collections.Counter()
    for draw in range(400):
        rng = np.random.default_rng(draw)
        example = sampler.example(0, rng)
        positions = _target_positions(example, 30)
        assert positions == list(range(positions[-1] - 3, positions[-1] + 1))  # N consecutive
        assert example["inputs"][-1] == (BOS if positions[-1] == 0 else 10 + positions[-1] - 1)
        ends[positions[-1] + 1] += 1
        counts.update(positions)
    assert set(ends) == set(range(4, 32))  # end uniform over N .. P
    assert set(counts) == set(range(31))  # every target position is sometimes trained on
    short = sampler.example(8, np.random.default_rng(0))  # P = 3 < N: the whole piece
    assert short["weights"].tolist() == [0, 1, 1, 1]
    again = sampler.example(0, np.random.default_rng(7))
    same = sampler.example(0, np.random.default_rng(7))
    assert all(np.array_equal(again[k], same[k]) for k in again)


def test_samplers_implement_the_protocol_and_refuse_bad_names():
    for name in ("effective", "fixed", "random_crop"):
        sampler = make_sampler(name, _pieces(5, 9), 8, 4)
        assert isinstance(sampler, Sampler)
        example = sampler.example(0, np.random.default_rng(0))
        assert {k: (v.dtype, v.shape) for k, v in example.items()} == {
            "inputs": (np.int32, (8,)), "targets": (np.int32, (4,)), "weights": (np.float32, (4,))}
    try:
        make_sampler("sliding", _pieces(5), 8, 4)
    except ValueError as error:
        assert "data.segmentation='sliding'" in str(error)
    else:
        raise AssertionError("an unknown segmentation must raise")


def test_bucket_lengths_halve_l_down_to_n():
    assert bucket_lengths(8192, 1024, 4) == (1024, 2048, 4096, 8192)
    assert bucket_lengths(32768, 1024, 4) == (4096, 8192, 16384, 32768)
    assert bucket_lengths(256, 64, 4) == (64, 128, 256)  # L/8 = 32 < N: N
    assert bucket_lengths(8192, 1024, 1) == (8192,)
    assert bucket_lengths(96, 8, 3) == (24, 48, 96)  # L not a multiple of 128: exact halves


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
       segmentation=st.sampled_from(["effective", "fixed"]))
def test_context_lengths_are_the_real_inputs_and_crop_drops_only_padding(lengths, segmentation):
    sampler = make_sampler(segmentation, _pieces(*lengths), 16, 4, PAD, BOS, EOS)
    fill = sampler.context_lengths()
    for index in range(len(sampler)):
        example = sampler.example(index, None)
        assert (example["inputs"] != PAD).sum() == fill[index]
        cropped = sampler.crop(example, max(int(fill[index]), 4))
        assert (cropped["inputs"] != PAD).sum() == fill[index]
        assert np.array_equal(cropped["targets"], example["targets"])


def _bucketed(lengths, seed=0, batch_size=5):
    sampler = EffectiveSampler(_pieces(*lengths), 32, 4, PAD, BOS, EOS)
    return BucketedStepSampler(sampler, seed, batch_size, bucket_lengths(32, 4, 4)), lengths


def _epoch_coverage(data: BucketedStepSampler, lengths, epoch: int):
    counts, shapes = collections.Counter(), collections.Counter()
    for step in range(epoch * data.steps_per_epoch, (epoch + 1) * data.steps_per_epoch):
        batch = data.batch(step_positions(step, data.batch_size, 1, slice(None)))
        assert batch["inputs"].shape == (1, data.batch_size, data.step_length(step))
        shapes[batch["inputs"].shape[-1]] += 1
        real = 0
        for slot in range(data.batch_size):
            index = data.example_index(step * data.batch_size + slot)
            if index < 0:  # a filler row counts nothing
                assert not batch["weights"][0, slot].any()
                continue
            piece = int(data.sampler.table[index, 0])
            example = {k: v[0, slot] for k, v in batch.items()}
            counts.update((piece, p) for p in _target_positions(example, lengths[piece]))
            real += int((example["inputs"] != PAD).sum())
        assert real == data.real_tokens(step)
    return counts, shapes


def test_bucketed_epochs_cover_every_target_exactly_once_in_short_shapes():
    data, lengths = _bucketed([3, 9, 17, 40, 70, 33, 5, 120])
    expected = {(piece, p) for piece, n in enumerate(lengths) for p in range(n + 1)}
    orders = []
    for epoch in (0, 1):
        counts, shapes = _epoch_coverage(data, lengths, epoch)
        assert set(counts) == expected and set(counts.values()) == {1}
        assert len(shapes) > 1  # several compiled shapes, the short ones used
        first, end = epoch * data.steps_per_epoch * 5, (epoch + 1) * data.steps_per_epoch * 5
        orders.append([data.example_index(p) for p in range(first, end)])
    assert orders[0] != orders[1]  # each epoch its own order
    report = data.epoch_report()
    assert report["padding_fraction"] < report["padding_fraction_unbucketed"]
    assert report["filler_rows"] < data.batch_size
    assert sum(report["steps_per_length"].values()) == data.steps_per_epoch


def test_bucketed_batches_resume_exactly_and_split_by_process_rows():
    """A fresh sampler (a resumed run) gives the same batch at every step; two processes'
    rows put together are the one-process batch, with gradient accumulation too."""
    data, lengths = _bucketed([3, 9, 17, 40, 70, 33, 5, 120], seed=3, batch_size=6)
    resumed, _ = _bucketed(lengths, seed=3, batch_size=6)
    for step in (0, 5, data.steps_per_epoch + 2, 7 * data.steps_per_epoch - 1):
        whole = data.batch(step_positions(step, 6, 2, slice(None)))
        again = resumed.batch(step_positions(step, 6, 2, slice(None)))
        halves = [resumed.batch(step_positions(step, 6, 2, rows))
                  for rows in (slice(0, 2), slice(2, 3))]
        for key in whole:
            assert np.array_equal(whole[key], again[key])
            assert np.array_equal(whole[key], np.concatenate([h[key] for h in halves], axis=1))
    other_seed, _ = _bucketed(lengths, seed=4, batch_size=6)
    assert ([other_seed.example_index(p) for p in range(60)]
            != [data.example_index(p) for p in range(60)])


def test_train_step_sampler_buckets_only_what_it_can():
    effective = EffectiveSampler(_pieces(3, 40), 32, 4, PAD, BOS, EOS)
    bucketed = train_step_sampler(effective, 0, 4, buckets=4)
    assert isinstance(bucketed, BucketedStepSampler) and bucketed.lengths == (4, 8, 16, 32)
    assert type(train_step_sampler(effective, 0, 4, buckets=1)) is StepSampler
    crops = train_step_sampler(RandomCropSampler(_pieces(3, 40), 32, 4, PAD, BOS, EOS), 0, 4, 4)
    assert crops.epoch_report()["steps_per_length"] == {4: 0, 8: 0, 16: 0, 32: 3}  # all at L
