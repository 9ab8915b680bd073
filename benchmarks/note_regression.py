"""A few rules of expression as a baseline for the Performer: a per-note linear regression on
score features, fit on the Performer's own training split.

Features of each note, read from its quantized composition only (what the Performer is given):
its pitch, whether it is the highest or the lowest note sounding at its onset, how many notes
share its onset, its metrical place (downbeat, beat, eighth, other), how many onsets lie within a
beat of it, and its log duration in beats. Velocity is predicted told the piece's level, as the
Performer is: the regression is fit to each note's velocity minus its piece's mean, and adds the
level back. Microtiming (in bins of 1/96 beat) is fit directly. Both minimise absolute error
(iteratively reweighted ridge least squares), since they are scored by it. NumPy only.
"""
from __future__ import annotations

import numpy as np

from pertok import PerTok
from pertok.decode import parse
from pertok.events import NOTE

FEATURES = ("pitch", "highest", "lowest", "chord size", "downbeat", "beat", "eighth", "offbeat",
            "onsets within a beat", "log duration")


def note_features(ids: np.ndarray, tokenizer: PerTok) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features float [n, F], MIDI velocity [n], microtiming bin [n]) of the notes of full-view ids,
    in token order (the order of their Velocity slots)."""
    table, _ = parse(np.asarray(ids), tokenizer.vocab, strict=False, view="full")
    notes = table.kind == NOTE
    tpq = tokenizer.config.ticks_per_quarter
    onset = (table.bars.starts[table.bar] + table.position)[notes].astype(np.int64)
    position = table.position[notes].astype(np.int64)
    pitch = table.pitch[notes].astype(np.float64)
    _, group, size = np.unique(onset, return_inverse=True, return_counts=True)
    highest = np.zeros(len(onset), bool)
    lowest = np.zeros(len(onset), bool)
    if len(onset):
        top = np.full(group.max() + 1, -1.0)
        bottom = np.full(group.max() + 1, 1e9)
        np.maximum.at(top, group, pitch)
        np.minimum.at(bottom, group, pitch)
        highest, lowest = pitch == top[group], pitch == bottom[group]
    on_beat = position % tpq == 0
    on_eighth = ~on_beat & (position % (tpq // 2) == 0)
    starts = np.unique(onset)
    nearby = (np.searchsorted(starts, onset + tpq, side="right") - np.searchsorted(starts, onset - tpq)).astype(float)
    duration = np.log2(np.maximum(table.duration[notes], 1) / tpq)
    features = np.stack([(pitch - 60) / 12, highest, lowest, size[group] - 1, position == 0, on_beat & (position != 0),
                         on_eighth, ~on_beat & ~on_eighth, nearby / 4, duration], axis=1).astype(np.float64)
    velocity = tokenizer.vocab.values_velocity[table.velocity[notes]].astype(np.float64)
    return features, velocity, table.microtiming[notes].astype(np.float64)


class NoteRegression:
    """Ridge regressions of velocity (about the piece's mean) and microtiming on `note_features`."""

    def __init__(self, tokenizer: PerTok, ridge: float = 1.0):
        self.tokenizer, self.ridge = tokenizer, ridge
        self.velocity_weights = self.microtiming_weights = None

    def _design(self, features: np.ndarray) -> np.ndarray:
        return np.concatenate([features, np.ones((len(features), 1))], axis=1)

    def _solve(self, design: np.ndarray, target: np.ndarray, iterations: int = 30) -> np.ndarray:
        """Least absolute deviations (the conditional median, as the Performer's median readout
        aims at: the best point guess for absolute error), by iteratively reweighted ridge
        least squares."""
        penalty = self.ridge * np.eye(design.shape[1])
        penalty[-1, -1] = 0.0  # the intercept is not shrunk
        weights = np.ones(len(target))
        for _ in range(iterations):
            weighted = design * weights[:, None]
            solution = np.linalg.solve(weighted.T @ design + penalty, weighted.T @ target)
            weights = 1.0 / np.maximum(np.abs(target - design @ solution), 0.5)
        return solution

    def fit(self, pieces) -> "NoteRegression":
        """Fit on every note of `pieces` (full-view ids, e.g. the Performer's training split)."""
        rows, velocities, timings = [], [], []
        for ids in pieces:
            features, velocity, timing = note_features(ids, self.tokenizer)
            if len(velocity):
                rows.append(features)
                velocities.append(velocity - velocity.mean())
                timings.append(timing)
        design = self._design(np.concatenate(rows))
        self.velocity_weights = self._solve(design, np.concatenate(velocities))
        self.microtiming_weights = self._solve(design, np.concatenate(timings))
        return self

    def predict(self, ids: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(velocity told the piece's `level`, clipped to 1..127; microtiming bin) of each note."""
        design = self._design(note_features(ids, self.tokenizer)[0])
        half = self.tokenizer.config.microtiming_bins // 2
        return (np.clip(design @ self.velocity_weights + level, 1, 127),
                np.clip(design @ self.microtiming_weights, -half, half))
