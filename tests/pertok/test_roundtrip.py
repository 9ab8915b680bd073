"""Round trips: decode(encode(s)) == quantize(s) exactly, and quantize(s) close to s."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from pertok import PerTok, PerTokConfig
from tests.pertok.scores import random_scores, score_arrays, note_rows

FULL = PerTok(PerTokConfig(use_tempos=True, use_sustain_pedal=True))
DEFAULT = PerTok()
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_score(a, b) -> None:
    arrays_a, arrays_b = score_arrays(a), score_arrays(b)
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


def duration_tolerance(duration_ticks: np.ndarray, config: PerTokConfig) -> np.ndarray:
    """Half the duration-grid step around each duration (of its remainder past the largest token)."""
    tpq = config.ticks_per_quarter
    bounds = np.array([b for b, _ in config.duration_steps]) * tpq
    steps = np.array([s for _, s in config.duration_steps]) * tpq
    largest = bounds[-1]
    remainder = np.where(duration_ticks > largest, duration_ticks % largest, duration_ticks)
    bracket = np.minimum(np.searchsorted(bounds, remainder), len(bounds) - 1)
    # Near a bracket's upper edge the nearest value may sit in the next, coarser bracket.
    coarser = np.minimum(bracket + 1, len(bounds) - 1)
    return np.maximum(steps[bracket], steps[coarser]) / 2 + 1e-6


def check_close_to_original(tokenizer: PerTok, score, decoded) -> None:
    """Same notes per (track, pitch); each decoded note has an original one within tolerance.

    Notes are matched by tolerance rather than by sort order, because two notes of one pitch
    less than a microtiming bin apart may swap order when quantized.
    """
    config = tokenizer.config
    original, got = note_rows(score, config.ticks_per_quarter), note_rows(decoded)
    assert len(original) == len(got)  # no note lost, exact duplicates included
    np.testing.assert_array_equal(original[:, [0, 2]], got[:, [0, 2]])  # sorted by track, pitch
    shortest = tokenizer.vocab.values_duration[0]
    # Durations shorter than half the shortest token become the shortest token.
    expected_duration = np.where(original[:, 3] < shortest / 2, shortest, original[:, 3])
    tolerance = np.where(original[:, 3] < shortest / 2, 0, duration_tolerance(original[:, 3], config))
    same_key = (original[None, :, 0] == got[:, None, 0]) & (original[None, :, 2] == got[:, None, 2])
    onset_ok = np.abs(original[None, :, 1] - got[:, None, 1]) <= config.microtiming_step_ticks / 2 + 1e-6
    velocity_ok = np.abs(original[None, :, 4] - got[:, None, 4]) <= np.ceil(127 / config.velocity_bins / 2)
    duration_ok = np.abs(expected_duration[None, :] - got[:, None, 3]) <= tolerance[None, :]
    assert np.all(np.any(same_key & onset_ok, axis=1)), "an onset moved more than half a microtiming bin"
    assert np.all(np.any(same_key & onset_ok & velocity_ok & duration_ok, axis=1)), \
        "a velocity or duration moved more than half a bin"


@SETTINGS
@given(random_scores())
def test_decode_of_encode_is_quantize(score):
    for tokenizer in (FULL, DEFAULT):
        ids = tokenizer.encode(score)
        decoded = tokenizer.decode(ids)
        assert_same_score(decoded, tokenizer.quantize(score))
        check_close_to_original(tokenizer, score, decoded)
        assert tokenizer.token_errors(ids) == 0.0


@SETTINGS
@given(random_scores())
def test_quantize_is_a_projection(score):
    once = FULL.quantize(score)
    assert_same_score(FULL.quantize(once), once)


@SETTINGS
@given(random_scores())
def test_split_and_merge_are_inverse(score):
    ids = FULL.encode(score)
    composition, microtiming, velocity = FULL.split(ids)
    np.testing.assert_array_equal(FULL.merge(composition, microtiming, velocity), ids)
    np.testing.assert_array_equal(composition, FULL.encode(score, view="composition"))
    types = FULL.token_types(composition)
    assert not np.isin(types, [FULL.vocab.type_of[microtiming[0]], FULL.vocab.type_of[velocity[0]]]).any()


def test_composition_view_keeps_grid_and_drops_performance():
    from tests.pertok.scores import make_score
    score = make_score(480, [(0, False, [(130, 240, 60, 99), (481, 100, 64, 20)])])
    composition = DEFAULT.encode(score, view="composition")
    decoded = note_rows(DEFAULT.decode(composition))
    np.testing.assert_array_equal(decoded[:, 1], [240, 960])  # 130 -> the 16th at 120 ticks @480
    assert set(decoded[:, 4]) == {62}  # default velocity 64, at its nearest bin centre
    slots = DEFAULT.add_performance_slots(composition)
    assert (slots == DEFAULT.mask_id).sum() == 4


def test_builtin_corpus_round_trips():
    synthetic = pytest.importorskip("pertok.synthetic")
    for seed in range(12):
        score = synthetic.generate_score(seed)
        decoded = FULL.decode(FULL.encode(score))
        assert_same_score(decoded, FULL.quantize(score))
        check_close_to_original(FULL, score, decoded)
