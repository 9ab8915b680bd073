"""MGEval features, bar lines and microtiming of hand-made scores, checked against exact values."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluation import expressive, features
from evaluation.notes import bar_lines_ticks, piece_notes
from tests.evaluation.scores import C_MAJOR_SCALE, TPQ, make_score, scale_score

PITCH_CLASSES_OF_SCALE = [0, 2, 4, 5, 7, 9, 11]


@pytest.fixture
def scale():
    """C major scale C4..B4 in quarter notes, 4/4: bars of C D E F | G A B."""
    return piece_notes(scale_score(), min_bars=2)


def test_scalar_features_of_c_major_scale(scale):
    assert features.total_used_pitch(scale) == 7
    assert features.total_used_note(scale) == 7
    assert features.pitch_range(scale) == 11
    assert features.avg_pitch_interval(scale) == pytest.approx(11 / 6)  # 2 2 1 2 2 2
    assert features.avg_ioi(scale) == 1.0


def test_histograms_of_c_major_scale(scale):
    expected_pch = np.zeros(12)
    expected_pch[PITCH_CLASSES_OF_SCALE] = 1 / 7
    np.testing.assert_allclose(features.pitch_class_histogram(scale), expected_pch)
    expected_pctm = np.zeros((12, 12))
    for a, b in zip(PITCH_CLASSES_OF_SCALE, PITCH_CLASSES_OF_SCALE[1:]):
        expected_pctm[a, b] = 1 / 6
    np.testing.assert_allclose(features.pitch_class_transition_matrix(scale), expected_pctm)
    quarter = features.NOTE_LENGTH_CLASS_NAMES.index("quarter")
    np.testing.assert_array_equal(features.note_length_histogram(scale), np.eye(12)[quarter])
    expected_nltm = np.zeros((12, 12))
    expected_nltm[quarter, quarter] = 1.0
    np.testing.assert_array_equal(features.note_length_transition_matrix(scale), expected_nltm)


def test_per_bar_features_of_c_major_scale(scale):
    np.testing.assert_array_equal(features.bar_used_note(scale, 2), [4, 3])
    np.testing.assert_array_equal(features.bar_used_pitch(scale, 2), [4, 3])
    expected = np.zeros((2, 12))
    expected[0, [0, 2, 4, 5]] = 1 / 4
    expected[1, [7, 9, 11]] = 1 / 3
    np.testing.assert_allclose(features.bar_pitch_class_histogram(scale, 2), expected)


def test_per_bar_features_follow_the_time_signature():
    notes = piece_notes(scale_score(time_signatures=[(0, 3, 4)]), min_bars=4)
    np.testing.assert_array_equal(features.bar_used_note(notes, 4), [3, 3, 1, 0])


def test_held_note_counts_in_every_bar_it_sounds_in():
    # A whole-bar C, then a G held across the bar line: half of it in each bar.
    notes = piece_notes(make_score([(False, [(0, 4 * TPQ, 60, 80), (2 * TPQ, 4 * TPQ, 67, 80)])]),
                        min_bars=2)
    histogram = features.bar_pitch_class_histogram(notes, 2)
    np.testing.assert_allclose(histogram[0, [0, 7]], [4 / 6, 2 / 6])
    np.testing.assert_allclose(histogram[1, [0, 7]], [0, 1])


def test_chord_is_one_onset_and_reads_bottom_up():
    # C-E-G chord on beat 0, then C5 on beat 2.
    notes = piece_notes(make_score([(False, [(0, TPQ, 67, 80), (0, TPQ, 60, 80), (0, TPQ, 64, 80),
                                             (2 * TPQ, TPQ, 72, 80)])]))
    np.testing.assert_array_equal(notes.pitch, [60, 64, 67, 72])
    assert features.avg_ioi(notes) == 2.0
    assert features.avg_pitch_interval(notes) == pytest.approx((4 + 3 + 5) / 3)


def test_drums_count_as_onsets_but_not_as_pitches():
    score = make_score([(False, [(0, TPQ, 60, 80), (TPQ, TPQ, 64, 80)]),
                        (True, [(TPQ // 2, 60, 36, 100), (3 * TPQ, 60, 42, 100)])])
    notes = piece_notes(score)
    assert features.total_used_note(notes) == 4
    assert features.total_used_pitch(notes) == 2
    assert features.pitch_range(notes) == 4
    assert features.avg_ioi(notes) == 1.0  # onsets at beats 0, 0.5, 1, 3
    assert features.note_length_histogram(notes)[features.NOTE_LENGTH_CLASS_NAMES.index("quarter")] == 1.0
    np.testing.assert_allclose(features.pitch_class_histogram(notes), np.eye(12)[[0, 4]].mean(axis=0))
    np.testing.assert_array_equal(features.bar_used_note(notes, 1), [4])


@pytest.mark.parametrize("class_index", range(12))
def test_each_note_value_falls_in_its_own_class(class_index):
    beats = features.NOTE_LENGTH_CLASSES_BEATS[class_index]
    ticks = int(round(beats * TPQ))
    for length in (ticks, ticks + 3, ticks - 3):  # a few ticks of slack stay in the class
        notes = piece_notes(make_score([(False, [(0, length, 60, 80)])]))
        assert features.note_length_classes(notes)[0] == class_index


def test_degenerate_pieces_get_nan_exactly_where_a_feature_is_undefined():
    one_note = make_score([(False, [(0, TPQ, 60, 80)])])
    drums_only = make_score([(True, [(0, 60, 36, 100), (TPQ, 60, 42, 100)])])
    chord_only = make_score([(False, [(0, TPQ, 60, 80), (0, TPQ, 64, 80)])])
    expected_undefined = {
        "one note": (one_note, {"avg_pitch_interval", "avg_ioi", "pitch_class_transition_matrix",
                                "note_length_transition_matrix"}),
        "drums only": (drums_only, {"total_used_pitch", "bar_used_pitch", "pitch_class_histogram",
                                    "bar_pitch_class_histogram", "pitch_class_transition_matrix",
                                    "pitch_range", "avg_pitch_interval", "note_length_histogram",
                                    "note_length_transition_matrix"}),
        "one chord": (chord_only, {"avg_ioi"}),  # one distinct onset
    }
    for label, (score, undefined) in expected_undefined.items():
        values = features.mgeval_features(piece_notes(score, min_bars=2), 2)
        for name, value in values.items():
            if name in undefined:
                assert np.isnan(value).all(), (label, name)
            else:
                assert np.isfinite(value).all(), (label, name)


def test_pitch_and_velocity_are_widened_from_int8():
    notes = piece_notes(make_score([(False, [(0, TPQ, 0, 127), (TPQ, TPQ, 127, 127)])]))
    assert notes.pitch.dtype == np.int64 and notes.velocity.dtype == np.int64
    assert features.pitch_range(notes) == 127
    assert expressive.velocity_histogram(notes)[127] == 2


def test_bar_lines_from_the_time_signature_map():
    np.testing.assert_array_equal(bar_lines_ticks([], TPQ, 3000), [0, 1920, 3840])
    np.testing.assert_array_equal(bar_lines_ticks([(0, 6, 8)], TPQ, 3000), [0, 1440, 2880, 4320])
    # 4/4 for two bars, then 3/4.
    np.testing.assert_array_equal(bar_lines_ticks([(0, 4, 4), (3840, 3, 4)], TPQ, 5000),
                                  [0, 1920, 3840, 5280])
    # A change inside a bar cuts it short and starts a new bar.
    np.testing.assert_array_equal(bar_lines_ticks([(0, 4, 4), (1000, 3, 4)], TPQ, 2000),
                                  [0, 1000, 2440])
    # Laid to at least min_bars, and an invalid signature is read as 4/4.
    np.testing.assert_array_equal(bar_lines_ticks([(0, 0, 4)], TPQ, 0, min_bars=3),
                                  [0, 1920, 3840, 5760])


def test_microtiming_is_deviation_from_the_16th_and_triplet_grid():
    onsets = [0, TPQ // 4 + 10, TPQ // 3 - 5, TPQ + TPQ * 2 // 3 + 7, 2 * TPQ + TPQ // 8]
    notes = piece_notes(make_score([(False, [(t, 60, 60 + k, 80) for k, t in enumerate(onsets)])]))
    expected = np.array([0, 10, -5, 7, TPQ // 8]) / TPQ  # the last is halfway: +-1/8 beat
    np.testing.assert_allclose(np.abs(expressive.microtiming_beats(notes)), np.abs(expected))
    np.testing.assert_allclose(expressive.microtiming_beats(notes)[:4], expected[:4])


def test_microtiming_is_anchored_at_bar_lines_from_the_meter_map():
    # 3/4 from tick 1000 (inside the first 4/4 bar): a note on that new bar line is on the
    # grid, though 1000 ticks is no 16th or triplet position from tick 0.
    score = make_score([(False, [(1000, TPQ, 60, 80), (1000 + TPQ // 2, TPQ, 62, 80)])],
                       time_signatures=[(0, 4, 4), (1000, 3, 4)])
    np.testing.assert_allclose(expressive.microtiming_beats(piece_notes(score)), [0, 0])
    without_change = make_score([(False, [(1000, TPQ, 60, 80)])])
    assert abs(expressive.microtiming_beats(piece_notes(without_change))[0]) > 0.01


def test_every_scale_pitch_is_listed():
    assert features.total_used_pitch(piece_notes(scale_score(C_MAJOR_SCALE * 3))) == 7


@settings(max_examples=60, deadline=None)
@given(signatures=st.lists(st.tuples(st.integers(0, 20 * TPQ), st.integers(1, 16),
                                     st.sampled_from([2, 4, 8, 16])), max_size=4),
       onsets=st.lists(st.integers(0, 40 * TPQ), min_size=1, max_size=40))
def test_every_onset_lies_in_its_bar_and_near_the_grid(signatures, onsets):
    score = make_score([(False, [(t, TPQ // 2, 60 + k % 12, 80) for k, t in enumerate(onsets)])],
                       time_signatures=signatures)
    notes = piece_notes(score, min_bars=4)
    lines = notes.bar_lines_ticks
    assert notes.num_bars >= 4 and np.all(np.diff(lines) > 0)
    bar = notes.bar_of_onset
    assert np.all(lines[bar] <= notes.onset_ticks) and np.all(notes.onset_ticks < lines[bar + 1])
    assert np.all(np.abs(expressive.microtiming_beats(notes)) <= 1 / 8 + 1e-9)
    assert features.pitch_class_histogram(notes).sum() == pytest.approx(1.0)
    assert features.bar_used_note(notes, notes.num_bars).sum() == len(onsets)
