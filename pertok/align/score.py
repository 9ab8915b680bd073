"""Beat alignment: a new Score whose ticks follow the music's beat, sounding exactly the same.

A performance recorded against no click (ASAP's MIDI: one 120 qpm tempo, 4/4) has a tick grid
that means nothing, so PerTok's onsets and microtiming would measure distance from an invented
grid. Given its beat times, `align_score` writes one tempo per beat interval so that every
beat falls on a beat of the tick grid and every downbeat on a bar line of PerTok's bar map,
with the annotated meters (irregular bars get their own) and keys. Every note, pedal and
control keeps its time in seconds (within 1 ms, or one tick where a very slow beat makes a
tick longer). NumPy only: events move through one `np.interp` over the beat times.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence, Union

import numpy as np
import symusic

from pertok.align.grid import AlignmentWarning, BeatGrid, lay_grid
from pertok.align.annotations import AnnotationError, BeatAnnotations, read_annotations
from pertok.config import PerTokConfig
from pertok.events import MAX_QPM
from pertok.tokenizer import SCORE_TYPES, load_score

ScoreOrPath = Union[symusic.Score, str, os.PathLike]
MIN_QPM = 60e6 / (2 ** 24 - 1)  # a MIDI tempo holds at most 2^24 - 1 microseconds per quarter

__all__ = ["AlignmentReport", "AlignmentWarning", "AnnotationError", "BeatAnnotations", "align",
           "align_file", "align_score", "read_annotations"]


@dataclasses.dataclass(frozen=True)
class AlignmentReport:
    """What an alignment did: counts for a log line and the largest change of a note's time."""

    beats: int
    bars: int
    meters: list[str]
    irregular_bars: int
    dropped_beats: list[str]
    max_shift_ms: float
    max_shift_ticks: float
    first_downbeat_tick: int
    downbeat_ticks: np.ndarray  # int64, every kept downbeat (each on a bar line)

    def summary(self) -> str:
        return (f"{self.beats} beats, {self.bars} bars, meters {' '.join(self.meters)}, "
                f"{self.irregular_bars} irregular bars, {len(self.dropped_beats)} beats merged, "
                f"largest change of a note's time {self.max_shift_ms:.3f} ms "
                f"({self.max_shift_ticks:.2f} ticks)")


def tick_seconds(score: symusic.Score, ticks: np.ndarray) -> np.ndarray:
    """Seconds (float64) of ticks under a score's tempo map (120 qpm before the first tempo)."""
    tempos = score.tempos.numpy()
    order = np.argsort(tempos["time"], kind="stable")
    times = tempos["time"][order].astype(np.int64)
    mspq = tempos["mspq"][order].astype(np.float64)
    if len(times) == 0 or times[0] > 0:
        times, mspq = np.concatenate([[0], times]), np.concatenate([[500_000.0], mspq])
    seconds_per_tick = mspq / 1e6 / score.ticks_per_quarter
    start_seconds = np.concatenate([[0.0], np.cumsum(np.diff(times) * seconds_per_tick[:-1])])
    index = np.searchsorted(times, ticks, side="right") - 1
    return start_seconds[index] + (np.asarray(ticks, np.float64) - times[index]) * seconds_per_tick[index]


def _tempo_map(knot_ticks: np.ndarray, knot_seconds: np.ndarray, tpq: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole microseconds per quarter for each knot interval, and the knots' resulting seconds.

    Each interval's rounding is carried into the next, so knots stay within a microsecond
    of their beats however long the piece (independent rounding would drift).
    """
    quarters = np.diff(knot_ticks) / tpq
    mspq = np.empty(len(quarters), np.int64)
    actual = np.empty(len(knot_ticks))
    actual[0] = knot_seconds[0]
    for i, length in enumerate(quarters):  # one step per beat, not per note
        mspq[i] = min(max(round((knot_seconds[i + 1] - actual[i]) * 1e6 / length), 1), 2 ** 24 - 1)
        actual[i + 1] = actual[i] + mspq[i] * length / 1e6
    return mspq, actual


class _TimeMap:
    """Seconds -> ticks of the aligned score: linear between knots, the last tempo beyond."""

    def __init__(self, grid: BeatGrid, tpq: int):
        ticks, seconds = grid.ticks, grid.times
        if ticks[0] > 0:  # the lead-in: tick 0 is second 0
            ticks, seconds = np.concatenate([[0], ticks]), np.concatenate([[0.0], seconds])
        self.tpq, self.ticks = tpq, ticks
        self.mspq, self.seconds = _tempo_map(ticks, seconds, tpq)

    def to_ticks(self, seconds: np.ndarray) -> np.ndarray:
        seconds = np.asarray(seconds, np.float64)
        inside = np.interp(seconds, self.seconds, self.ticks)
        beyond = self.ticks[-1] + (seconds - self.seconds[-1]) * 1e6 / self.mspq[-1] * self.tpq
        return np.rint(np.where(seconds > self.seconds[-1], beyond, inside)).astype(np.int64)

    def to_seconds(self, ticks: np.ndarray) -> np.ndarray:
        ticks = np.asarray(ticks, np.float64)
        inside = np.interp(ticks, self.ticks, self.seconds)
        beyond = self.seconds[-1] + (ticks - self.ticks[-1]) * self.mspq[-1] / 1e6 / self.tpq
        return np.where(ticks > self.ticks[-1], beyond, inside)


def _moved(score, mapping: _TimeMap, times: np.ndarray) -> np.ndarray:
    return mapping.to_ticks(tick_seconds(score, times)).astype(np.int32)


def _spans(score, mapping: _TimeMap, time: np.ndarray, duration: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New (time, duration) of events with a duration: both ends move, so lengths follow the beat."""
    start = _moved(score, mapping, time.astype(np.int64))
    end = _moved(score, mapping, time.astype(np.int64) + duration.astype(np.int64))
    return start, np.maximum(end - start, 0).astype(np.int32)


def _copy_track(track, score, mapping: _TimeMap):
    new = symusic.Track(track.name, track.program, track.is_drum)
    notes = track.notes.numpy()
    time, duration = _spans(score, mapping, notes["time"], notes["duration"])
    new.notes = symusic.Note.from_numpy(time=time, duration=duration, pitch=notes["pitch"],
                                        velocity=notes["velocity"])
    pedals = track.pedals.numpy()
    time, duration = _spans(score, mapping, pedals["time"], pedals["duration"])
    new.pedals = symusic.Pedal.from_numpy(time=time, duration=duration)
    controls = track.controls.numpy()
    new.controls = symusic.ControlChange.from_numpy(time=_moved(score, mapping, controls["time"]),
                                                    number=controls["number"], value=controls["value"])
    bends = track.pitch_bends.numpy()
    new.pitch_bends = symusic.PitchBend.from_numpy(time=_moved(score, mapping, bends["time"]), value=bends["value"])
    for lyric in track.lyrics:  # text cannot go through NumPy; there are few
        new.lyrics.append(symusic.TextMeta(int(_moved(score, mapping, np.array([lyric.time]))[0]), lyric.text))
    return new


def _largest_shifts(score, aligned, mapping: _TimeMap) -> tuple[float, float]:
    """Largest change of any note's onset or end: in ms as a player hears it, and in ticks
    of the aligned score where it lies (a slow beat makes a tick longer than 1 ms)."""
    shift_ms, shift_ticks = [0.0], [0.0]
    for before, after in zip(score.tracks, aligned.tracks):
        old, new = before.notes.numpy(), after.notes.numpy()
        for old_ticks, new_ticks in ((old["time"], new["time"]),
                                     (old["time"].astype(np.int64) + old["duration"],
                                      new["time"].astype(np.int64) + new["duration"])):
            if len(old_ticks):
                change = np.abs(mapping.to_seconds(new_ticks) - tick_seconds(score, old_ticks))
                interval = np.clip(np.searchsorted(mapping.ticks, new_ticks, side="right") - 1,
                                   0, len(mapping.mspq) - 1)
                tick_length = mapping.mspq / 1e6 / mapping.tpq
                on_knot = mapping.ticks[interval] == new_ticks  # rounded on the slower side, maybe
                tick_seconds_here = np.where(on_knot, np.maximum(tick_length[interval],
                                                                 tick_length[np.maximum(interval - 1, 0)]),
                                             tick_length[interval])
                shift_ms.append(float(change.max()) * 1e3)
                shift_ticks.append(float((change / tick_seconds_here).max()))
    return max(shift_ms), max(shift_ticks)


def align(score: ScoreOrPath, beat_times: Sequence[float] | np.ndarray,
          downbeats: Sequence | np.ndarray | None = None,
          time_signatures: dict[int, tuple[int, int]] | None = None,
          key_signatures: dict[int, int] | None = None,
          config: PerTokConfig | None = None) -> tuple[symusic.Score, AlignmentReport]:
    """Align a score to beats given as arrays: times in seconds, downbeats as a mask or times,
    meters and keys by beat index (see `BeatAnnotations.from_arrays`)."""
    annotations = BeatAnnotations.from_arrays(beat_times, downbeats, time_signatures, key_signatures)
    return align_score(score, annotations, config)


def align_score(score: ScoreOrPath, annotations: BeatAnnotations, config: PerTokConfig | None = None,
                max_qpm: float = MAX_QPM) -> tuple[symusic.Score, AlignmentReport]:
    """A Score at the tokenizer's resolution whose ticks follow `annotations`' beats.

    Args:
      score: a symusic Score (any resolution and tempo map) or a MIDI path.
      config: the PerTok config whose resolution and TimeSig tokens the grid is laid for.
      max_qpm: runs of beats faster than this are merged (annotation glitches), with a warning.
    """
    config = config or PerTokConfig()
    if not isinstance(score, SCORE_TYPES):
        score = load_score(score)
    elif not isinstance(score, symusic.core.ScoreTick):
        score = score.to("tick")
    tpq = config.ticks_per_quarter
    grid = lay_grid(annotations, config, (MIN_QPM, max_qpm))
    mapping = _TimeMap(grid, tpq)
    aligned = symusic.Score(tpq)
    aligned.tracks.extend([_copy_track(track, score, mapping) for track in score.tracks])
    for marker in score.markers:
        aligned.markers.append(symusic.TextMeta(int(_moved(score, mapping, np.array([marker.time]))[0]),
                                                marker.text))
    aligned.tempos = symusic.Tempo.from_numpy(time=mapping.ticks[:-1].astype(np.int32),
                                              mspq=mapping.mspq.astype(np.int32))
    aligned.time_signatures = symusic.TimeSignature.from_numpy(
        time=grid.bar_starts.astype(np.int32), numerator=grid.bar_signatures[:, 0].astype(np.uint8),
        denominator=grid.bar_signatures[:, 1].astype(np.uint8))
    aligned.key_signatures = symusic.KeySignature.from_numpy(
        time=grid.key_ticks.astype(np.int32), key=grid.key_values.astype(np.int8),
        tonality=np.zeros(len(grid.key_values), np.uint8))  # ASAP gives accidentals, not the mode
    shift_ms, shift_ticks = _largest_shifts(score, aligned, mapping)
    report = AlignmentReport(beats=len(grid.ticks), bars=grid.bars, meters=grid.meters,
                             irregular_bars=grid.irregular_bars, dropped_beats=grid.dropped,
                             max_shift_ms=shift_ms, max_shift_ticks=shift_ticks,
                             first_downbeat_tick=grid.first_downbeat_tick,
                             downbeat_ticks=grid.ticks[grid.downbeat])
    return aligned, report


def align_file(midi_path: str | os.PathLike, annotation_path: str | os.PathLike,
               config: PerTokConfig | None = None) -> tuple[symusic.Score, AlignmentReport]:
    """Read a MIDI file and its annotation file and align them (errors name the file)."""
    return align_score(load_score(midi_path), read_annotations(annotation_path), config)
