"""The notes of a score as flat arrays, with its bar lines from the time-signature map.

Every metric in this package starts from a `PieceNotes`: the notes of all tracks merged
and sorted by onset, then pitch, so a chord reads bottom-up, each flagged drum or not.
Pitch and note-length features read `PieceNotes.melodic` (drum "pitches" name
instruments and drum lengths are not note values); onset, velocity and microtiming
measures read every note, drums included, since a drummer's timing and dynamics are
performance too. Times stay in ticks; features convert to beats (quarter notes) with
`ticks_per_quarter`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import symusic

# MIDI's default meter: it holds before the first time signature and replaces invalid ones.
DEFAULT_TIME_SIGNATURE = (4, 4)


@dataclasses.dataclass(frozen=True)
class PieceNotes:
    """The notes of one score, all tracks merged, sorted by onset then pitch.

    Attributes:
      onset_ticks: int64 [num_notes].
      duration_ticks: int64 [num_notes].
      pitch: int64 [num_notes], MIDI pitch (a drum sound on drum tracks).
      velocity: int64 [num_notes], MIDI velocity.
      is_drum: bool [num_notes], the note is on a drum track.
      ticks_per_quarter: ticks per beat (quarter note).
      bar_lines_ticks: float64 [num_bars + 1]: the start of every bar, then the end of the
        last one. Covers every onset and at least the `min_bars` asked of `piece_notes`.
    """

    onset_ticks: np.ndarray
    duration_ticks: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    is_drum: np.ndarray
    ticks_per_quarter: int
    bar_lines_ticks: np.ndarray

    @functools.cached_property
    def melodic(self) -> PieceNotes:
        """The same piece without its drum notes (itself when it has none)."""
        if not self.is_drum.any():
            return self
        keep = ~self.is_drum
        return dataclasses.replace(
            self, onset_ticks=self.onset_ticks[keep], duration_ticks=self.duration_ticks[keep],
            pitch=self.pitch[keep], velocity=self.velocity[keep], is_drum=self.is_drum[keep])

    @property
    def num_notes(self) -> int:
        return int(self.onset_ticks.shape[0])

    @property
    def num_bars(self) -> int:
        return int(self.bar_lines_ticks.shape[0]) - 1

    @property
    def onset_beats(self) -> np.ndarray:
        return self.onset_ticks / self.ticks_per_quarter

    @property
    def duration_beats(self) -> np.ndarray:
        return self.duration_ticks / self.ticks_per_quarter

    @functools.cached_property
    def bar_of_onset(self) -> np.ndarray:
        """Index of the bar holding each onset, int64 [num_notes] (computed once)."""
        bar = np.searchsorted(self.bar_lines_ticks, self.onset_ticks, side="right") - 1
        return np.clip(bar, 0, max(self.num_bars - 1, 0))

    def num_bars_with_music(self) -> int:
        """Bars up to and including the one holding the last onset (0 without notes)."""
        return int(self.bar_of_onset[-1]) + 1 if self.num_notes else 0


def bar_lines_ticks(time_signatures: Sequence[tuple[int, int, int]], ticks_per_quarter: int,
                    end_tick: float, min_bars: int = 1) -> np.ndarray:
    """Bar lines laid from a time-signature map; every signature change starts a new bar.

    A change that falls inside a bar cuts that bar short, as notation software does.

    Args:
      time_signatures: (tick, numerator, denominator) triples. 4/4 holds before the first
        one; a triple with a numerator or denominator below 1 is read as 4/4.
      ticks_per_quarter: ticks per quarter note; a bar lasts 4 * numerator / denominator
        quarters.
      end_tick: bars are laid until one holds this tick.
      min_bars: lay at least this many bars, repeating the last signature.

    Returns:
      float64 [num_bars + 1]: bar starts, then the end of the last bar.
    """
    meter_by_tick = {0: DEFAULT_TIME_SIGNATURE}
    # Stable sort on the tick alone, so of two signatures on one tick the later one wins.
    for tick, numerator, denominator in sorted(time_signatures, key=lambda sig: sig[0]):
        valid = numerator >= 1 and denominator >= 1
        meter_by_tick[max(int(tick), 0)] = (numerator, denominator) if valid else DEFAULT_TIME_SIGNATURE
    change_ticks = sorted(meter_by_tick)
    bar_starts = []
    for k, start in enumerate(change_ticks):
        numerator, denominator = meter_by_tick[start]
        bar_ticks = ticks_per_quarter * 4 * numerator / denominator
        if k + 1 < len(change_ticks):
            num_bars = math.ceil((change_ticks[k + 1] - start) / bar_ticks)
            bar_starts.append(start + bar_ticks * np.arange(num_bars))
            continue
        laid = sum(len(starts) for starts in bar_starts)
        num_bars = max(math.floor(max(end_tick - start, 0) / bar_ticks) + 1, min_bars - laid)
        bar_starts.append(start + bar_ticks * np.arange(num_bars + 1))
    return np.concatenate(bar_starts).astype(np.float64)


def piece_notes(score: symusic.Score, min_bars: int = 1) -> PieceNotes:
    """The notes of `score` (any time unit) and its bar lines.

    Args:
      score: the score; converted to ticks if it is in quarters or seconds.
      min_bars: lay at least this many bar lines (per-bar features read a fixed count).
    """
    if score.ttype != symusic.TimeUnit.tick:
        score = score.to(symusic.TimeUnit.tick)
    tracks = [track for track in score.tracks if len(track.notes)]
    columns = [track.notes.numpy() for track in tracks]
    if columns:
        # symusic hands pitch and velocity over as int8; widen before any arithmetic.
        onset, duration, pitch, velocity = (
            np.concatenate([c[key] for c in columns]).astype(np.int64)
            for key in ("time", "duration", "pitch", "velocity"))
        is_drum = np.concatenate([np.full(len(c["time"]), t.is_drum) for t, c in zip(tracks, columns)])
    else:
        onset = duration = pitch = velocity = np.zeros(0, np.int64)
        is_drum = np.zeros(0, bool)
    order = np.lexsort((pitch, onset))
    signatures = [(sig.time, sig.numerator, sig.denominator) for sig in score.time_signatures]
    end_tick = float(onset.max()) if onset.size else 0.0
    return PieceNotes(
        onset_ticks=onset[order], duration_ticks=duration[order], pitch=pitch[order],
        velocity=velocity[order], is_drum=is_drum[order], ticks_per_quarter=int(score.ticks_per_quarter),
        bar_lines_ticks=bar_lines_ticks(signatures, int(score.ticks_per_quarter), end_tick, min_bars))


def load_piece(path: str, min_bars: int = 1) -> PieceNotes:
    """Read a MIDI file with symusic and return its `PieceNotes`."""
    return piece_notes(symusic.Score(path), min_bars=min_bars)
