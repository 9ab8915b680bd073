"""Where each annotated beat goes on a tick grid, and the bars (with meters) that hold them.

The grid is laid bar by bar from the downbeats: every beat is one beat unit of its meter
(a dotted quarter in 6/8, an eighth in 3/8, a half in 2/2), every downbeat starts a bar of
PerTok's bar map. A bar whose beat count differs from its meter gets a time signature of
its own (the meter is restored after it); a length no TimeSig token holds is split into
bars that are held. Beats before the first downbeat (a pickup) fill the end of a bar.
"""
from __future__ import annotations

import dataclasses
import warnings
from fractions import Fraction

import numpy as np

from pertok.align.annotations import AnnotationError, BeatAnnotations, meter_beats
from pertok.config import PerTokConfig
from pertok.vocab import time_signatures as vocabulary_time_signatures


class AlignmentWarning(UserWarning):
    """Annotations were repaired (beats merged) to make a usable tempo map."""


@dataclasses.dataclass(frozen=True)
class BeatGrid:
    """Kept beats with their ticks, and the bars laid under them.

    Attributes:
      times: float64 [B] seconds of the kept beats.
      ticks: int64 [B] tick of each kept beat.
      downbeat: bool [B] whether each kept beat is a downbeat (each lies on a bar line).
      bar_starts: int64 [P] start tick of each run of bars with one time signature.
      bar_signatures: int64 [P, 2] (numerator, denominator) from each start on.
      key_ticks, key_values: key signatures (ticks, sharps/flats).
      dropped: `source:line` of each beat merged away as a glitch.
      irregular_bars: bars whose beat count differs from their meter.
      bars: annotated bars (downbeat to downbeat, plus the open last one).
      meters: meters used, "n/d", in order of first use.
      first_downbeat_tick: where the first annotated downbeat lies (a bar line).
    """

    times: np.ndarray
    ticks: np.ndarray
    downbeat: np.ndarray
    bar_starts: np.ndarray
    bar_signatures: np.ndarray
    key_ticks: np.ndarray
    key_values: np.ndarray
    dropped: list[str]
    irregular_bars: int
    bars: int
    meters: list[str]
    first_downbeat_tick: int


def _meter_of_beats(annotations: BeatAnnotations) -> np.ndarray:
    """(numerator, denominator) in force at every beat: int64 [N, 2].

    Beats before the first annotated meter (a pickup) take that meter; without any meter,
    the first full bar's beat count over 4 (a beat tracker's downbeats, say).
    """
    count = len(annotations.times)
    changes = sorted(annotations.time_signatures.items())
    if not changes:
        downbeats = np.flatnonzero(annotations.downbeat)
        beats = int(np.diff(downbeats)[0]) if len(downbeats) > 1 else 4
        changes = [(0, (beats, 4))]
    at = np.array([beat for beat, _ in changes])
    values = np.array([meter for _, meter in changes], np.int64)
    index = np.clip(np.searchsorted(at, np.arange(count), side="right") - 1, 0, None)
    return values[index]


def _quarters_per_beat(meters: np.ndarray) -> np.ndarray:
    return np.array([float(meter_beats(int(n), int(d))[1]) for n, d in meters])


def merge_glitches(annotations: BeatAnnotations, max_qpm: float) -> tuple[BeatAnnotations, list[str]]:
    """Merge runs of beats so close that their tempo exceeds `max_qpm` into one beat.

    The run becomes its first beat (so the interval before it is untouched), a downbeat if
    any beat of the run was, with the run's last meter and key annotations; each dropped
    beat is named in the returned list.
    """
    times, downbeat = annotations.times, annotations.downbeat
    quarters = _quarters_per_beat(_meter_of_beats(annotations))
    glitch = quarters[:-1] * 60.0 / np.diff(times) > max_qpm
    if not glitch.any():
        return annotations, []
    run = np.concatenate([[0], np.cumsum(~glitch)])
    keep = np.flatnonzero(np.concatenate([[True], ~glitch]))  # first beat of every run
    merged_downbeat = np.zeros(len(keep), bool)
    np.logical_or.at(merged_downbeat, run, downbeat)
    signatures, keys = {}, {}
    for source, target in ((annotations.time_signatures, signatures), (annotations.key_signatures, keys)):
        for beat, value in sorted(source.items()):
            target[int(run[beat])] = value
    dropped = [annotations.where(int(b)) for b in np.flatnonzero(np.concatenate([[False], glitch]))]
    warnings.warn(AlignmentWarning(
        f"{annotations.source}: merged {len(dropped)} beats closer than a tempo of {max_qpm:g} qpm "
        f"(first at {dropped[0]})"), stacklevel=3)
    lines = None if annotations.lines is None else annotations.lines[keep]
    merged = dataclasses.replace(annotations, times=times[keep], downbeat=merged_downbeat,
                                 time_signatures=signatures, key_signatures=keys, lines=lines)
    if len(keep) < 2:
        raise AnnotationError(f"{annotations.source}: fewer than two beats left after merging glitches")
    return merged, dropped


class _Signatures:
    """Which bar lengths PerTok's TimeSig tokens hold, and a signature for a given length."""

    def __init__(self, config: PerTokConfig):
        self.tpq = config.ticks_per_quarter
        supported = vocabulary_time_signatures(config) or [(4, 4)]
        self.supported = set(supported)
        self.lengths = {n * 4 * self.tpq // d for n, d in supported if (n * 4 * self.tpq) % d == 0}
        self.denominators = sorted({d for _, d in supported}, reverse=True)

    def length(self, numerator: int, denominator: int) -> Fraction:
        return Fraction(numerator * 4 * self.tpq, denominator)

    def held(self, numerator: int, denominator: int) -> bool:
        """A TimeSig token (this one, or one as long) lays exactly this bar."""
        return self.length(numerator, denominator) in self.lengths

    def for_length(self, ticks: int, denominator: int) -> tuple[int, int] | None:
        """A held signature `ticks` long, on `denominator` if possible, else None."""
        others = [d for d in self.denominators if d != denominator]
        for den in [denominator] + others:
            numerator = Fraction(ticks * den, 4 * self.tpq)
            if numerator.denominator == 1 and (int(numerator), den) in self.supported:
                return int(numerator), den
        return None

    def pieces(self, ticks: int, meter: tuple[int, int]) -> list[tuple[int, tuple[int, int]]]:
        """Bars (length, signature) that fill `ticks`: one bar if a token holds it, else
        whole bars of the meter and a remainder (itself split into held lengths)."""
        single = self.for_length(ticks, meter[1])
        if single is not None:
            return [(ticks, single)]
        bar = int(self.length(*meter)) if self.held(*meter) else max(self.lengths)
        out = []
        while ticks > 0:
            step = bar if ticks >= bar else max((l for l in self.lengths if l <= ticks), default=ticks)
            signature = (meter if step == bar and self.held(*meter) else self.for_length(step, meter[1])
                         or (max(1, round(step * meter[1] / (4 * self.tpq))), meter[1]))
            out.append((step, signature))
            ticks -= step
        return out


def _beat_ticks(meter: np.ndarray, tpq: int, annotations: BeatAnnotations, beat: int) -> int:
    ticks = meter_beats(int(meter[0]), int(meter[1]))[1] * tpq
    if ticks.denominator != 1:
        raise AnnotationError(f"{annotations.where(beat)}: a beat of {meter[0]}/{meter[1]} is not a whole "
                              f"number of ticks at {tpq} ticks per quarter")
    return int(ticks)


def _lay_bars(annotations: BeatAnnotations, meters: np.ndarray, signatures: _Signatures):
    """Ticks of every beat relative to the first downbeat, and the bar runs from it on."""
    tpq = signatures.tpq
    downbeats = np.flatnonzero(annotations.downbeat)
    if len(downbeats) == 0:
        downbeats = np.array([0])  # beats without bars: the first beat opens the first bar
    count = len(annotations.times)
    offsets = np.zeros(count, np.int64)
    runs: list[tuple[int, tuple[int, int]]] = []
    irregular, position = 0, 0
    for k, start in enumerate(downbeats):
        end = int(downbeats[k + 1]) if k + 1 < len(downbeats) else count
        meter = (int(meters[start][0]), int(meters[start][1]))
        unit = _beat_ticks(meters[start], tpq, annotations, start)
        offsets[start:end] = position + np.arange(end - start) * unit
        if k + 1 == len(downbeats):  # the open last bar: bar lines go on with its meter
            runs.append((position, meter))
            break
        length = (end - start) * unit
        regular = end - start == meter_beats(*meter)[0]
        irregular += not regular
        if regular and signatures.held(*meter):
            runs.append((position, meter))
        else:
            for piece_length, signature in signatures.pieces(length, meter):
                runs.append((position, signature))
                position += piece_length
            continue
        position += length
    first = int(downbeats[0])
    unit = _beat_ticks(meters[first], tpq, annotations, first)
    offsets[:first] = -(first - np.arange(first)) * unit
    return offsets, runs, irregular, len(downbeats)


def _lead_in(annotations: BeatAnnotations, pickup_ticks: int, bar: int, step: int,
             unit: int, tpq: int, qpm_range: tuple[float, float]) -> int:
    """Tick of the first downbeat: a bar line, with the pickup filling the end of a bar
    and the time before the first beat at a tempo near the first beat's (within range)."""
    t0 = float(annotations.times[0])
    lowest, highest = (t0 * qpm * tpq / 60.0 for qpm in qpm_range)
    if highest < step:  # the first beat is too close to 0 s for any lead-in
        return pickup_ticks
    natural = t0 / float(annotations.times[1] - annotations.times[0]) * unit
    k_low = int(np.ceil((pickup_ticks + max(lowest, 1)) / bar))
    k_high = int(np.floor((pickup_ticks + highest) / bar))
    if k_low <= k_high:  # whole bars before the first downbeat
        return int(np.clip(round((pickup_ticks + natural) / bar), k_low, k_high)) * bar
    lead = np.clip(round(natural / step) * step, np.ceil(lowest / step) * step, np.floor(highest / step) * step)
    return pickup_ticks + int(lead)  # a short first bar takes what whole bars cannot


def lay_grid(annotations: BeatAnnotations, config: PerTokConfig,
             qpm_range: tuple[float, float]) -> BeatGrid:
    """Ticks of every beat and the bars under them (see the module docstring).

    Args:
      qpm_range: (slowest, fastest) tempo a beat may have; faster runs of beats are merged
        as glitches, slower beats are an error.
    """
    annotations, dropped = merge_glitches(annotations, qpm_range[1])
    meters = _meter_of_beats(annotations)
    quarters = _quarters_per_beat(meters)
    slow = quarters[:-1] * 60.0 / np.diff(annotations.times) < qpm_range[0]
    if slow.any():
        beat = int(np.flatnonzero(slow)[0]) + 1
        gap = annotations.times[beat] - annotations.times[beat - 1]
        raise AnnotationError(f"{annotations.where(beat)}: beat {gap:.1f} s after the previous one "
                              f"(slower than {qpm_range[0]:g} qpm)")
    signatures = _Signatures(config)
    tpq = config.ticks_per_quarter
    offsets, runs, irregular, num_bars = _lay_bars(annotations, meters, signatures)
    first = int(np.flatnonzero(annotations.downbeat)[0]) if annotations.downbeat.any() else 0
    meter = (int(meters[first][0]), int(meters[first][1]))
    bar = int(signatures.length(*meter)) if signatures.held(*meter) else max(signatures.lengths)
    unit = _beat_ticks(meters[first], tpq, annotations, first)
    downbeat_tick = _lead_in(annotations, -int(offsets[0]), bar, min(signatures.lengths), unit, tpq, qpm_range)
    before = downbeat_tick % bar
    lead_runs, start = [], 0
    for length, signature in signatures.pieces(before, meter) if before else []:
        lead_runs.append((start, signature))  # a short first bar before the whole ones
        start += length
    if downbeat_tick >= bar:
        lead_runs.append((before, meter))
    runs = lead_runs + [(start + downbeat_tick, signature) for start, signature in runs]
    starts = np.array([s for s, _ in runs], np.int64)
    values = np.array([v for _, v in runs], np.int64).reshape(-1, 2)
    changed = np.concatenate([[True], np.any(values[1:] != values[:-1], axis=1)])
    times = annotations.times.copy()
    if downbeat_tick + offsets[0] == 0:
        times[0] = 0.0  # no room before the first beat: it moves to 0 s (within its lead time)
    keys = sorted(annotations.key_signatures.items())
    ticks = offsets + downbeat_tick
    meters_used = list(dict.fromkeys(f"{n}/{d}" for n, d in values[changed]))
    return BeatGrid(times=times, ticks=ticks, downbeat=annotations.downbeat,
                    bar_starts=starts[changed], bar_signatures=values[changed],
                    key_ticks=np.array([ticks[b] for b, _ in keys], np.int64),
                    key_values=np.array([k for _, k in keys], np.int64), dropped=dropped,
                    irregular_bars=irregular, bars=num_bars, meters=meters_used,
                    first_downbeat_tick=int(downbeat_tick))
