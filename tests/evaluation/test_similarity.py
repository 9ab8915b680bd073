"""Chroma and groove similarity (MuseMorphose) and pitch-class entropy (MusDr) on hand-made bars."""
import numpy as np
import pytest

from evaluation import similarity
from evaluation.notes import piece_notes
from tests.evaluation.scores import TPQ, make_score, scale_score

BAR = 4 * TPQ


def _bar_of(onsets_beats, pitches, bar=0):
    return [(bar * BAR + int(b * TPQ), TPQ // 2, p, 80) for b, p in zip(onsets_beats, pitches)]


def test_identical_pieces_are_fully_similar():
    notes = _bar_of([0, 1, 2.5, 3], [60, 64, 67, 72]) + _bar_of([0, 2], [62, 65], bar=1)
    score = make_score([(False, notes)])
    assert similarity.chroma_similarity(score, score) == pytest.approx(1.0, abs=1e-12)
    assert similarity.groove_similarity(score, score) == pytest.approx(1.0, abs=1e-12)


def test_chroma_similarity_is_the_bar_cosine_of_onset_counts():
    c_e = make_score([(False, _bar_of([0, 1], [60, 64]))])
    c_g = make_score([(False, _bar_of([0, 1], [60, 67]))])
    assert similarity.chroma_similarity(c_e, c_g) == pytest.approx(0.5)  # (1,1,0).(1,0,1) / 2
    up_a_semitone = make_score([(False, _bar_of([0, 1], [61, 65]))])
    assert similarity.chroma_similarity(c_e, up_a_semitone) == 0.0


def test_groove_similarity_is_the_bar_cosine_of_onset_positions():
    quarters = make_score([(False, _bar_of([0, 1, 2, 3], [60] * 4))])
    halves = make_score([(False, _bar_of([0, 2], [67, 72]))])
    assert similarity.groove_similarity(quarters, halves) == pytest.approx(2 / (2 * np.sqrt(2)))
    offbeats = make_score([(False, _bar_of([0.5, 1.5, 2.5, 3.5], [60] * 4))])
    assert similarity.groove_similarity(quarters, offbeats) == 0.0
    # Pitch does not move the groove, rhythm does not move the chroma.
    same_rhythm = make_score([(False, _bar_of([0, 1, 2, 3], [61] * 4))])
    assert similarity.groove_similarity(quarters, same_rhythm) == pytest.approx(1.0)
    same_pitch_class = make_score([(False, _bar_of([0, 2], [60, 48]))])
    assert similarity.chroma_similarity(quarters, same_pitch_class) == pytest.approx(1.0)


def test_similarity_averages_over_bars_and_counts_missing_bars_as_zero():
    two_bars = make_score([(False, _bar_of([0], [60]) + _bar_of([0], [62], bar=1))])
    first_bar_only = make_score([(False, _bar_of([0], [60]))])
    assert similarity.chroma_similarity(two_bars, first_bar_only) == pytest.approx(0.5)
    # A bar empty in both counts as identical.
    gap = make_score([(False, _bar_of([0], [60]) + _bar_of([0], [62], bar=2))])
    assert similarity.chroma_similarity(gap, gap) == pytest.approx(1.0)


def test_onset_rounding_onto_the_next_bar_line_is_its_downbeat():
    late = make_score([(False, [(BAR - 5, TPQ, 60, 80)])])
    on_time = make_score([(False, [(BAR, TPQ, 60, 80)])])
    groove = similarity.bar_groove(piece_notes(late))
    assert groove.shape == (2, 16) and groove[1, 0] == 1 and groove.sum() == 1
    assert similarity.groove_similarity(late, on_time) == pytest.approx(1.0)


def test_pitch_class_entropy():
    assert similarity.pitch_class_entropy(scale_score([60, 72, 48]), window_bars=None) == 0.0
    chromatic = scale_score(range(60, 72))
    assert similarity.pitch_class_entropy(chromatic, window_bars=None) == pytest.approx(np.log2(12))
    assert similarity.pitch_class_entropy(scale_score(), window_bars=None) == pytest.approx(np.log2(7))
    # 1-bar windows of the C major scale in quarters: C D E F | G A B -> log2 4 and log2 3.
    assert similarity.pitch_class_entropy(scale_score(), window_bars=1) == pytest.approx((2 + np.log2(3)) / 2)
    assert similarity.pitch_class_entropy(make_score([(False, [])])) == 0.0
