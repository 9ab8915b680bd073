"""A literal, loop-by-loop re-derivation of MGEval's formulas, to test `evaluation.mgeval` against.

Written from MGEval's definitions (mgeval/core.py, utils.py, __main__.py) and the pretty_midi
functions they call, in the plain style of those sources: a full 128-row piano roll filled
note by note, the all-pairs end/start matrix, nearest-class search over MGEval's list, a
Gaussian KDE summed term by term and integrated on a dense grid. Slow, and only for tests.
"""
from __future__ import annotations

import math

import numpy as np
import symusic

FS = 100


def tick_to_time(score: symusic.Score, max_tick: int) -> np.ndarray:
    """pretty_midi's tick -> seconds table: 120 qpm until the first tempo, then each tempo."""
    tpq = score.ticks_per_quarter
    scales = [(0, 60.0 / (120.0 * tpq))]
    for tempo in sorted(score.tempos, key=lambda t: t.time):
        scale = 60.0 / ((6e7 / tempo.mspq) * tpq)
        if tempo.time == scales[-1][0]:
            scales[-1] = (tempo.time, scale)
        else:
            scales.append((tempo.time, scale))
    table = np.zeros(max_tick + 1)
    last_end = 0.0
    for (start, scale), (end, _) in zip(scales, scales[1:] + [(max_tick, None)]):
        if start > max_tick:
            break
        end = min(end, max_tick)
        table[start:end + 1] = last_end + scale * np.arange(end - start + 1)
        last_end = table[end]
    return table


def _tracks(score: symusic.Score):
    """Per track: is_drum, notes as (start_s, end_s, pitch, velocity, onset_tick, duration_tick), CC 64."""
    max_tick = max([n.time + n.duration for t in score.tracks for n in t.notes]
                   + [c.time for t in score.tracks for c in t.controls] + [0])
    seconds = tick_to_time(score, max_tick)
    tracks = []
    for track in score.tracks:
        notes = sorted(((seconds[n.time], seconds[n.time + n.duration], n.pitch, n.velocity, n.time, n.duration)
                        for n in track.notes), key=lambda n: (n[4], n[2]))
        pedal = [(seconds[c.time], c.value) for c in track.controls if c.number == 64]
        tracks.append((track.is_drum, notes, pedal))
    return tracks


def piano_roll(score: symusic.Score) -> np.ndarray:
    """The summed get_piano_roll(fs=100) of every non-drum track (pedal as pretty_midi >= 0.2.9)."""
    rolls = []
    for is_drum, notes, pedal in _tracks(score):
        if is_drum or not notes:
            continue
        end_time = max([n[1] for n in notes] + [p[0] for p in pedal])
        roll = np.zeros((128, int(FS * end_time)))
        for start, end, pitch, velocity, _, _ in notes:
            roll[pitch, int(start * FS):int(end * FS)] += velocity
        pedal_on, time_on = False, 0
        for time, value in pedal:
            now = int(time * FS)
            if not pedal_on and value >= 64:
                time_on, pedal_on = now, True
            elif pedal_on and value < 64:
                roll[:, time_on:now] = np.maximum.accumulate(roll[:, time_on:now], axis=1)
                pedal_on = False
        rolls.append(roll)
    width = max([r.shape[1] for r in rolls] + [0])
    total = np.zeros((128, width))
    for roll in rolls:
        total[:, :roll.shape[1]] += roll
    return total


def features(score: symusic.Score) -> dict[str, np.ndarray]:
    """MGEval's nine features of one score, written out as its code computes them (NaN where
    its code crashes or divides by zero)."""
    tracks = _tracks(score)
    melodic = sorted((n for is_drum, notes, _ in tracks if not is_drum for n in notes),
                     key=lambda n: (n[4], n[2]))
    roll_sums = np.sum(piano_roll(score), axis=1)
    used = np.where(roll_sums > 0)[0]
    out = {"total_used_pitch": float(np.sum(roll_sums > 0)) if used.size else math.nan,
           "pitch_range": float(np.max(used) - np.min(used)) if used.size else math.nan}
    histogram = np.zeros(12)
    for pitch in range(128):
        histogram[pitch % 12] += roll_sums[pitch]
    out["pitch_class_histogram"] = histogram / sum(histogram) if sum(histogram) else np.full(12, np.nan)
    matrix, any_track = np.zeros((12, 12)), False
    for is_drum, notes, _ in tracks:
        if is_drum or len(notes) <= 1:
            continue
        any_track = True
        starts, ends, nodes = np.array([[n[0], n[1], n[2] % 12] for n in notes]).T
        sources, targets = np.where(abs(np.subtract.outer(ends, starts)) < 0.05)
        counts, _, _ = np.histogram2d(nodes[sources], nodes[targets], bins=np.arange(13))
        matrix += counts
    out["pitch_class_transition_matrix"] = matrix if any_track else np.full((12, 12), np.nan)
    out["total_used_note"] = float(sum(len(notes) for _, notes, _ in tracks))
    shifts = [abs(a[2] - b[2]) for a, b in zip(melodic, melodic[1:])]
    out["avg_pitch_interval"] = float(np.mean(shifts)) if shifts else math.nan
    onsets = np.sort([n[0] for _, notes, _ in tracks for n in notes])
    out["avg_ioi"] = float(np.mean(np.diff(onsets))) if onsets.size >= 2 else math.nan
    out.update(_note_lengths(score, melodic))
    return {name: np.asarray(value, np.float64) for name, value in out.items()}


def _note_lengths(score: symusic.Score, melodic: list) -> dict[str, np.ndarray]:
    signatures = sorted(((s.time, s.numerator, s.denominator) for s in score.time_signatures),
                        key=lambda s: s[0])
    histogram, transitions, idx = np.zeros(12), np.zeros((12, 12)), None
    for note in melodic:
        numerator, denominator = 4, 4
        for tick, num, den in signatures:
            if tick <= note[4]:
                numerator, denominator = num, den
        bar_length = numerator * score.ticks_per_quarter * 4 / denominator
        unit = bar_length / 96.
        hist_list = [unit * 96, unit * 48, unit * 24, unit * 12, unit * 6, unit * 72, unit * 36,
                     unit * 18, unit * 9, unit * 32, unit * 16, unit * 8]
        last_idx, idx = idx, int(np.abs(np.array(hist_list) - note[5]).argmin())
        histogram[idx] += 1
        if last_idx is not None:
            transitions[last_idx][idx] += 1
    return {"note_length_histogram": histogram / histogram.sum() if melodic else np.full(12, np.nan),
            "note_length_transition_matrix": transitions if len(melodic) >= 2 else np.full((12, 12), np.nan)}


def kde(values: np.ndarray):
    """gaussian_kde(values) written out: Scott's factor n^(-1/5) on the ddof=1 variance."""
    values = np.asarray(values, np.float64)
    width = math.sqrt(np.cov(values)) * values.size ** (-1 / 5)

    def pdf(x: np.ndarray) -> np.ndarray:
        x = np.atleast_1d(np.asarray(x, np.float64))
        terms = np.exp(-0.5 * ((x[:, None] - values[None, :]) / width) ** 2)
        return terms.sum(axis=1) / (values.size * width * math.sqrt(2 * math.pi))
    return pdf


def overlap_area(a: np.ndarray, b: np.ndarray, points: int = 20_001) -> float:
    """utils.overlap_area: the integral of min(pdf_A, pdf_B) over [min, max] of both sets."""
    pdf_a, pdf_b = kde(a), kde(b)
    x = np.linspace(min(np.min(a), np.min(b)), max(np.max(a), np.max(b)), points)
    return float(np.trapezoid(np.minimum(pdf_a(x), pdf_b(x)), x))


def kl_dist(a: np.ndarray, b: np.ndarray, num_sample: int = 1000) -> float:
    """utils.kl_dist: scipy.stats.entropy of pdf_A and pdf_B on their own linspaces."""
    p = kde(a)(np.linspace(np.min(a), np.max(a), num_sample))
    q = kde(b)(np.linspace(np.min(b), np.max(b), num_sample))
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def intra_inter(set1: np.ndarray, set2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """__main__'s distances: set1 leave-one-out to the rest (c_dist), and set1 to all of set2."""
    flat1, flat2 = set1.reshape(len(set1), -1), set2.reshape(len(set2), -1)
    intra = [np.linalg.norm(flat1[i] - flat1[j]) for i in range(len(flat1)) for j in range(len(flat1)) if j != i]
    inter = [np.linalg.norm(flat1[i] - flat2[j]) for i in range(len(flat1)) for j in range(len(flat2))]
    return np.array(intra), np.array(inter)
