"""PerTok's vocabulary: deterministic ids, grouped by token type, with each token's value."""
from __future__ import annotations

import enum

import numpy as np

from pertok.config import PerTokConfig, bar_length_ticks

DRUM_PROGRAM = -1  # the Program value of drum tracks (MIDI channel 10)


class TokenType(enum.IntEnum):
    """Token families, in id order. Values index `Vocabulary.type_ranges`."""

    PAD = 0
    BOS = 1
    EOS = 2
    MASK = 3
    BAR = 4
    TIME_SIG = 5
    TIME_SHIFT = 6
    TEMPO = 7
    PROGRAM = 8
    PITCH = 9
    DRUM_PITCH = 10
    PEDAL = 11
    MICROTIMING = 12
    VELOCITY = 13
    DURATION = 14


TYPE_NAMES = {
    TokenType.PAD: "PAD", TokenType.BOS: "BOS", TokenType.EOS: "EOS", TokenType.MASK: "MASK",
    TokenType.BAR: "Bar", TokenType.TIME_SIG: "TimeSig", TokenType.TIME_SHIFT: "TimeShift",
    TokenType.TEMPO: "Tempo", TokenType.PROGRAM: "Program", TokenType.PITCH: "Pitch",
    TokenType.DRUM_PITCH: "DrumPitch", TokenType.PEDAL: "Pedal",
    TokenType.MICROTIMING: "MicroTiming", TokenType.VELOCITY: "Velocity",
    TokenType.DURATION: "Duration",
}


def velocity_values(bins: int) -> np.ndarray:
    """Centres of `bins` equal-width velocity bins over 1..127."""
    width = 127 / bins
    return np.unique(np.round(1 + (np.arange(bins) + 0.5) * width - 0.5).astype(np.int64))


def duration_values_ticks(config: PerTokConfig) -> np.ndarray:
    """Every Duration token's length in ticks, increasing."""
    tpq = config.ticks_per_quarter
    values, start = [], 0
    for bound, step in config.duration_steps:
        step_ticks = round(step * tpq)
        values.extend(range(start + step_ticks, round(bound * tpq) + 1, step_ticks))
        start = round(bound * tpq)
    return np.asarray(values, dtype=np.int64)


def tempo_values_mspq(config: PerTokConfig) -> np.ndarray:
    """Every Tempo token as microseconds per quarter, log-spaced over tempo_range."""
    qpm = np.geomspace(config.tempo_range[0], config.tempo_range[1], config.tempo_bins)
    return np.unique(np.round(6e7 / qpm).astype(np.int64))[::-1]


def time_signatures(config: PerTokConfig) -> list[tuple[int, int]]:
    """(numerator, denominator) of every TimeSig token."""
    if not config.use_time_signatures:
        return []
    return [(n, d) for d in config.time_signature_denominators for n in config.time_signature_numerators]


class Vocabulary:
    """Token names and per-token (type, value) arrays for fast vectorized lookups.

    Values per type: TimeSig -> index into `time_signatures`; TimeShift, Duration -> ticks;
    Tempo -> microseconds per quarter; Program -> MIDI program or DRUM_PROGRAM;
    Pitch, DrumPitch -> MIDI pitch; MicroTiming -> signed bin (0 = on the grid);
    Velocity -> MIDI velocity; others 0.
    """

    def __init__(self, config: PerTokConfig):
        self.config = config
        self.time_signatures = time_signatures(config)
        half_bins = config.microtiming_bins // 2
        shift_unit = config.time_shift_unit_ticks
        max_shift = config.largest_time_shift_ticks
        families: list[tuple[TokenType, list[int], list[str]]] = []

        def add(kind: TokenType, values, labels=None) -> None:
            values = [int(v) for v in values]
            labels = labels if labels is not None else [str(v) for v in values]
            families.append((kind, values, labels))

        for special in (TokenType.PAD, TokenType.BOS, TokenType.EOS, TokenType.MASK, TokenType.BAR):
            add(special, [0], [""])
        add(TokenType.TIME_SIG, range(len(self.time_signatures)),
            [f"{n}/{d}" for n, d in self.time_signatures])
        add(TokenType.TIME_SHIFT, range(shift_unit, max_shift + 1, shift_unit))
        mspq = tempo_values_mspq(config) if config.use_tempos else []
        add(TokenType.TEMPO, mspq, [f"{6e7 / m:.2f}" for m in mspq])
        add(TokenType.PROGRAM, [*range(128), DRUM_PROGRAM], [*map(str, range(128)), "drums"])
        add(TokenType.PITCH, range(config.pitch_range[0], config.pitch_range[1] + 1))
        add(TokenType.DRUM_PITCH, range(config.drum_pitch_range[0], config.drum_pitch_range[1] + 1))
        add(TokenType.PEDAL, [0] if config.use_sustain_pedal else [], [""] if config.use_sustain_pedal else [])
        add(TokenType.MICROTIMING, range(-half_bins, half_bins + 1))
        add(TokenType.VELOCITY, velocity_values(config.velocity_bins))
        add(TokenType.DURATION, duration_values_ticks(config))

        names, types, values = [], [], []
        self.type_ranges: dict[str, range] = {}
        for kind, kind_values, labels in families:
            start = len(names)
            names += [TYPE_NAMES[kind] + (f"_{label}" if label else "") for label in labels]
            types += [int(kind)] * len(kind_values)
            values += kind_values
            self.type_ranges[TYPE_NAMES[kind]] = range(start, len(names))
        self.names = names
        self.type_of = np.asarray(types, dtype=np.int8)
        self.value_of = np.asarray(values, dtype=np.int64)
        self.ids = {name: i for i, name in enumerate(names)}
        self.values_duration = self.values(TokenType.DURATION)
        self.values_velocity = self.values(TokenType.VELOCITY)
        self.values_tempo = self.values(TokenType.TEMPO)
        # Nearest Velocity token of each MIDI velocity 0..127 (ties to the softer).
        midpoints = (self.values_velocity[1:] + self.values_velocity[:-1]) / 2
        # Bar length in ticks of each TimeSig token; the extra last entry (index -1) is 4/4.
        tpq = config.ticks_per_quarter
        self.bar_lengths = np.array([bar_length_ticks(n, d, tpq) for n, d in self.time_signatures]
                                    + [bar_length_ticks(4, 4, tpq)], np.int64)
        self.duration_tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per file resolution
        self.velocity_index_of = np.searchsorted(midpoints, np.arange(128), side="left")
        # Velocity index of notes decoded from the composition view (which has no Velocity tokens).
        self.default_velocity_index = int(self.velocity_index_of[int(config.default_velocity)])

    def __len__(self) -> int:
        return len(self.names)

    def first_id(self, kind: TokenType) -> int:
        return self.type_ranges[TYPE_NAMES[kind]].start  # every type has a (maybe empty) range

    def values(self, kind: TokenType) -> np.ndarray:
        """Values of one type's tokens, in id order."""
        span = self.type_ranges[TYPE_NAMES[kind]]
        return self.value_of[span.start:span.stop]

    def sizes(self) -> dict[str, int]:
        """Number of tokens per type (types with no tokens left out)."""
        return {name: len(span) for name, span in self.type_ranges.items() if len(span)}
