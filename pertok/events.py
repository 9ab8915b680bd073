"""Scores to event tables and back: what the tokens hold, as NumPy columns.

An EventTable is the quantized content of a piece: bars, and one row per tempo change,
sustain-pedal press and note, in token order. Encoding writes it as tokens; decoding
parses tokens back into it; `table_to_score` turns it into a symusic Score.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import symusic

from pertok.config import PerTokConfig
from pertok.errors import EmptyScoreError, InvalidScoreError
from pertok.timing import (BarMap, bar_length_ticks, build_bar_map, project_time_signature,
                           quantize_durations, snap_onsets, snap_to_values)
from pertok.vocab import DRUM_PROGRAM, Vocabulary

TEMPO, PEDAL, NOTE = 0, 1, 2  # event kinds, in their order at one grid position
MAX_QPM = 2000.0  # tempos above this (or below MIN_QPM) are treated as corrupt files
MIN_QPM = 1.0


@dataclasses.dataclass
class EventTable:
    """Quantized events of a piece, sorted in token order.

    Columns (one row per event): kind (TEMPO/PEDAL/NOTE), bar, position (ticks after the bar
    line, on the union grid), microtiming (signed bin), program (MIDI program or
    DRUM_PROGRAM; tempo rows -2), pitch, velocity (index of the Velocity token),
    duration (ticks, a sum of Duration token values), tempo (index of the Tempo token).
    """

    bars: BarMap
    kind: np.ndarray
    bar: np.ndarray
    position: np.ndarray
    microtiming: np.ndarray
    program: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    duration: np.ndarray
    tempo: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "bars"}


def four_four_index(vocab: Vocabulary) -> int:
    """TimeSig index of 4/4 (-1 when TimeSig tokens are off or 4/4 has none)."""
    return vocab.time_signatures.index((4, 4)) if (4, 4) in vocab.time_signatures else -1


def check_score(score: symusic.Score) -> None:
    """Refuse scores with absurd resolution or tempo, and scores without notes."""
    if not 1 <= score.ticks_per_quarter <= 32767:
        raise InvalidScoreError(f"ticks per quarter {score.ticks_per_quarter} outside 1..32767")
    mspq = score.tempos.numpy()["mspq"].astype(np.float64)
    if len(mspq) and (mspq.min() <= 0 or not MIN_QPM <= (6e7 / mspq).min() <= (6e7 / mspq).max() <= MAX_QPM):
        raise InvalidScoreError(
            f"tempo outside {MIN_QPM:g}..{MAX_QPM:g} quarter notes per minute")
    if score.note_num() == 0:
        raise EmptyScoreError("the score has no notes")


def _raw_events(score: symusic.Score, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Concatenate notes, pedals and tempos of all tracks; onsets rescaled to our tpq,
    durations left in the file's ticks (they are quantized through a lookup table)."""
    config = vocab.config
    scale = config.ticks_per_quarter / score.ticks_per_quarter
    columns: dict[str, list] = {k: [] for k in ("kind", "onset", "duration_in", "program", "pitch", "velocity")}

    def add(kind, onset, duration, program, pitch, velocity):
        n = len(onset)
        for key, value in zip(columns, (kind, onset, duration, program, pitch, velocity)):
            columns[key].append(np.broadcast_to(np.asarray(value), (n,)))

    for track in score.tracks:
        program = DRUM_PROGRAM if track.is_drum else int(track.program)
        low, high = config.drum_pitch_range if track.is_drum else config.pitch_range
        notes = track.notes.numpy()
        pitch = notes["pitch"].astype(np.int64)  # symusic gives int8
        keep = (pitch >= low) & (pitch <= high)
        add(NOTE, notes["time"][keep] * scale, notes["duration"][keep], program,
            pitch[keep], notes["velocity"][keep].astype(np.int64))
        if config.use_sustain_pedal and len(track.pedals):
            pedals = track.pedals.numpy()
            add(PEDAL, pedals["time"] * scale, pedals["duration"], program, 0, 0)
    if config.use_tempos:
        tempos = score.tempos.numpy()
        add(TEMPO, tempos["time"] * scale, 0, -2, 0, tempos["mspq"].astype(np.int64))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in columns.items()}


def score_to_table(score: symusic.Score, vocab: Vocabulary) -> EventTable:
    """Quantize a score into an EventTable (the projection that tokens can hold)."""
    check_score(score)
    config = vocab.config
    raw = _raw_events(score, vocab)
    if not np.any(raw["kind"] == NOTE):
        raise EmptyScoreError("the score has no notes inside the configured pitch ranges")
    signatures = score.time_signatures.numpy()
    order = np.argsort(signatures["time"], kind="stable")
    scale = config.ticks_per_quarter / score.ticks_per_quarter
    if config.use_time_signatures:
        change_ticks = signatures["time"][order] * scale
        change_signature = np.array([
            project_time_signature(int(n), int(d), vocab.time_signatures, config.ticks_per_quarter)
            for n, d in zip(signatures["numerator"][order], signatures["denominator"][order])],
            np.int64)
    else:
        change_ticks, change_signature = np.zeros(0), np.zeros(0, np.int64)
    default_length = bar_length_ticks(4, 4, config.ticks_per_quarter)
    bars = build_bar_map(change_ticks, change_signature, vocab.bar_lengths[:-1],
                         default_length, raw["onset"].max())
    bars = dataclasses.replace(bars, time_signature=np.where(
        bars.time_signature < 0, four_four_index(vocab), bars.time_signature))
    bar, position, microtiming = snap_onsets(raw["onset"], bars, config)
    kind = raw["kind"].astype(np.int64)
    microtiming = np.where(kind == TEMPO, 0, microtiming)
    duration = _quantize_input_durations(raw["duration_in"], score.ticks_per_quarter, vocab)
    is_tempo = kind == TEMPO
    velocity = vocab.velocity_index_of[np.clip(raw["velocity"], 0, 127).astype(np.int64)]
    tempo = np.zeros(len(kind), np.int64)
    if is_tempo.any():  # nearest in log tempo; values_tempo is decreasing in mspq
        tempo[is_tempo] = snap_to_values(-np.log(raw["velocity"][is_tempo]), -np.log(vocab.values_tempo))
    program = raw["program"].astype(np.int64)
    pitch = raw["pitch"].astype(np.int64)
    order = token_order(bar, position, is_tempo, program, kind, pitch, microtiming, config)
    last_bar = int(bar.max())
    bars = BarMap(bars.starts[:last_bar + 1], bars.lengths[:last_bar + 1],
                  bars.time_signature[:last_bar + 1])
    return EventTable(
        bars=bars, kind=kind[order], bar=bar[order], position=position[order],
        microtiming=microtiming[order], program=program[order], pitch=pitch[order],
        velocity=np.where(is_tempo, 0, velocity)[order],
        duration=np.where(is_tempo, 0, duration)[order],
        tempo=np.where(is_tempo, tempo, 0)[order])


def _quantize_input_durations(duration_in: np.ndarray, tpq_in: int, vocab: Vocabulary) -> np.ndarray:
    """quantize_durations of integer durations in the file's ticks, through lookup tables.

    Durations are whole ticks, so the float snapping runs once per possible value (per
    input resolution, cached) instead of once per note.
    """
    config = vocab.config
    tables = vocab.duration_tables.get(tpq_in)
    largest_in = round(config.duration_steps[-1][0] * tpq_in)
    if tables is None:
        scale = config.ticks_per_quarter / tpq_in
        ticks_in = np.arange(largest_in + 1) * scale
        short = quantize_durations(ticks_in, config)  # whole notes up to the largest token
        remainder = short.copy()
        remainder[:1] = 0  # a remainder of nothing adds no token
        remainder[1:] = quantize_durations(ticks_in[1:] + config.duration_steps[-1][0] * config.ticks_per_quarter,
                                           config) - round(config.duration_steps[-1][0] * config.ticks_per_quarter)
        tables = vocab.duration_tables[tpq_in] = (short, remainder)
    short, remainder = tables
    duration = np.maximum(duration_in.astype(np.int64), 0)
    whole = np.where(duration > largest_in, duration // largest_in, 0)
    rest = duration - whole * largest_in
    largest = round(config.duration_steps[-1][0] * config.ticks_per_quarter)
    return np.where(whole > 0, whole * largest + remainder[rest], short[rest])


def token_order(bar, position, is_tempo, program, kind, pitch, microtiming, config: PerTokConfig) -> np.ndarray:
    """Stable order of events in the token stream.

    By bar and grid position; tempo changes first; then by track (drums last), pedals
    before notes, pitch and microtiming. One packed int64 key sorts several times faster
    than a lexsort over the columns; lexsort is the fallback when a field overflows.
    """
    track_rank = np.where(is_tempo, 0, np.where(program == DRUM_PROGRAM, 129, program + 1))
    shifted_microtiming = microtiming + config.microtiming_bins // 2
    columns = (shifted_microtiming, pitch, kind, track_rank, ~is_tempo, position, bar)
    widths = (5, 7, 2, 8, 1, 20, 20)
    if all(int(c.max(initial=0)) < (1 << w) for c, w in zip(columns, widths)):
        key = np.zeros(len(bar), np.int64)
        shift = 0
        for column, width in zip(columns, widths):
            key |= column.astype(np.int64) << shift
            shift += width
        return np.argsort(key, kind="stable")
    return np.lexsort(columns)


def table_to_score(table: EventTable, vocab: Vocabulary) -> symusic.Score:
    """Build the symusic Score an EventTable describes, at the tokenizer's resolution."""
    config = vocab.config
    score = symusic.Score(config.ticks_per_quarter)
    onset = table.bars.starts[table.bar] + table.position + table.microtiming * config.microtiming_step_ticks
    # Only model output can put an onset before the piece starts (a negative MicroTiming on
    # the first beat); MIDI has no negative time, so such a note starts at 0.
    onset = np.maximum(onset, 0)
    duration = table.duration
    tracked = table.kind != TEMPO
    _, first = np.unique(table.program[tracked], return_index=True)
    for program in table.program[tracked][np.sort(first)]:
        is_drum = bool(program == DRUM_PROGRAM)
        track = symusic.Track("Drums" if is_drum else f"Program {program}",
                              0 if is_drum else int(program), is_drum)
        rows = tracked & (table.program == program)
        notes, pedals = rows & (table.kind == NOTE), rows & (table.kind == PEDAL)
        track.notes = symusic.Note.from_numpy(
            time=onset[notes].astype(np.int32), duration=duration[notes].astype(np.int32),
            pitch=table.pitch[notes].astype(np.int8),
            velocity=vocab.values_velocity[table.velocity[notes]].astype(np.int8))
        if pedals.any():
            track.pedals = symusic.Pedal.from_numpy(
                time=onset[pedals].astype(np.int32), duration=duration[pedals].astype(np.int32))
        score.tracks.append(track)
    _add_tempos(score, table, onset, vocab)
    _add_time_signatures(score, table.bars, vocab)
    return score


def _add_tempos(score: symusic.Score, table: EventTable, onset: np.ndarray, vocab: Vocabulary) -> None:
    is_tempo = table.kind == TEMPO
    times = onset[is_tempo]
    mspq = vocab.values_tempo[table.tempo[is_tempo]] if is_tempo.any() else np.zeros(0, np.int64)
    if not np.any(times == 0):
        times = np.concatenate([[0], times])
        mspq = np.concatenate([[round(6e7 / vocab.config.default_tempo)], mspq])
    score.tempos = symusic.Tempo.from_numpy(time=times.astype(np.int32), mspq=mspq.astype(np.int32))


def _add_time_signatures(score: symusic.Score, bars: BarMap, vocab: Vocabulary) -> None:
    signature = bars.time_signature if len(bars.time_signature) else np.array([four_four_index(vocab)])
    changes = np.flatnonzero(np.concatenate([[True], signature[1:] != signature[:-1]]))
    pairs = np.array([vocab.time_signatures[s] if s >= 0 else (4, 4) for s in signature[changes]],
                     np.int64).reshape(-1, 2)
    starts = bars.starts if len(bars.starts) else np.zeros(1, np.int64)
    score.time_signatures = symusic.TimeSignature.from_numpy(
        time=starts[changes].astype(np.int32), numerator=pairs[:, 0].astype(np.uint8),
        denominator=pairs[:, 1].astype(np.uint8))
