"""Time for the synthetic corpus: meters, bars, phrases, the tempo map, swing and microtiming.

Everything here works in quarter notes (floats) measured from the start of the piece; only
`performed_ticks` turns score time into the ticks a MIDI file holds.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Meter(NamedTuple):
    """A time signature and how it is felt."""

    numerator: int
    denominator: int
    beat_lengths_q: tuple[float, ...]  # felt beats in quarter notes; they sum to the bar length
    beat_accents: tuple[float, ...]  # metric weight of each beat: 1.0 downbeat ... 0.3 weak
    drum_roles: str  # per beat: "K" kick or "S" snare, the skeleton of a groove


METERS: dict[str, Meter] = {
    "4/4": Meter(4, 4, (1.0, 1.0, 1.0, 1.0), (1.0, 0.35, 0.7, 0.35), "KSKS"),
    "3/4": Meter(3, 4, (1.0, 1.0, 1.0), (1.0, 0.35, 0.35), "KSS"),
    "2/2": Meter(2, 2, (2.0, 2.0), (1.0, 0.6), "KS"),
    "5/4": Meter(5, 4, (1.0,) * 5, (1.0, 0.35, 0.35, 0.75, 0.35), "KSSKS"),  # grouped 3+2
    "6/8": Meter(6, 8, (1.5, 1.5), (1.0, 0.6), "KS"),
    "7/8": Meter(7, 8, (1.0, 1.0, 1.5), (1.0, 0.5, 0.75), "KSK"),  # grouped 2+2+3 eighths
    "12/8": Meter(12, 8, (1.5,) * 4, (1.0, 0.35, 0.7, 0.35), "KSKS"),
}
METER_NAMES: tuple[str, ...] = tuple(METERS)
# Later sections favour the common meters, as real music does.
_SECTION_METER_WEIGHTS = np.array([0.3, 0.15, 0.1, 0.1, 0.15, 0.05, 0.15])
# Meters whose beats split into two equal eighths, so swing makes sense.
SWINGABLE_METERS = frozenset({"4/4", "3/4", "2/2", "5/4"})
# Microtiming never pushes a note further than this from where the score puts it.
MAX_DEVIATION_MS = 45.0


@dataclass(frozen=True)
class Timeline:
    """Bars, beats, phrases and tempo of one piece, all in quarter notes."""

    bar_meter: tuple[str, ...]  # meter name of each bar
    bar_start_q: np.ndarray  # (bars,) onset of each bar
    bar_length_q: np.ndarray  # (bars,)
    section_start_bar: tuple[int, ...]  # first bar of each section (sections change meter/tempo)
    phrase_bounds_q: np.ndarray  # (phrases + 1,) phrase boundaries, last one is the piece end
    phrase_start_bar: tuple[int, ...]  # first bar of each phrase
    beat_onset_q: np.ndarray  # (beats,) onset of every felt beat
    beat_length_q: np.ndarray  # (beats,)
    beat_accent: np.ndarray  # (beats,) metric weight
    beat_drum_role: np.ndarray  # (beats,) "K" or "S"
    beat_bar: np.ndarray  # (beats,) bar index of each beat
    tempo_time_q: np.ndarray  # (tempo changes,) first one at 0
    tempo_qpm: np.ndarray  # (tempo changes,) quarter notes per minute

    @property
    def end_q(self) -> float:
        return float(self.phrase_bounds_q[-1])

    @property
    def num_phrases(self) -> int:
        return len(self.phrase_bounds_q) - 1


def _section_lengths(rng: np.random.Generator) -> list[int]:
    """Bars per section: 8-40 bars in all, cut into 1-3 sections at multiples of 4 bars."""
    total_bars = int(rng.integers(8, 41))
    num_sections = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    candidates = np.arange(4, total_bars - 3, 4)
    num_sections = min(num_sections, len(candidates) + 1)
    cuts = np.sort(rng.choice(candidates, num_sections - 1, replace=False)) if num_sections > 1 else []
    edges = [0, *map(int, cuts), total_bars]
    return [b - a for a, b in zip(edges[:-1], edges[1:])]


def _phrase_lengths(rng: np.random.Generator, section_bars: int) -> list[int]:
    """Split a section into phrases of 2-4 bars (never a lone 1-bar phrase)."""
    lengths, left = [], section_bars
    while left > 0:
        length = min(int(rng.choice([2, 3, 4, 4])), left)
        if left - length == 1:
            length += 1
        lengths.append(length)
        left -= length
    return lengths


def _tempo_map(rng: np.random.Generator, section_start_q: list[float], bar_start_q: np.ndarray,
               end_q: float) -> tuple[np.ndarray, np.ndarray]:
    """Section tempos (60-180 qpm), sometimes bar-wise rubato, sometimes a final ritardando (>= 40 qpm)."""
    qpm = float(rng.uniform(60, 180))
    times, tempos = [], []
    for start in section_start_q:
        if start > 0 and rng.random() < 0.6:  # a new section often takes a new tempo
            qpm = float(np.clip(qpm * rng.uniform(0.75, 1.33), 60, 180))
        times.append(start)
        tempos.append(qpm)
    if rng.random() < 0.2:  # rubato: small bar-by-bar tempo drift, many tempo events
        starts = np.asarray(section_start_q)
        for bar_q in bar_start_q[1:]:
            if bar_q not in starts:
                section_qpm = tempos[int(np.searchsorted(starts, bar_q, "right")) - 1]
                times.append(float(bar_q))
                tempos.append(float(np.clip(section_qpm * rng.uniform(0.95, 1.05), 60, 180)))
    times, tempos = np.asarray(times), np.asarray(tempos)
    order = np.argsort(times, kind="stable")
    times, tempos = times[order], tempos[order]
    if rng.random() < 0.5:  # ritardando over the last two bars, one step per quarter note
        start_q = float(bar_start_q[-2])
        steps_q = np.arange(start_q, end_q, 1.0)
        qpm_at_start = tempos[np.searchsorted(times, start_q, side="right") - 1]
        slowdown = np.linspace(1.0, rng.uniform(0.6, 0.8), len(steps_q) + 1)[1:]
        keep = times < start_q
        times = np.concatenate([times[keep], steps_q])
        tempos = np.concatenate([tempos[keep], np.maximum(qpm_at_start * slowdown, 40.0)])
    return times, tempos


def _beats_of_meter(meter: Meter) -> tuple[np.ndarray, ...]:
    """Offsets within the bar, lengths, accents and drum roles of a meter's felt beats."""
    lengths = np.asarray(meter.beat_lengths_q)
    offsets = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    return offsets, lengths, np.asarray(meter.beat_accents), np.asarray(list(meter.drum_roles))


_BEATS_OF_METER = {name: _beats_of_meter(meter) for name, meter in METERS.items()}


def _beat_table(bar_meter: list[str], bar_start_q: np.ndarray) -> dict[str, np.ndarray]:
    """Every felt beat of the piece with its length, metric accent, drum role and bar."""
    offsets, lengths, accents, roles = (np.concatenate(column) for column in
                                        zip(*(_BEATS_OF_METER[name] for name in bar_meter)))
    beats_per_bar = [len(METERS[name].beat_lengths_q) for name in bar_meter]
    beat_bar = np.repeat(np.arange(len(bar_meter)), beats_per_bar)
    return dict(beat_onset_q=bar_start_q[beat_bar] + offsets, beat_length_q=lengths, beat_accent=accents,
                beat_drum_role=roles, beat_bar=beat_bar)


def build_timeline(rng: np.random.Generator, opening_meter: str) -> Timeline:
    """Lay out sections, bars, phrases and tempo for one piece.

    Args:
      rng: the piece's random generator.
      opening_meter: meter name (a key of METERS) of the first section.
    """
    section_meters, bar_meter, phrase_start_bar, section_start_bar = [opening_meter], [], [], []
    for section, bars in enumerate(_section_lengths(rng)):
        if section > 0:  # a later section sometimes changes meter, always at a bar line
            keep = rng.random() < 0.4
            new_meter = str(rng.choice(METER_NAMES, p=_SECTION_METER_WEIGHTS))
            section_meters.append(section_meters[-1] if keep else new_meter)
        section_start_bar.append(len(bar_meter))
        for length in _phrase_lengths(rng, bars):
            phrase_start_bar.append(len(bar_meter))
            bar_meter.extend([section_meters[-1]] * length)
    bar_length_q = np.array([sum(METERS[name].beat_lengths_q) for name in bar_meter])
    bar_start_q = np.concatenate([[0.0], np.cumsum(bar_length_q)[:-1]])
    end_q = float(bar_start_q[-1] + bar_length_q[-1])
    phrase_bounds_q = np.append(bar_start_q[phrase_start_bar], end_q)
    tempo_time_q, tempo_qpm = _tempo_map(
        rng, [float(bar_start_q[b]) for b in section_start_bar], bar_start_q, end_q)
    return Timeline(
        bar_meter=tuple(bar_meter), bar_start_q=bar_start_q, bar_length_q=bar_length_q,
        section_start_bar=tuple(section_start_bar), phrase_bounds_q=phrase_bounds_q,
        phrase_start_bar=tuple(phrase_start_bar), tempo_time_q=tempo_time_q,
        tempo_qpm=tempo_qpm, **_beat_table(bar_meter, bar_start_q))


def qpm_at(timeline: Timeline, time_q: np.ndarray) -> np.ndarray:
    """The tempo in force at each time (quarter notes per minute)."""
    index = np.searchsorted(timeline.tempo_time_q, time_q, side="right") - 1
    return timeline.tempo_qpm[np.clip(index, 0, None)]


def phrase_of(timeline: Timeline, time_q: np.ndarray) -> np.ndarray:
    """Index of the phrase each time falls in."""
    index = np.searchsorted(timeline.phrase_bounds_q, time_q, side="right") - 1
    return np.clip(index, 0, timeline.num_phrases - 1)


def beat_of(timeline: Timeline, time_q: np.ndarray) -> np.ndarray:
    """Index of the felt beat each time falls in."""
    index = np.searchsorted(timeline.beat_onset_q, time_q + 1e-9, side="right") - 1
    return np.clip(index, 0, len(timeline.beat_onset_q) - 1)


def swing(timeline: Timeline, time_q: np.ndarray, ratio: float, unit_q: float) -> np.ndarray:
    """Warp score times so each pair of even subdivisions becomes long-short.

    Swing is a piecewise-linear warp of each `unit_q` span (1.0 for eighth swing, 0.5 for
    sixteenth swing): its first half stretches to `ratio`, its second half shrinks, so onsets
    and note ends move together. Bars in meters without even beat pairs are left alone.

    Args:
      ratio: where the off-beat subdivision lands, as a fraction of the unit (0.5 = straight,
        0.667 = triplet swing).
      unit_q: length of the span that holds one long-short pair, in quarter notes.
    """
    bar = np.clip(np.searchsorted(timeline.bar_start_q, time_q + 1e-9, side="right") - 1, 0, None)
    swingable = np.array([name in SWINGABLE_METERS for name in timeline.bar_meter])[bar]
    position = (time_q - timeline.bar_start_q[bar]) / unit_q
    whole = np.floor(position + 1e-9)
    fraction = position - whole
    warped = np.where(fraction < 0.5, fraction * 2 * ratio, ratio + (fraction - 0.5) * 2 * (1 - ratio))
    return np.where(swingable, timeline.bar_start_q[bar] + (whole + warped) * unit_q, time_q)


class Feel(NamedTuple):
    """How one player places notes against the ensemble's time."""

    jitter_ms: float  # spread of each onset group (a chord, a beat) around its target
    chord_spread_ms: float  # extra spread between the notes of one chord
    lag_ms: float  # constant lead (<0) or lay-back (>0), e.g. a melody leading its accompaniment


def ensemble_drift_ms(rng: np.random.Generator, timeline: Timeline) -> np.ndarray:
    """Rushing/dragging shared by the ensemble: one offset per phrase boundary (ms)."""
    return rng.normal(0.0, 12.0, size=timeline.num_phrases + 1)


def performed_ticks(rng: np.random.Generator, timeline: Timeline, onset_q: np.ndarray,
                    duration_q: np.ndarray, strike_q: np.ndarray, feel: Feel, drift_ms: np.ndarray,
                    tpq: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn score onsets and durations into performed ticks with microtiming.

    The deviation (ms) is a slowly varying drift interpolated between phrase boundaries, plus
    the player's lag, plus jitter shared by the notes struck together (same strike time: a
    chord, a grace note and its main note), plus a smaller per-note spread; it becomes ticks
    through the tempo in force at the note.

    Args:
      strike_q: (notes,) the time each note is aimed at; notes sharing it move together.
      feel: the player's jitter, chord spread and lag.
      drift_ms: (phrases + 1,) ensemble drift at the phrase boundaries, from ensemble_drift_ms.
      tpq: ticks per quarter note of the score.
    Returns:
      (onset ticks >= 0, duration ticks >= 1), both int64.
    """
    strikes, strike_of_note = np.unique(strike_q, return_inverse=True)
    deviation_ms = (np.interp(strike_q, timeline.phrase_bounds_q, drift_ms) + feel.lag_ms
                    + rng.normal(0.0, feel.jitter_ms, size=len(strikes))[strike_of_note]
                    + rng.normal(0.0, feel.chord_spread_ms, size=len(onset_q)))
    deviation_ms = np.clip(deviation_ms, -MAX_DEVIATION_MS, MAX_DEVIATION_MS)
    quarters_per_ms = qpm_at(timeline, onset_q) / 60_000.0
    onset_ticks = np.rint((onset_q + deviation_ms * quarters_per_ms) * tpq)
    # Players hold notes a little longer or shorter than written, independently of the onset.
    duration_ticks = np.rint(duration_q * tpq * rng.uniform(0.9, 1.05, size=len(duration_q)))
    return np.maximum(onset_ticks, 0).astype(np.int64), np.maximum(duration_ticks, 1).astype(np.int64)
