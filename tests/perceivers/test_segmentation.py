"""Segmentation samplers: which target positions each one trains on, and how often.

Pieces here are 1-D arrays of ids >= 10, so BOS (1), EOS (2) and PAD (0) are easy to spot.
A piece of n tokens has P = n + 1 targets, positions 0 .. n (target p is BOS, t_1 .. t_n
shifted by one: target 0 is t_1, target n is EOS).
"""
import collections

import numpy as np
from hypothesis import given, settings, strategies as st

from perceivers.segmentation import (EffectiveSampler, FixedSampler, RandomCropSampler,
                                     make_sampler, sequence_slice, window_example)
from training.data import MemoryPieces
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
