"""Expressive fidelity: velocity and microtiming distributions, and how two sets' differ.

Microtiming is an onset's deviation, in beats, from the nearest position of the union of
the 16th-note and 8th-note-triplet grids laid from the onset's own bar line (bars from the
time-signature map; a meter change starts a new bar). Within a beat the union grid sits
at 0, 1/4, 1/3, 1/2, 2/3, 3/4; its widest gap is 1/4 beat, so deviations lie in
[-1/8, 1/8]. The next bar line counts as a grid position of the bar before it.

Sets are compared through their pooled per-note histograms (every note of every piece):
overlap area = sum of the bin-wise minimum of the two normalised histograms, and
KL(generated || reference) with a small floor on empty bins. Histograms rather than a
KDE because a set holds millions of notes and velocities are integers anyway.
"""
from __future__ import annotations

import numpy as np

from evaluation.notes import PieceNotes

# The union grid: 16th notes and 8th-note triplets, as subdivisions of the beat.
GRID_SUBDIVISIONS_PER_BEAT = (4, 3)
MAX_MICROTIMING_BEATS = 1 / 8
# 25 bins of 0.01 beat; an odd count puts on-grid onsets alone in the centre bin.
MICROTIMING_BIN_EDGES_BEATS = np.linspace(-MAX_MICROTIMING_BEATS, MAX_MICROTIMING_BEATS, 26)
NUM_VELOCITIES = 128
# Empty-bin floor, relative to one count in a million, so KL stays finite.
_KL_FLOOR = 1e-6


def microtiming_beats(notes: PieceNotes) -> np.ndarray:
    """Each onset's deviation from the nearest 16th/triplet-8th grid position, float64 beats."""
    bar = notes.bar_of_onset
    bar_start = notes.bar_lines_ticks[bar]
    bar_beats = (notes.bar_lines_ticks[bar + 1] - bar_start) / notes.ticks_per_quarter
    beats_into_bar = (notes.onset_ticks - bar_start) / notes.ticks_per_quarter
    # Clipped to the bar so that a triplet position past an odd bar's end is never used.
    deviations_GxN = np.stack([
        beats_into_bar - np.clip(np.round(beats_into_bar * step) / step, 0.0, bar_beats)
        for step in GRID_SUBDIVISIONS_PER_BEAT])
    nearest = np.abs(deviations_GxN).argmin(axis=0)
    return np.take_along_axis(deviations_GxN, nearest[None, :], axis=0)[0]


def velocity_histogram(notes: PieceNotes) -> np.ndarray:
    """Note count per MIDI velocity 0..127, int64 [128]."""
    return np.bincount(np.clip(notes.velocity, 0, NUM_VELOCITIES - 1), minlength=NUM_VELOCITIES)


def microtiming_histogram(microtiming: np.ndarray) -> np.ndarray:
    """Note count per bin of MICROTIMING_BIN_EDGES_BEATS, int64 [25].

    Args:
      microtiming: deviations in beats, as from `microtiming_beats`.
    """
    counts, _ = np.histogram(microtiming, bins=MICROTIMING_BIN_EDGES_BEATS)
    return counts.astype(np.int64)


# Per-piece expressive summaries; they join the MGEval features in the OA table.
EXPRESSIVE_ABBREVIATIONS = {
    "velocity_mean": "VEL mean",
    "velocity_std": "VEL std",
    "microtiming_mean_abs": "|MT| mean",
}


def expressive_features(notes: PieceNotes, microtiming: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and spread of a piece's velocities, and its mean |microtiming| in beats.

    Args:
      notes: the piece.
      microtiming: its deviations, `microtiming_beats(notes)`.
    """
    if notes.num_notes == 0:
        return {name: np.float64(0.0) for name in EXPRESSIVE_ABBREVIATIONS}
    return {
        "velocity_mean": np.float64(notes.velocity.mean()),
        "velocity_std": np.float64(notes.velocity.std()),
        "microtiming_mean_abs": np.float64(np.abs(microtiming).mean()),
    }


def histogram_overlap(generated_counts: np.ndarray, reference_counts: np.ndarray) -> dict[str, float]:
    """Overlap area and KL(generated || reference) of two histograms on the same bins.

    Returns {"oa": in [0, 1], "kl": >= 0}; two empty histograms overlap fully.
    """
    generated = np.asarray(generated_counts, np.float64)
    reference = np.asarray(reference_counts, np.float64)
    if generated.sum() == 0 or reference.sum() == 0:
        same = generated.sum() == reference.sum()
        return {"oa": 1.0 if same else 0.0, "kl": 0.0 if same else float(-np.log(_KL_FLOOR))}
    p = generated / generated.sum()
    q = reference / reference.sum()
    oa = float(np.minimum(p, q).sum())
    q_floored = (q + _KL_FLOOR) / (1 + _KL_FLOOR * q.size)
    present = p > 0
    kl = float(np.sum(p[present] * np.log(p[present] / q_floored[present])))
    return {"oa": min(max(oa, 0.0), 1.0), "kl": max(kl, 0.0)}
