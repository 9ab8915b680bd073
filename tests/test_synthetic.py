"""The built-in synthetic corpus: determinism, coverage of the hard cases, valid and reloadable MIDI."""
import numpy as np
import pytest
import symusic
from hypothesis import given, settings
from hypothesis import strategies as st

from pertok import synthetic
from pertok.synthetic import cli as synthetic_cli
from pertok.synthetic import generate_score, write_corpus
from pertok.synthetic.timeline import build_timeline, swing

ALL_METERS = {(4, 4), (3, 4), (6, 8), (2, 2), (5, 4), (7, 8), (12, 8)}
CORPUS_SIZE = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[symusic.core.ScoreTick, symusic.core.ScoreTick]]:
    """The 24-piece corpus as (generated score, score read back from its file)."""
    out_dir = tmp_path_factory.mktemp("corpus")
    paths = write_corpus(out_dir, CORPUS_SIZE, seed=0)
    return [(generate_score(i), symusic.Score(path)) for i, path in enumerate(paths)]


def _notes(track) -> dict[str, np.ndarray]:
    """A track's notes as int64 arrays sorted by (time, pitch, duration, velocity)."""
    notes = {key: value.astype(np.int64) for key, value in track.notes.numpy().items()}
    order = np.lexsort((notes["velocity"], notes["duration"], notes["pitch"], notes["time"]))
    return {key: value[order] for key, value in notes.items()}


def _bar_starts(score) -> np.ndarray:
    """Tick of every bar line, from the time signatures, up to the end of the score."""
    signatures = list(score.time_signatures)
    end = score.end()
    starts = []
    for index, signature in enumerate(signatures):
        bar_ticks = score.tpq * 4 * signature.numerator // signature.denominator
        segment_end = signatures[index + 1].time if index + 1 < len(signatures) else end + 1
        starts.extend(range(signature.time, segment_end, bar_ticks))
    return np.array(starts)


def _grid_deviation_ms(score, track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance (ms) of each onset from the nearest 16th or 8th-triplet point of its bar.

    Returns:
      (deviation_ms, bar index, duration in ticks) of each note.
    """
    notes = _notes(track)
    onset = notes["time"].astype(np.float64)
    bar_starts = _bar_starts(score)
    bar = np.searchsorted(bar_starts, onset, side="right") - 1
    position_q = (onset - bar_starts[bar]) / score.tpq
    candidates = np.stack([np.round(position_q * 4) / 4, np.round(position_q * 3) / 3], axis=1)
    nearest = candidates[np.arange(len(onset)), np.argmin(np.abs(candidates - position_q[:, None]), axis=1)]
    tempo_times = np.array([tempo.time for tempo in score.tempos])
    mspq = np.array([tempo.mspq for tempo in score.tempos], dtype=np.float64)
    ms_per_quarter = mspq[np.searchsorted(tempo_times, onset, side="right") - 1] / 1000
    return (position_q - nearest) * ms_per_quarter, bar, notes["duration"]


def test_same_seed_gives_identical_bytes():
    for seed in (0, 1, 2, 12345):
        assert generate_score(seed).dumps_midi() == generate_score(seed).dumps_midi()
    first, second = generate_score(7, "band"), generate_score(7, "band")
    for track_a, track_b in zip(first.tracks, second.tracks):
        for key, values in _notes(track_a).items():
            np.testing.assert_array_equal(values, _notes(track_b)[key])


def test_different_seeds_differ():
    payloads = {generate_score(seed).dumps_midi() for seed in range(12)}
    assert len(payloads) == 12
    assert generate_score(3, "piano").dumps_midi() != generate_score(6, "piano").dumps_midi()


def test_corpus_files_are_byte_identical_for_one_seed_and_differ_across_seeds(tmp_path):
    first = write_corpus(tmp_path / "a", 3, seed=5)
    again = write_corpus(tmp_path / "b", 3, seed=5)
    other = write_corpus(tmp_path / "c", 3, seed=6)
    assert [p.name for p in first] == [
        "piece_0000_band.mid", "piece_0001_piano.mid", "piece_0002_drums.mid"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert all(a.read_bytes() != c.read_bytes() for a, c in zip(first, other))


def test_kinds_have_their_instruments():
    piano = generate_score(4, "piano")
    assert [(t.is_drum, t.program) for t in piano.tracks] == [(False, 0)]
    assert len(piano.tracks[0].pedals) > 0
    drums = generate_score(4, "drums")
    assert [t.is_drum for t in drums.tracks] == [True]
    band = generate_score(4, "band")
    assert len(band.tracks) >= 3
    assert sum(t.is_drum for t in band.tracks) == 1
    assert any(32 <= t.program <= 39 and not t.is_drum for t in band.tracks)


def test_corpus_covers_meters_meter_changes_tempo_changes_and_resolutions(corpus):
    meters = {(ts.numerator, ts.denominator) for score, _ in corpus for ts in score.time_signatures}
    assert meters == ALL_METERS
    assert any(len(score.time_signatures) > 1 for score, _ in corpus)
    assert any(len(score.tempos) > 1 for score, _ in corpus)
    assert {score.tpq for score, _ in corpus} >= {480} and len({score.tpq for score, _ in corpus}) >= 2
    qpm = np.concatenate([[t.qpm for t in score.tempos] for score, _ in corpus])
    assert 40 <= qpm.min() and qpm.max() < 180.01  # 180 qpm is 333333 us per quarter
    # A ritardando: some piece ends on several tempo events, each slower than the last.
    endings = [[t.qpm for t in score.tempos][-4:] for score, _ in corpus]
    assert any(len(ending) == 4 and np.all(np.diff(ending) < 0) for ending in endings)


def test_meter_changes_fall_on_bar_lines(corpus):
    changed = [score for score, _ in corpus if len(score.time_signatures) > 1]
    assert changed
    for score in changed:
        signatures = list(score.time_signatures)
        for before, after in zip(signatures[:-1], signatures[1:]):
            bar_ticks = score.tpq * 4 * before.numerator // before.denominator
            assert (after.time - before.time) % bar_ticks == 0


def test_corpus_has_pedals_drums_and_ensembles(corpus):
    tracks = [track for score, _ in corpus for track in score.tracks]
    assert any(len(track.pedals) > 0 for track in tracks)
    assert any(track.is_drum for track in tracks)
    assert any(len(score.tracks) >= 3 for score, _ in corpus)
    drum_notes = [_notes(track) for track in tracks if track.is_drum]
    pitches = set(np.concatenate([notes["pitch"] for notes in drum_notes]).tolist())
    assert {36, 38, 42, 49} <= pitches
    snare_velocity = np.concatenate([notes["velocity"][notes["pitch"] == 38] for notes in drum_notes])
    assert np.any(snare_velocity <= 40) and np.any(snare_velocity >= 90)  # ghost notes and backbeats


def test_onsets_carry_microtiming_near_the_grid(corpus):
    # Piano pieces: no swing, so every deviation from the grid is microtiming.
    pianos = [score for score, _ in corpus if len(score.tracks) == 1 and not score.tracks[0].is_drum]
    deviations, not_grace = [], []
    for score in pianos:
        deviation, _, duration = _grid_deviation_ms(score, score.tracks[0])
        deviations.append(np.abs(deviation))
        not_grace.append(duration >= score.tpq / 8)  # a grace note lasts 1/32 beat
    deviations, not_grace = np.concatenate(deviations), np.concatenate(not_grace)
    assert np.mean(deviations > 2.0) > 0.5  # most onsets are off the grid
    assert np.mean(deviations < 50.0) > 0.95  # but close to it
    # Grace notes sit a 64th before their main note; every other onset stays within the cap.
    assert np.all(deviations[not_grace] < 60.0)


def test_microtiming_drifts_slowly_rushing_and_dragging(corpus):
    correlations = []
    for score, _ in corpus:
        if len(score.tracks) != 1 or score.tracks[0].is_drum:
            continue
        deviation, bar, _ = _grid_deviation_ms(score, score.tracks[0])
        bar_means = np.array([deviation[bar == b].mean() for b in np.unique(bar)])
        correlations.append(np.corrcoef(bar_means[:-1], bar_means[1:])[0, 1])
    # Neighbouring bars rush or drag together: a per-phrase drift, not only independent jitter.
    assert np.median(correlations) > 0.3


def test_downbeats_are_accented(corpus):
    accents = []
    for score, _ in corpus:
        bar_starts = _bar_starts(score)
        for track in score.tracks:
            if track.is_drum:
                continue
            notes = _notes(track)
            bar = np.searchsorted(bar_starts, notes["time"], side="right") - 1
            on_bar_line = np.abs(notes["time"] - bar_starts[bar]) < score.tpq / 8
            # Compare within each bar, so phrase crescendos and instrument levels cancel out.
            accents.extend(notes["velocity"][(bar == b) & on_bar_line].mean()
                           - notes["velocity"][(bar == b) & ~on_bar_line].mean()
                           for b in np.unique(bar)
                           if on_bar_line[bar == b].any() and not on_bar_line[bar == b].all())
    assert np.median(accents) > 3


def test_written_files_reload_with_the_same_notes_and_pedals(corpus):
    for generated, reloaded in corpus:
        assert reloaded.note_num() == generated.note_num()
        assert reloaded.tpq == generated.tpq
        for track_a, track_b in zip(generated.tracks, reloaded.tracks):
            for key, values in _notes(track_a).items():
                np.testing.assert_array_equal(values, _notes(track_b)[key])
            pedals_a = [(p.time, p.duration) for p in track_a.pedals]
            assert pedals_a == [(p.time, p.duration) for p in track_b.pedals]


def test_velocities_pitches_durations_and_times_are_valid(corpus):
    for score, _ in corpus:
        assert min(t.time for t in score.tempos) == 0
        for track in score.tracks:
            notes = _notes(track)
            assert notes["velocity"].min() >= 1 and notes["velocity"].max() <= 127
            assert notes["duration"].min() >= 1 and notes["time"].min() >= 0
            low, high = (35, 81) if track.is_drum else (21, 108)
            assert notes["pitch"].min() >= low and notes["pitch"].max() <= high
            assert all(p.time >= 0 and p.duration >= 1 for p in track.pedals)


def _cut_by_next_strike(notes: dict[str, np.ndarray]) -> np.ndarray:
    """Whether each note ends exactly where its key is struck again (shortened, not written short)."""
    order = np.lexsort((notes["time"], notes["pitch"]))
    pitch, time = notes["pitch"][order], notes["time"][order]
    end = time + notes["duration"][order]
    cut = np.append((pitch[1:] == pitch[:-1]) & (end[:-1] == time[1:]), False)
    return cut[np.argsort(order)]


def test_very_short_and_very_long_notes_occur(corpus):
    short = long = 0
    for score, _ in corpus:
        for track in score.tracks:
            if not track.is_drum:
                notes = _notes(track)
                short += int(np.sum((notes["duration"] < score.tpq / 16) & ~_cut_by_next_strike(notes)))
                long += int(np.sum(notes["duration"] > 6 * score.tpq))  # held over bars
    assert short > 0 and long > 0


def test_swing_moves_offbeat_eighths_and_spares_compound_meters():
    timeline = build_timeline(np.random.default_rng(0), "4/4")
    straight = np.array([0.0, 0.5, 1.0, 1.5, 2.25])
    np.testing.assert_allclose(swing(timeline, straight, 0.6, 1.0), [0.0, 0.6, 1.0, 1.6, 2.3])
    compound = build_timeline(np.random.default_rng(0), "6/8")
    np.testing.assert_allclose(swing(compound, straight, 0.6, 1.0), straight)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**40), kind=st.sampled_from([None, *synthetic.KINDS]))
def test_any_seed_gives_a_valid_piece(seed, kind):
    score = generate_score(seed, kind)
    assert score.tpq in synthetic.TPQ_CHOICES and len(score.tracks) >= 1
    for track in score.tracks:
        notes = _notes(track)
        assert len(notes["time"]) > 0 and notes["time"].min() >= 0 and notes["duration"].min() >= 1
        assert 1 <= notes["velocity"].min() and notes["velocity"].max() <= 127
        # One key never sounds twice at once, so the file reads back as written.
        order = np.lexsort((notes["time"], notes["pitch"]))
        same_key = notes["pitch"][order][1:] == notes["pitch"][order][:-1]
        ends = (notes["time"] + notes["duration"])[order][:-1]
        assert np.all(ends[same_key] <= notes["time"][order][1:][same_key])


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(ValueError, match="seed"):
        generate_score(-1)
    with pytest.raises(ValueError, match="kind"):
        generate_score(0, "guitar")
    with pytest.raises(SystemExit):
        synthetic_cli.main(["--out", "unused", "--num_pieces", "0"])
    assert "--num_pieces" in capsys.readouterr().err


def test_command_line_writes_the_corpus(tmp_path, capsys):
    synthetic_cli.main(["--out", str(tmp_path), "--num_pieces", "3", "--seed", "2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "piece_0000_band.mid", "piece_0001_piano.mid", "piece_0002_drums.mid"]
    assert "wrote 3 pieces" in capsys.readouterr().out
