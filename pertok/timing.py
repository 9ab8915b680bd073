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


def snap_onsets(onset_ticks: np.ndarray, bars: BarMap, config: PerTokConfig):
    """Snap onsets to the union grid of their bar, keeping the remainder as microtiming.

    Returns:
      (bar, position, microtiming_bin): bar index, grid position in ticks from the bar line,
      and signed microtiming bin; the quantized onset is
      bars.starts[bar] + position + microtiming_bin * microtiming_step_ticks.
    """
    bar = np.searchsorted(bars.starts, onset_ticks + _EPS, side="right") - 1
    bar = np.clip(bar, 0, len(bars.starts) - 1)
    offset = onset_ticks - bars.starts[bar]
    length = bars.lengths[bar]
    candidates = [length.astype(np.float64)]  # the next bar line is always a candidate
    for step in config.grid_steps_ticks:
        last_on_grid = (length // step) * step
        candidates.append(np.clip(np.round(offset / step) * step, 0, last_on_grid))
    candidates = np.stack(candidates)
    best = np.argmin(np.abs(candidates - offset) + _EPS * (np.arange(len(candidates)) == 0)[:, None],
                     axis=0)
    position = candidates[best, np.arange(len(offset))]
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


def snap_durations(duration_ticks: np.ndarray, values: np.ndarray):
    """Split each duration into whole largest-Duration tokens plus one nearest remainder.

    Durations up to the largest token snap to the nearest token (anything shorter than the
    shortest becomes the shortest). Longer ones become k largest tokens plus the remainder
    snapped to the nearest token or to nothing, so no length is clipped.

    Returns:
      (num_full, remainder_index): count of largest tokens, and index into `values` of the
      last token (-1 when there is none).
    """
    largest = values[-1]
    duration = np.maximum(duration_ticks, 0.0)
    long = duration > largest + _EPS
    num_full = np.where(long, np.floor(duration / largest + _EPS), 0).astype(np.int64)
    remainder = duration - num_full * largest
    with_zero = np.concatenate([[0], values])
    index_long = snap_to_values(remainder, with_zero) - 1  # -1: remainder rounds to nothing
    index_short = snap_to_values(duration, values)
    return num_full, np.where(long, index_long, index_short)
