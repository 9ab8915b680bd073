"""Scores built by hand for the evaluation tests, and small random sets of them on disk."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import symusic

TPQ = 480
C_MAJOR_SCALE = (60, 62, 64, 65, 67, 69, 71)  # C4 .. B4, seven pitch classes


def make_score(tracks: Sequence[tuple[bool, Sequence[tuple[int, int, int, int]]]],
               time_signatures: Sequence[tuple[int, int, int]] = ((0, 4, 4),),
               tpq: int = TPQ) -> symusic.Score:
    """A score from plain rows.

    Args:
      tracks: (is_drum, notes) with note rows (onset, duration, pitch, velocity) in ticks.
      time_signatures: (tick, numerator, denominator) rows.
    """
    score = symusic.Score(tpq)
    for index, (is_drum, notes) in enumerate(tracks):
        track = symusic.Track(f"track{index}", 0, is_drum)
        for onset, duration, pitch, velocity in notes:
            track.notes.append(symusic.Note(onset, duration, pitch, velocity))
        score.tracks.append(track)
    for tick, numerator, denominator in time_signatures:
        score.time_signatures.append(symusic.TimeSignature(tick, numerator, denominator))
    return score


def scale_score(pitches: Sequence[int] = C_MAJOR_SCALE, beats_per_note: float = 1.0,
                time_signatures: Sequence[tuple[int, int, int]] = ((0, 4, 4),)) -> symusic.Score:
    """One voice playing `pitches` in turn, each lasting `beats_per_note`, velocity 80."""
    step = int(round(beats_per_note * TPQ))
    return make_score([(False, [(k * step, step, pitch, 80) for k, pitch in enumerate(pitches)])],
                      time_signatures)


def random_piece(rng: np.random.Generator, pitch_pool: Sequence[int], beats_per_note: float,
                 num_notes: int = 48, velocity_mean: int = 80) -> symusic.Score:
    """A one-voice piece drawing pitches from `pitch_pool` on a fixed rhythm, jittered velocities."""
    step = int(round(beats_per_note * TPQ))
    pitches = rng.choice(np.asarray(pitch_pool), num_notes)
    velocities = np.clip(rng.normal(velocity_mean, 8, num_notes).round(), 1, 127).astype(int)
    return make_score([(False, [(k * step, step, int(p), int(v))
                                for k, (p, v) in enumerate(zip(pitches, velocities))])])


def write_set(folder: Path, rng: np.random.Generator, num_pieces: int, style: str) -> list[Path]:
    """Write `num_pieces` random pieces of a style to `folder`.

    Styles: "diatonic" (C major, quarter notes, mezzo-forte) and "chromatic" (all twelve
    classes over four octaves, 16th notes, soft): far apart in every feature.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if style == "diatonic":
        pool, beats, velocity = [p + 12 * o for p in C_MAJOR_SCALE for o in (0, 1)], 1.0, 80
    else:
        pool, beats, velocity = list(range(36, 84)), 0.25, 40
    paths = []
    for k in range(num_pieces):
        path = folder / f"{style}_{k:03d}.mid"
        random_piece(rng, pool, beats, num_notes=int(rng.integers(24, 64)),
                     velocity_mean=velocity).dump_midi(str(path))
        paths.append(path)
    return paths
