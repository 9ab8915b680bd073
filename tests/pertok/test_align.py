"""Beat alignment on synthetic performances whose written grid and beat times are known."""
from __future__ import annotations

import numpy as np
import pytest
import symusic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pertok import PerTok
from pertok.align import AlignmentWarning, align, align_score
from pertok.align import BeatAnnotations, meter_beats
from pertok.quantize import score_to_table
from tests.pertok.scores import make_score, note_rows

TPQ = 960
PERFORMANCE_TICKS_PER_SECOND = 2 * TPQ  # recorded like ASAP: one 120 qpm tempo, 4/4

# (meter, beats in the bar, the signature the score writes): 6/8, 3/8, 2/2, 12/16, an
# irregular 5-beat bar of 4/4 (written 5/4) and meter changes.
BARS = [((3, 4), 3, None), ((3, 4), 3, None), ((6, 8), 2, None), ((6, 8), 2, None),
        ((3, 8), 3, None), ((3, 8), 3, None), ((2, 2), 2, None), ((12, 16), 4, None),
        ((4, 4), 4, None), ((4, 4), 5, (5, 4)), ((4, 4), 4, None), ((4, 4), 4, None)]


def written_piece(bars, pickup_beats: int, seed: int = 0):
    """A score on its grid (tpq 960) and its beats: ticks, downbeat mask, annotated meters."""
    rng = np.random.default_rng(seed)
    first_meter = bars[0][0]
    unit = int(meter_beats(*first_meter)[1] * TPQ)
    downbeat_tick = first_meter[0] * 4 * TPQ // first_meter[1]  # one bar holds the pickup
    beat_ticks = [downbeat_tick - (pickup_beats - j) * unit for j in range(pickup_beats)]
    downbeats = [False] * pickup_beats
    annotated, signatures, notes = {}, [(0, *first_meter)], []
    start, previous = downbeat_tick, None
    for meter, beats, written in bars:
        unit = int(meter_beats(*meter)[1] * TPQ)
        if meter != previous:
            annotated[len(beat_ticks)] = meter
        previous = meter
        beat_ticks += [start + j * unit for j in range(beats)]
        downbeats += [True] + [False] * (beats - 1)
        signature = written or meter
        if signature != tuple(signatures[-1][1:]):
            signatures.append((start, *signature))
        length = beats * unit
        grid = np.union1d(np.arange(0, length, TPQ // 4), np.arange(0, length, TPQ // 3))
        for onset in rng.choice(grid, size=min(5, len(grid)), replace=False):
            notes.append((start + int(onset), int(rng.choice([240, 480, 720, 960, 1440])),
                          int(rng.integers(40, 90)), int(rng.integers(30, 120))))
        start += length
        if written:  # the annotation names the meter; the score writes it back after the bar
            signatures.append((start, *meter))
    notes.append((beat_ticks[0], 480, 72, 80))  # a note on the pickup
    score = make_score(TPQ, [(0, False, notes)], time_signatures=signatures)
    beat_ticks.append(start)  # the downbeat after the last bar closes it
    downbeats.append(True)
    return score, np.array(beat_ticks), np.array(downbeats), annotated, downbeat_tick


def beat_seconds(count: int, first: float = 1.0, seed: int = 0) -> np.ndarray:
    """Rubato (a wave) over an accelerando: beats from about 0.65 s down to 0.3 s."""
    rng = np.random.default_rng(seed)
    index = np.arange(count - 1)
    intervals = 0.5 * (1.3 - 0.7 * index / count) * (1 + 0.2 * np.sin(index / 2.5)) * rng.uniform(0.95, 1.05, count - 1)
    return first + np.concatenate([[0.0], np.cumsum(intervals)])


def perform(written: symusic.Score, beat_ticks: np.ndarray, seconds: np.ndarray) -> symusic.Score:
    """The written score played with its beats at `seconds`, recorded at 120 qpm in 4/4."""
    notes = written.tracks[0].notes.numpy()
    rate = (seconds[-1] - seconds[-2]) / (beat_ticks[-1] - beat_ticks[-2])

    def at(ticks):
        inside = np.interp(ticks, beat_ticks, seconds)
        return np.where(ticks > beat_ticks[-1], seconds[-1] + (ticks - beat_ticks[-1]) * rate, inside)

    onset = at(notes["time"].astype(np.float64))
    end = at(notes["time"].astype(np.float64) + notes["duration"])
    rows = np.stack([np.rint(onset * PERFORMANCE_TICKS_PER_SECOND), np.rint((end - onset) * PERFORMANCE_TICKS_PER_SECOND),
                     notes["pitch"].astype(np.int64), notes["velocity"].astype(np.int64)], 1)
    return make_score(TPQ, [(0, False, rows)])


def bar_lines(score: symusic.Score, tokenizer: PerTok, start: int) -> np.ndarray:
    """PerTok's bars from tick `start` on: (start - `start`, TimeSig index) rows."""
    bars = score_to_table(score, tokenizer.vocab).bars
    keep = bars.starts >= start
    return np.stack([bars.starts[keep] - start, bars.time_signature[keep]], 1)


def played_seconds(score: symusic.Score) -> np.ndarray:
    notes = score.to("second").tracks[0].notes.numpy()
    return np.sort(np.concatenate([notes["time"], notes["time"] + notes["duration"]]).astype(np.float64))


def check_alignment(written, performance, aligned, report, downbeat_tick):
    tokenizer = PerTok()
    offset = report.first_downbeat_tick - downbeat_tick
    expected = note_rows(tokenizer.quantize(written))
    got = note_rows(tokenizer.quantize(aligned))
    got[:, 1] -= offset
    np.testing.assert_array_equal(got, expected)  # the written grid, exactly
    np.testing.assert_array_equal(bar_lines(aligned, tokenizer, report.first_downbeat_tick),
                                  bar_lines(written, tokenizer, downbeat_tick)[:len(
                                      bar_lines(aligned, tokenizer, report.first_downbeat_tick))])
    np.testing.assert_allclose(played_seconds(aligned), played_seconds(performance), atol=1e-3, rtol=0)
    assert report.max_shift_ms <= 1.0
    assert tokenizer.decode(tokenizer.encode(aligned)).note_num() == performance.note_num()


@pytest.mark.parametrize("pickup", [0, 1, 2])
def test_meters_pickup_and_irregular_bar_recover_the_written_grid(pickup):
    written, beat_ticks, downbeats, meters, downbeat_tick = written_piece(BARS, pickup, seed=pickup)
    seconds = beat_seconds(len(beat_ticks), seed=pickup)
    performance = perform(written, beat_ticks, seconds)
    aligned, report = align(performance, seconds, downbeats, meters)
    check_alignment(written, performance, aligned, report, downbeat_tick)
    assert report.irregular_bars == 1 and report.beats == len(seconds) and report.dropped_beats == []
    assert report.meters[:5] == ["3/4", "6/8", "3/8", "2/2", "12/16"] and "5/4" in report.meters
    assert report.first_downbeat_tick % (3 * TPQ) == 0  # a bar line of the first meter
    signatures = aligned.time_signatures.numpy()
    assert (5, 4) in set(zip(signatures["numerator"].tolist(), signatures["denominator"].tolist()))


def test_glitch_of_two_beats_5_ms_apart_is_merged_with_a_warning():
    written, beat_ticks, downbeats, meters, downbeat_tick = written_piece(BARS, 1)
    seconds = beat_seconds(len(beat_ticks))
    performance = perform(written, beat_ticks, seconds)
    glitch = 7  # a stray beat 5 ms after beat 7
    times = np.insert(seconds, glitch + 1, seconds[glitch] + 0.005)
    flags = np.insert(downbeats, glitch + 1, False)
    shifted = {b + (b > glitch): m for b, m in meters.items()}
    with pytest.warns(AlignmentWarning, match="merged 1 beats"):
        aligned, report = align(performance, times, flags, shifted)
    assert len(report.dropped_beats) == 1 and report.beats == len(seconds)
    check_alignment(written, performance, aligned, report, downbeat_tick)


def test_pedals_controls_and_tempo_map_of_the_input_keep_their_seconds():
    score = make_score(480, [(0, False, [(0, 480, 60, 80), (700, 100, 64, 70), (2000, 3000, 67, 60)])],
                       tempos=((0, 100.0), (900, 140.0)), pedals={0: [(100, 1500)]})
    score.tracks[0].controls = symusic.ControlChange.from_numpy(
        time=np.array([50, 1900], np.int32), number=np.array([7, 7], np.uint8), value=np.array([90, 100], np.uint8))
    beats = np.array([0.2, 0.75, 1.2, 1.8, 2.3, 2.9, 3.4])
    aligned, report = align(score, beats, np.array([1, 0, 0, 1, 0, 0, 1], bool), {0: (3, 4)})
    before, after = score.to("second").tracks[0], aligned.to("second").tracks[0]
    for name in ("notes", "pedals", "controls"):
        old, new = getattr(before, name).numpy(), getattr(after, name).numpy()
        np.testing.assert_allclose(new["time"], old["time"], atol=1e-3)
        if "duration" in old:
            np.testing.assert_allclose(new["duration"], old["duration"], atol=2e-3)
    tempos = aligned.tempos.numpy()
    assert len(tempos["time"]) == 1 + len(beats) - 1  # the lead-in, then one per beat interval
    assert report.max_shift_ms <= 1.0


def test_a_performance_grid_ignores_its_recorded_tempo():
    """The same performance recorded at another resolution and tempo aligns to the same ticks."""
    written, beat_ticks, downbeats, meters, _ = written_piece(BARS[:4], 0)
    seconds = beat_seconds(len(beat_ticks))
    performance = perform(written, beat_ticks, seconds)
    notes = performance.to("second").tracks[0].notes.numpy()
    rows = np.stack([np.rint(notes["time"] * 480), np.rint(notes["duration"] * 480),
                     notes["pitch"].astype(np.int64), notes["velocity"].astype(np.int64)], 1)
    other = make_score(480, [(0, False, rows)], time_signatures=((0, 7, 8),), tempos=((0, 60.0),))
    first, _ = align(performance, seconds, downbeats, meters)
    second, _ = align(other, seconds, downbeats, meters)
    fastest = (np.diff(beat_ticks) / np.diff(seconds)).max()  # ticks per second
    recording_error = 0.5 / 480 + 0.5 / PERFORMANCE_TICKS_PER_SECOND  # seconds, both recordings
    np.testing.assert_allclose(note_rows(second)[:, 1], note_rows(first)[:, 1],
                               atol=recording_error * fastest + 1, rtol=0)


@st.composite
def beat_sequences(draw):
    count = draw(st.integers(2, 40))
    intervals = draw(st.lists(st.floats(0.1, 2.0), min_size=count - 1, max_size=count - 1))
    start = draw(st.one_of(st.just(0.0), st.floats(0.01, 3.0)))  # below 7.5 ms: see the next test
    times = start + np.concatenate([[0.0], np.cumsum(intervals)])
    downbeats = np.array(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
    meters = [(4, 4), (3, 4), (6, 8), (2, 2), (3, 8), (12, 8), (5, 4), (9, 8), (2, 4)]
    signatures = {int(b): draw(st.sampled_from(meters)) for b in np.flatnonzero(downbeats)[:3]}
    onsets = draw(st.lists(st.floats(0.0, float(times[-1]) + 2.0), min_size=1, max_size=30))
    return times, downbeats, signatures, np.array(onsets)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(beat_sequences())
def test_random_beats_keep_times_and_put_downbeats_on_bar_lines(sequence):
    times, downbeats, signatures, onsets = sequence
    ticks = np.rint(onsets * PERFORMANCE_TICKS_PER_SECOND).astype(np.int64)
    rows = np.stack([ticks, np.full_like(ticks, 300), 40 + np.arange(len(ticks)) % 40, np.full_like(ticks, 64)], 1)
    performance = make_score(TPQ, [(0, False, rows)])
    aligned, report = align(performance, times, downbeats, signatures)
    assert report.max_shift_ticks <= 0.5 + 1e-6  # rounding to the nearest tick, nothing more
    tick_length = aligned.tempos.numpy()["mspq"].max() / 1e6 / TPQ
    np.testing.assert_allclose(played_seconds(aligned), played_seconds(performance),
                               atol=max(1e-3, tick_length) + 1e-5, rtol=0)
    tokenizer = PerTok()
    bars = score_to_table(aligned, tokenizer.vocab).bars.starts
    reachable = report.downbeat_ticks[report.downbeat_ticks <= bars[-1]]
    assert np.isin(reachable, bars).all()
    assert tokenizer.decode(tokenizer.encode(aligned)).note_num() == len(onsets)


def test_without_downbeats_or_meters_the_first_beat_opens_a_bar():
    annotations = BeatAnnotations.from_arrays([0.5, 1.0, 1.5, 2.0])
    score = make_score(TPQ, [(0, False, [(960, 480, 60, 80)])])
    aligned, report = align_score(score, annotations)
    assert report.bars == 1 and report.max_shift_ms <= 1.0


def test_first_beat_within_a_16th_at_2000_qpm_of_0_s_moves_to_0_s():
    """No bar before it could be faster than PerTok's 2000 qpm, so the first beat moves to 0 s;
    notes of the first beat move by at most that much."""
    score = make_score(TPQ, [(0, False, [(0, 200, 60, 80), (480, 200, 62, 80), (2400, 200, 64, 80)])])
    aligned, report = align(score, [0.004, 0.504, 1.004, 1.504], np.array([False, True, False, False]), {1: (2, 4)})
    assert report.first_downbeat_tick == TPQ  # the pickup is a 1/4 bar of its own at 0
    assert report.max_shift_ms <= 4.0 + 1e-6
    signatures = aligned.time_signatures.numpy()
    assert (signatures["numerator"][0], signatures["denominator"][0]) == (1, 4)


def test_a_long_cadenza_bar_is_split_into_bars_the_tokens_hold_and_keys_are_kept():
    beats = 0.5 + 0.25 * np.arange(4 + 37 + 4 + 1)
    downbeats = np.zeros(len(beats), bool)
    downbeats[[0, 4, 41, 45]] = True  # 4/4, a 37-beat cadenza, 4/4
    score = make_score(TPQ, [(0, False, [(i * 480, 400, 60 + i % 12, 80) for i in range(100)])])
    aligned, report = align(score, beats, downbeats, {0: (4, 4)}, key_signatures={0: -3, 41: 2})
    assert report.irregular_bars == 1
    bars = score_to_table(aligned, PerTok().vocab).bars.starts
    assert np.isin(report.downbeat_ticks, bars).all()
    keys = aligned.key_signatures.numpy()
    assert keys["key"].tolist() == [-3, 2] and keys["time"][1] == report.downbeat_ticks[2]
