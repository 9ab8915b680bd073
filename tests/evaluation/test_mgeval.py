"""The mgeval protocol: hand-computed MGEval values, and agreement with a literal re-derivation."""
import json

import numpy as np
import pytest
import symusic

from evaluation import compare, mgeval, mgeval_overlap
from evaluation.report import write_report
from tests.evaluation import mgeval_literal
from tests.evaluation.scores import TPQ, make_score

# At 120 qpm and 480 ticks per quarter a tick is 1/960 s and a beat 50 frames of 10 ms.
ARPEGGIO = [(0, TPQ, 60, 100), (TPQ, TPQ // 2, 64, 50), (3 * TPQ // 2, TPQ // 2, 67, 80),
            (2 * TPQ, 2 * TPQ, 72, 60)]


def _features(score: symusic.Score) -> dict[str, np.ndarray]:
    return mgeval.mgeval_features(score)


def test_arpeggio_has_the_values_worked_out_by_hand():
    values = _features(make_score([(False, ARPEGGIO)]))
    assert values["total_used_pitch"] == 4 and values["pitch_range"] == 12
    # Velocity x frames: C 100x50 + 60x100, E 50x25, G 80x25.
    expected_pch = np.zeros(12)
    expected_pch[[0, 4, 7]] = [11000, 1250, 2000]
    np.testing.assert_allclose(values["pitch_class_histogram"], expected_pch / 14250)
    # Each note ends where the next starts; C5's end meets no start. Raw counts.
    expected_pctm = np.zeros((12, 12))
    expected_pctm[0, 4] = expected_pctm[4, 7] = expected_pctm[7, 0] = 1
    np.testing.assert_array_equal(values["pitch_class_transition_matrix"], expected_pctm)
    assert values["total_used_note"] == 4
    assert values["avg_pitch_interval"] == pytest.approx((4 + 3 + 5) / 3)
    assert values["avg_ioi"] == pytest.approx(1.0 / 3)  # seconds, onsets 0, 0.5, 0.75, 1.0
    # Units of bar / 96 = 20 ticks in 4/4: quarter (24), 8th (12), 8th, half (48).
    np.testing.assert_allclose(values["note_length_histogram"], np.eye(12)[[2, 3, 3, 1]].mean(axis=0))
    expected_nltm = np.zeros((12, 12))
    expected_nltm[2, 3] = expected_nltm[3, 3] = expected_nltm[3, 1] = 1
    np.testing.assert_array_equal(values["note_length_transition_matrix"], expected_nltm)


def test_note_length_units_follow_the_bar_as_in_mgeval():
    # In 3/4 a unit is 15 ticks: a quarter (32 units) is MGEval's "half-note triplet",
    # an 8th its "quarter-note triplet" and a half note its "dotted half" (72 units).
    values = _features(make_score([(False, ARPEGGIO)], time_signatures=[(0, 3, 4)]))
    np.testing.assert_allclose(values["note_length_histogram"], np.eye(12)[[9, 10, 10, 5]].mean(axis=0))


def test_sustain_pedal_holds_the_loudest_velocity_until_release():
    score = make_score([(False, [(0, TPQ, 60, 100), (int(1.2 * TPQ), TPQ // 5, 64, 50)])])
    for tick, value in ((TPQ // 2, 127), (2 * TPQ, 0)):  # press at 0.25 s, release at 1.0 s
        score.tracks[0].controls.append(symusic.ControlChange(tick, 64, value))
    # C held from frame 0 to 100 at 100; E from frame 60 to 100 at 50.
    expected = np.zeros(12)
    expected[[0, 4]] = [100 * 100, 40 * 50]
    np.testing.assert_allclose(_features(score)["pitch_class_histogram"], expected / expected.sum())
    # A repeated note under the pedal: the roll goes 100 then 40, never 140, so the held
    # maximum is 100 over all 150 frames of the hold.
    repeated = make_score([(False, [(0, TPQ, 60, 100), (TPQ, TPQ, 60, 40)])])
    for tick, value in ((0, 127), (3 * TPQ, 0)):
        repeated.tracks[0].controls.append(symusic.ControlChange(tick, 64, value))
    assert mgeval.piano_roll_sums(mgeval.mgeval_piece(repeated))[60] == 150 * 100


def test_note_shorter_than_a_frame_is_no_pitch_and_tracks_do_not_join():
    values = _features(make_score([(False, [(0, TPQ, 60, 80), (TPQ, 4, 62, 80)]),
                                   (False, [(TPQ, TPQ, 67, 80)])]))
    assert values["total_used_pitch"] == 2 and values["pitch_range"] == 7  # D4 covers no frame
    expected_pctm = np.zeros((12, 12))
    expected_pctm[0, 2] = 1  # C4 ends as D4 starts; G4 starts there too, but on another track
    expected_pctm[2, 2] = 1  # the 4-tick note ends within 50 ms of its own start
    np.testing.assert_array_equal(values["pitch_class_transition_matrix"], expected_pctm)
    assert values["total_used_note"] == 3


def test_degenerate_pieces_are_nan_where_mgeval_crashes_or_divides_by_zero():
    drums = _features(make_score([(True, [(0, 60, 36, 100), (TPQ, 60, 42, 100)])]))
    for name in ("total_used_pitch", "pitch_range", "pitch_class_histogram", "pitch_class_transition_matrix",
                 "avg_pitch_interval", "note_length_histogram", "note_length_transition_matrix"):
        assert np.isnan(drums[name]).all(), name
    assert drums["total_used_note"] == 2 and drums["avg_ioi"] == pytest.approx(0.5)
    one = _features(make_score([(False, [(0, TPQ, 60, 80)])]))
    for name in ("avg_pitch_interval", "avg_ioi", "pitch_class_transition_matrix", "note_length_transition_matrix"):
        assert np.isnan(one[name]).all(), name
    assert one["total_used_pitch"] == 1 and one["pitch_range"] == 0


def random_score(rng: np.random.Generator) -> symusic.Score:
    """Two piano tracks and sometimes drums; odd resolution, tempo and meter changes, pedal, tiny notes."""
    tpq = int(rng.choice([480, 384, 220]))
    score = symusic.Score(tpq)
    for index in range(int(rng.integers(1, 4))):
        is_drum = index == 2
        track = symusic.Track(f"t{index}", 0, is_drum)
        onsets = np.sort(rng.integers(0, 16 * tpq, int(rng.integers(1, 30))))
        for onset in onsets:
            duration = int(rng.choice([rng.integers(0, 8), rng.integers(tpq // 8, 3 * tpq)]))
            track.notes.append(symusic.Note(int(onset), duration, int(rng.integers(36, 90)),
                                            int(rng.integers(1, 128))))
        for tick in np.sort(rng.integers(0, 16 * tpq, 12)):  # several holds, some notes across two
            track.controls.append(symusic.ControlChange(int(tick), 64, int(rng.choice([0, 30, 64, 127]))))
        score.tracks.append(track)
    for tick in np.r_[0, np.sort(rng.integers(1, 16 * tpq, 2))]:
        score.tempos.append(symusic.Tempo(int(tick), float(rng.uniform(50, 190))))
    for tick in (0, int(rng.integers(1, 12)) * tpq):
        numerator, denominator = [(4, 4), (3, 4), (6, 8), (7, 8)][int(rng.integers(4))]
        score.time_signatures.append(symusic.TimeSignature(tick, numerator, denominator))
    return score


@pytest.mark.parametrize("seed", range(12))
def test_features_equal_the_literal_rederivation(seed):
    score = random_score(np.random.default_rng(seed))
    expected = mgeval_literal.features(score)
    actual = _features(score)
    for name in mgeval.PAPER_FEATURES:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("seed", range(4))
def test_overlap_and_kl_equal_the_literal_kde(seed):
    rng = np.random.default_rng(seed)
    intra = rng.gamma(2.0 + seed, 1.0, 120)
    inter = np.r_[rng.gamma(2.5, 1.3, 200) + 0.5 * seed, 30.0 * (seed == 3)]  # an outlier in one case
    oa, grid, _ = mgeval_overlap.overlap_area(intra, inter)
    assert grid[0] == min(intra.min(), inter.min()) and grid[-1] == max(intra.max(), inter.max())
    assert oa == pytest.approx(mgeval_literal.overlap_area(intra, inter), abs=1e-3)
    assert mgeval_overlap.kl_divergence(intra, inter) == pytest.approx(
        mgeval_literal.kl_dist(intra, inter), rel=1e-6)


def test_overlap_matches_scipy_quad_as_mgeval_calls_it():
    integrate = pytest.importorskip("scipy.integrate")
    rng = np.random.default_rng(9)
    a, b = rng.normal(3, 1, 60), rng.normal(4, 1.5, 60)
    # gaussian_kde's density written out (it costs ms a call); quad with its defaults, as in MGEval.
    pdf_a, pdf_b = mgeval_literal.kde(a), mgeval_literal.kde(b)
    expected = integrate.quad(lambda x: min(pdf_a(x)[0], pdf_b(x)[0]), min(a.min(), b.min()),
                              max(a.max(), b.max()))[0]
    assert mgeval_overlap.overlap_area(a, b)[0] == pytest.approx(expected, abs=1e-4)


def test_report_equals_mgeval_main_on_random_sets(tmp_path):
    rng = np.random.default_rng(100)
    sets = {}
    for name in ("generated", "reference"):
        (tmp_path / name).mkdir()
        scores = []
        while len(scores) < 7:
            score = random_score(rng)
            score.tracks = [t for t in score.tracks if not t.is_drum]  # no piece without notes
            if sum(len(t.notes) for t in score.tracks) >= 2:
                score.dump_midi(str(tmp_path / name / f"{len(scores):02d}.mid"))
                scores.append(symusic.Score(str(tmp_path / name / f"{len(scores):02d}.mid")))
        sets[name] = scores
    report = write_report(tmp_path / "generated", tmp_path / "reference", tmp_path / "out", workers=1,
                          draw_plots=False, protocol="mgeval", max_pairs=10_000)
    assert report["protocol"] == "mgeval" and list(report["features"]) == list(mgeval.PAPER_FEATURES)
    for name, summary in report["features"].items():
        values = {s: np.stack([mgeval_literal.features(score)[name] for score in sets[s]]) for s in sets}
        keep = {s: np.isfinite(v.reshape(len(v), -1)).all(axis=1) for s, v in values.items()}
        assert summary["excluded"] == {s: int((~k).sum()) for s, k in keep.items()}, name
        intra, inter = mgeval_literal.intra_inter(values["generated"][keep["generated"]],
                                                  values["reference"][keep["reference"]])
        assert summary["oa"] == pytest.approx(mgeval_literal.overlap_area(intra, inter), abs=1e-3), name
    assert report["mean_oa"] == pytest.approx(np.mean([s["oa"] for s in report["features"].values()]))
    assert json.loads((tmp_path / "out" / "report.json").read_text())["exclusions"] == report["exclusions"]


def test_protocols_are_named():
    assert compare.PROTOCOLS == ("project", "mgeval")
    with pytest.raises(ValueError, match="project, mgeval"):
        compare.check_protocol("pretty")
