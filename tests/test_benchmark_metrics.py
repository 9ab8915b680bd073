"""The Cadenza benchmark's metrics and baselines on hand-made cases (benchmarks/cadenza.py,
benchmarks/note_regression.py)."""
import numpy as np
import pytest

from benchmarks.cadenza import f1, overlap, own_other, performance_metrics
from benchmarks.note_regression import FEATURES, NoteRegression, note_features
from pertok import PerTok
from tests.pertok.scores import make_score

TOKENIZER = PerTok()
Q = TOKENIZER.config.ticks_per_quarter


def test_f1_and_own_other():
    assert f1({(0, 60), (1, 62)}, {(0, 60), (2, 64)}) == pytest.approx(0.5)
    assert f1(set(), {(0, 60)}) == 0.0
    matrix = np.array([[1.0, 0.2, 0.4], [0.0, 0.5, 0.6], [0.1, 0.3, 0.9]])
    own, other = own_other(matrix)
    assert own == pytest.approx(0.8) and other == pytest.approx(1.6 / 6)


def test_histogram_overlap_and_metrics_against_the_truth():
    bins = np.arange(0, 129, 4)
    assert overlap(np.array([10.0, 50]), np.array([10.0, 50]), bins) == 1.0
    assert overlap(np.array([10.0, 10]), np.array([90.0, 90]), bins) == 0.0
    truth_v, truth_t = [np.array([60.0, 70, 80]), np.array([40.0, 50])], [np.array([0.0, 1, -1]), np.array([2.0, 2])]
    flat = performance_metrics([np.full(3, 70.0), np.full(2, 45.0)], [np.zeros(3), np.zeros(2)], truth_v, truth_t)
    assert flat["velocity_mae"] == pytest.approx((10 + 0 + 10 + 5 + 5) / 5)
    assert flat["microtiming_mae_bins"] == pytest.approx(6 / 5)
    assert flat["velocity_correlation_within_pieces"] == 0.0  # a constant has no within-piece shape
    shaped = performance_metrics([np.array([61.0, 69, 81]), np.array([41.0, 49])], truth_t, truth_v, truth_t)
    assert shaped["velocity_correlation_within_pieces"] == pytest.approx(1.0, abs=0.01)
    assert shaped["microtiming_mae_bins"] == 0.0


def test_note_features_read_the_score():
    score = make_score(Q, [(0, False, [(0, Q, 60, 80), (0, Q, 64, 80), (0, Q, 67, 80),  # a chord on the downbeat
                                       (3 * Q // 2, Q // 2, 72, 90),  # an eighth off the beat
                                       (4 * Q, 2 * Q, 55, 70)])])  # the next downbeat
    features, velocity, timing = note_features(TOKENIZER.encode(score), TOKENIZER)
    column = {name: features[:, i] for i, name in enumerate(FEATURES)}
    np.testing.assert_array_equal(column["highest"], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(column["lowest"], [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(column["chord size"], [2, 2, 2, 0, 0])
    np.testing.assert_array_equal(column["downbeat"], [1, 1, 1, 0, 1])
    np.testing.assert_array_equal(column["eighth"], [0, 0, 0, 1, 0])
    np.testing.assert_allclose(column["log duration"], [0, 0, 0, -1, 1])
    assert np.all(np.abs(velocity - [80, 80, 80, 90, 70]) <= 2) and np.all(timing == 0)


def test_the_regression_learns_a_rule_and_is_told_the_level():
    """Pieces whose top voice is 20 louder than the rest: told a level, it puts the melody above."""
    rng = np.random.default_rng(0)
    pieces = []
    for piece in range(6):
        base = 50 + 5 * piece
        notes = []
        for beat in range(16):
            low, high = sorted(rng.choice(np.arange(48, 84), 2, replace=False))
            notes += [(beat * Q, Q, int(low), base), (beat * Q, Q, int(high), base + 20)]
        pieces.append(TOKENIZER.encode(make_score(Q, [(0, False, notes)])))
    regression = NoteRegression(TOKENIZER).fit(pieces[:5])
    velocity, timing = regression.predict(pieces[5], level=100.0)
    top = note_features(pieces[5], TOKENIZER)[0][:, FEATURES.index("highest")] == 1
    assert velocity[top].mean() - velocity[~top].mean() == pytest.approx(20, abs=2)
    assert velocity.mean() == pytest.approx(100, abs=2) and np.all(np.abs(timing) < 0.5)


def test_heldout_sets_hold_out_what_the_split_holds_out(tmp_path):
    from benchmarks.heldout import choose, heldout_folders
    from training.data import is_validation

    for drummer in range(12):
        for session in range(2):
            folder = tmp_path / f"drummer{drummer}" / f"session{session}"
            folder.mkdir(parents=True)
            for take in range(3):
                (folder / f"{take}_beat.mid").write_bytes(b"")
    by_drummer = heldout_folders(tmp_path, 0.3, "top")
    assert set(by_drummer) == {f"drummer{d}" for d in range(12) if is_validation(f"drummer{d}", 0.3)}
    assert all(len(files) == 6 for files in by_drummer.values())
    chosen = choose(by_drummer, seed=0, per_folder=4)
    assert len(chosen) == 4 * len(by_drummer) and len(set(chosen)) == len(chosen)
    assert chosen == choose(by_drummer, seed=0, per_folder=4)  # the same arguments, the same set
    by_session = heldout_folders(tmp_path, 0.3, "folder")
    assert all(len(files) == 3 for files in by_session.values())
    assert len(choose(by_session, seed=0)) == len(by_session)  # one performance per folder


def test_performers_are_named_name_equals_workdir():
    from benchmarks.performer_style import parse_performers

    assert parse_performers("groove=runs/g,piano=pretrained/p") == {"groove": "runs/g", "piano": "pretrained/p"}
    for bad in ("runs/g", "=runs/g", "groove=", ""):
        with pytest.raises(SystemExit, match="performer_style.py: error"):
            parse_performers(bad)


def test_the_size_of_variations_against_their_inputs():
    from benchmarks.cadenza import size_summary

    size = size_summary([1.0, 0.0, 0.4, 1.2, 0.9])  # one empty variation counts 0
    assert size["variations"] == 5 and size["median"] == pytest.approx(0.9)
    assert size["under_half"] == pytest.approx(2 / 5)
    assert size["p10"] <= size["median"] <= size["p90"]
