"""PerTok configuration: grids, bins and optional token families, saved as JSON."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from functools import reduce

from pertok.errors import PerTokConfigError


@dataclasses.dataclass(frozen=True)
class PerTokConfig:
    """What the tokens can hold. All times are in beats (quarter notes).

    Attributes:
      ticks_per_quarter: resolution of decoded scores; every grid point, microtiming bin
        and duration value must be a whole number of these ticks.
      time_grids: subdivisions of the beat whose positions, counted from each bar line,
        form the union grid that onsets snap to (4 = 16ths, 3 = 8th-note triplets).
      max_time_shift_beats: the longest single TimeShift token; longer gaps are chained.
      microtiming_range_beats: largest |onset - grid position| a MicroTiming token holds.
      microtiming_bins: number of MicroTiming tokens, odd so that bin 0 is exact; the
        default 25 gives steps of 1/96 beat, so onsets keep 1/192 beat (~2.6 ms at 120 bpm).
      velocity_bins: number of Velocity tokens spread over 1..127.
      duration_steps: (upper bound in beats, step in beats) pairs, increasing: durations
        up to each bound are snapped to multiples of its step. The largest bound is the
        largest Duration token; longer notes chain several Duration tokens (they add).
      pitch_range: (lowest, highest) MIDI pitch of melodic notes, inclusive.
      drum_pitch_range: (lowest, highest) MIDI pitch of drum notes, inclusive.
      use_time_signatures: emit TimeSig tokens; without them every bar is 4/4.
      time_signature_numerators: numerators with a token (per denominator below).
      time_signature_denominators: denominators with a token.
      use_tempos: emit Tempo tokens (else decoded scores get one tempo, default_tempo).
      tempo_bins: number of Tempo tokens, log-spaced over tempo_range.
      tempo_range: (slowest, fastest) quarter notes per minute of Tempo tokens.
      default_tempo: tempo written by decode when Tempo tokens are off or absent.
      use_sustain_pedal: emit Pedal events (sustain pedal, CC64) per track.
      default_velocity: velocity of notes decoded from composition-only sequences.
    """

    ticks_per_quarter: int = 960
    time_grids: tuple[int, ...] = (4, 3)
    max_time_shift_beats: float = 4.0
    microtiming_range_beats: float = 0.125
    microtiming_bins: int = 25
    velocity_bins: int = 32
    duration_steps: tuple[tuple[float, float], ...] = (
        (0.25, 1 / 32), (1.0, 1 / 16), (2.0, 1 / 8), (4.0, 1 / 4), (8.0, 1 / 2))
    pitch_range: tuple[int, int] = (0, 127)
    drum_pitch_range: tuple[int, int] = (0, 127)
    use_time_signatures: bool = True
    time_signature_numerators: tuple[int, ...] = tuple(range(1, 17))
    time_signature_denominators: tuple[int, ...] = (2, 4, 8, 16)
    use_tempos: bool = False
    tempo_bins: int = 32
    tempo_range: tuple[float, float] = (30.0, 300.0)
    default_tempo: float = 120.0
    use_sustain_pedal: bool = False
    default_velocity: int = 64

    def __post_init__(self) -> None:
        # JSON gives lists; normalise to tuples so configs compare and hash equal.
        for field in ("time_grids", "pitch_range", "drum_pitch_range",
                      "time_signature_numerators", "time_signature_denominators", "tempo_range"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        object.__setattr__(self, "duration_steps",
                           tuple((float(b), float(s)) for b, s in self.duration_steps))
        _validate(self)

    # Derived quantities, all in ticks at ticks_per_quarter.
    @property
    def grid_steps_ticks(self) -> tuple[int, ...]:
        """Tick spacing of each grid."""
        return tuple(self.ticks_per_quarter // d for d in self.time_grids)

    @property
    def time_shift_unit_ticks(self) -> int:
        """Every gap between two union-grid positions is a multiple of this."""
        return reduce(math.gcd, self.grid_steps_ticks)

    @property
    def largest_time_shift_ticks(self) -> int:
        """The longest single TimeShift token, in ticks; longer gaps chain it."""
        return round(self.max_time_shift_beats * self.ticks_per_quarter)

    @property
    def microtiming_step_ticks(self) -> int:
        return _ticks(self, 2 * self.microtiming_range_beats / (self.microtiming_bins - 1))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PerTokConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PerTokConfigError(f"unknown PerTok config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)

    @property
    def hash(self) -> str:
        """Stable short hash of the config (keys sorted), used to tag token stores."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def bar_length_ticks(numerator, denominator, tpq: int):
    """Ticks per bar of a meter (ints or arrays): numerator x tpq x 4 / denominator."""
    return numerator * tpq * 4 // denominator


def _ticks(config: PerTokConfig, beats: float) -> int:
    """Beats -> whole ticks, refusing values that are not whole at this resolution."""
    ticks = beats * config.ticks_per_quarter
    if abs(ticks - round(ticks)) > 1e-6 or round(ticks) <= 0:
        raise PerTokConfigError(
            f"{beats} beats is not a positive whole number of ticks at "
            f"ticks_per_quarter={config.ticks_per_quarter}; choose a multiple of the grids")
    return int(round(ticks))


def _validate(config: PerTokConfig) -> None:
    tpq = config.ticks_per_quarter
    if not 24 <= tpq <= 32767:
        raise PerTokConfigError(f"ticks_per_quarter={tpq} outside 24..32767")
    if not config.time_grids or any(d <= 0 or tpq % d for d in config.time_grids):
        raise PerTokConfigError(
            f"time_grids={config.time_grids}: each must divide ticks_per_quarter={tpq}")
    if config.microtiming_bins < 1 or config.microtiming_bins % 2 == 0:
        raise PerTokConfigError(f"microtiming_bins={config.microtiming_bins} must be odd (0 exact)")
    if config.microtiming_bins < 3:
        raise PerTokConfigError("microtiming_bins must be at least 3")
    if config.time_shift_unit_ticks % config.microtiming_step_ticks:
        # Then grid position + microtiming lies on one lattice, and quantizing is a projection
        # (quantizing a quantized score changes nothing).
        raise PerTokConfigError(
            f"the microtiming step ({config.microtiming_step_ticks} ticks) must divide the grid "
            f"unit ({config.time_shift_unit_ticks} ticks); change microtiming_bins or the range")
    # Every onset must be representable: the farthest an onset can be from the union grid
    # is half the widest gap between neighbouring union positions.
    widest_gap = _widest_union_gap_ticks(config)
    if config.microtiming_range_beats * tpq + 1e-9 < widest_gap / 2:
        raise PerTokConfigError(
            f"microtiming_range_beats={config.microtiming_range_beats} cannot reach the middle "
            f"of the widest grid gap ({widest_gap / tpq:g} beats); widen it or add a grid")
    _ticks(config, config.max_time_shift_beats)
    if config.max_time_shift_beats * tpq % config.time_shift_unit_ticks:
        raise PerTokConfigError("max_time_shift_beats must be a multiple of the grid unit")
    previous_bound = 0.0
    for bound, step in config.duration_steps:
        _ticks(config, step)
        if bound <= previous_bound or abs(round((bound - previous_bound) / step) * step
                                          - (bound - previous_bound)) > 1e-9:
            raise PerTokConfigError(
                f"duration_steps: bound {bound} must increase and be reached in steps of {step}")
        previous_bound = bound
    if not 2 <= config.velocity_bins <= 127:
        raise PerTokConfigError(f"velocity_bins={config.velocity_bins} outside 2..127")
    for name in ("pitch_range", "drum_pitch_range"):
        low, high = getattr(config, name)
        if not 0 <= low <= high <= 127:
            raise PerTokConfigError(f"{name}={(low, high)} must satisfy 0 <= low <= high <= 127")
    if any(d <= 0 or d & (d - 1) or (4 * tpq) % d for d in config.time_signature_denominators):
        raise PerTokConfigError("time_signature_denominators must be powers of two dividing 4*tpq")
    if config.tempo_bins < 1 or not 0 < config.tempo_range[0] < config.tempo_range[1]:
        raise PerTokConfigError(f"tempo_range={config.tempo_range} must be increasing and positive")
    if not 1 <= config.default_velocity <= 127:
        raise PerTokConfigError(f"default_velocity={config.default_velocity} outside 1..127")


def _widest_union_gap_ticks(config: PerTokConfig) -> int:
    """Widest gap between neighbouring union-grid positions within one beat."""
    tpq = config.ticks_per_quarter
    positions = sorted({p for step in config.grid_steps_ticks for p in range(0, tpq + 1, step)})
    return max(b - a for a, b in zip(positions, positions[1:]))
