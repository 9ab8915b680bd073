"""Bars from the time-signature map, and the snapping of onsets, durations and velocities.

All times here are in ticks at the tokenizer's resolution (float before snapping, int after).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pertok.config import PerTokConfig

_EPS = 1e-6  # ticks; absorbs float error from tpq rescaling


@dataclasses.dataclass(frozen=True)
class BarMap:
    """Bar lines of a piece: start tick, length and TimeSig index of each bar."""

    starts: np.ndarray  # int64 [num_bars]
    lengths: np.ndarray  # int64 [num_bars]
    time_signature: np.ndarray  # int64 [num_bars], index into Vocabulary.time_signatures (-1 = 4/4)


def bar_length_ticks(numerator: np.ndarray | int, denominator: np.ndarray | int, tpq: int):
    """Ticks per bar: numerator x tpq x 4 / denominator."""
    return numerator * tpq * 4 // denominator


def project_time_signature(numerator: int, denominator: int,
                           supported: list[tuple[int, int]], tpq: int) -> int:
    """Index of the supported time signature for (numerator, denominator), -1 for 4/4.

    An exact match wins; then one with the same bar length (2/1 -> 4/2); then the one whose
    bar length is nearest. Onsets stay exact either way, since bars only anchor the grid.
    """
    if not supported:
        return -1
    if (numerator, denominator) in supported:
        return supported.index((numerator, denominator))
    wanted = numerator * 4 * tpq / max(denominator, 1)
    lengths = np.array([bar_length_ticks(n, d, tpq) for n, d in supported])
    return int(np.argmin(np.abs(lengths - wanted)))


def build_bar_map(change_ticks: np.ndarray, change_signature: np.ndarray,
                  signature_lengths: np.ndarray, default_length: int, end_tick: float) -> BarMap:
    """Lay bars from time-signature changes until past `end_tick`.

    A change takes effect at the first bar line at or after its time (MIDI files put them on
    bar lines; a change inside a bar would leave a bar no token can describe).

    Args:
      change_ticks: float [C] sorted times of the time-signature changes.
      change_signature: int [C] TimeSig index of each change (-1 = 4/4).
      signature_lengths: int [num TimeSig tokens] bar length of each TimeSig.
      default_length: bar length before the first change (4/4).
      end_tick: last time that must fall inside a bar.
    """
    lengths_of = np.append(signature_lengths, default_length).astype(np.int64)  # index -1 -> 4/4
    segment_starts, segment_signatures = [0], [-1]
    for tick, signature in zip(change_ticks, change_signature):
        start, length = segment_starts[-1], lengths_of[segment_signatures[-1]]
        bars_before = max(0, int(np.ceil((tick - start) / length - _EPS)))
        bar_line = start + bars_before * length
        if bar_line == start:
            segment_signatures[-1] = int(signature)  # replaces the signature at that bar line
        else:
            segment_starts.append(bar_line)
            segment_signatures.append(int(signature))
    last_start, last_length = segment_starts[-1], lengths_of[segment_signatures[-1]]
    bars_in_last = max(1, int(np.ceil((end_tick - last_start) / last_length + _EPS)) + 1)
    segment_ends = segment_starts[1:] + [last_start + bars_in_last * last_length]
    counts = [(end - start) // lengths_of[sig]
              for start, end, sig in zip(segment_starts, segment_ends, segment_signatures)]
    signature = np.repeat(np.asarray(segment_signatures, np.int64), counts)
    lengths = lengths_of[signature]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return BarMap(starts=starts, lengths=lengths, time_signature=signature)


def snap_onsets(onset_ticks: np.ndarray, bars: BarMap, config: PerTokConfig,
                bar: np.ndarray | None = None):
    """Snap onsets to the union grid of their bar, keeping the remainder as microtiming.

    Args:
      bar: each onset's bar index when the caller knows it (a batch of pieces whose bar maps
        are concatenated); None = looked up in `bars.starts`.
    Returns:
      (bar, position, microtiming_bin): bar index, grid position in ticks from the bar line,
      and signed microtiming bin; the quantized onset is
      bars.starts[bar] + position + microtiming_bin * microtiming_step_ticks.
    """
    if bar is None:
        bar = np.searchsorted(bars.starts, onset_ticks + _EPS, side="right") - 1
        bar = np.clip(bar, 0, len(bars.starts) - 1)
    offset = onset_ticks - bars.starts[bar]
    length = bars.lengths[bar]
    # Nearest of: each grid's nearest point inside the bar, and the next bar line.
    position = length.astype(np.float64)
    best = np.abs(position - offset) + _EPS  # the bar line loses ties to points inside the bar
    for step in config.grid_steps_ticks:
        candidate = np.minimum(np.round(offset / step) * step, (length // step) * step)
        distance = np.abs(candidate - offset)
        closer = distance < best
        position = np.where(closer, candidate, position)
        best = np.where(closer, distance, best)
    remainder = offset - position
    at_next_bar = position >= length
    bar = bar + at_next_bar
    position = np.where(at_next_bar, 0, position).astype(np.int64)
    step = config.microtiming_step_ticks
    half = config.microtiming_bins // 2
    microtiming = np.clip(np.round(remainder / step), -half, half).astype(np.int64)
    return bar.astype(np.int64), position, microtiming


def snap_to_values(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest of sorted `values` for each x (ties go to the smaller)."""
    midpoints = (values[1:] + values[:-1]) / 2
    return np.searchsorted(midpoints, x, side="left")


def quantize_durations(duration_ticks: np.ndarray, config: PerTokConfig) -> np.ndarray:
    """Nearest duration the tokens hold, in ticks, for any length.

    Up to the largest Duration token: the nearest point of the piecewise-uniform duration
    grid (anything shorter than the shortest token becomes the shortest). Longer: whole
    largest tokens plus the remainder snapped to the nearest token or to nothing, so no
    length is clipped.
    """
    tpq = config.ticks_per_quarter
    largest = round(config.duration_steps[-1][0] * tpq)
    duration = np.maximum(np.asarray(duration_ticks, np.float64), 0.0)
    whole = np.where(duration > largest + _EPS, np.floor(duration / largest + _EPS), 0.0)
    remainder = duration - whole * largest
    snapped = np.zeros_like(remainder)
    low = 0
    for bound, step in config.duration_steps:
        high, step_ticks = round(bound * tpq), round(step * tpq)
        inside = (remainder > low - _EPS) if low else (remainder >= 0)
        inside &= remainder <= high + _EPS
        nearest = low + np.clip(np.round((remainder - low) / step_ticks), 0, (high - low) // step_ticks) * step_ticks
        snapped = np.where(inside, nearest, snapped)
        low = high
    shortest = round(config.duration_steps[0][1] * tpq)
    snapped = np.where((whole == 0) & (snapped < shortest), shortest, snapped)
    return (whole * largest + snapped).astype(np.int64)


def split_durations(duration_ticks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantized durations -> (count of largest Duration tokens, index of the last token or -1)."""
    largest = values[-1]
    duration = np.asarray(duration_ticks, np.int64)
    whole = np.where(duration > largest, duration // largest, 0)
    remainder = duration - whole * largest
    index = np.minimum(np.searchsorted(values, remainder), len(values) - 1)
    return whole, np.where(remainder > 0, index, -1)
