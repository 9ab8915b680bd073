"""The per-file reference of the tokenizer's quantizing projection and score building.

The library has one path for both, batched (`pertok.quantize.scores_to_tables`,
`pertok.render.tables_to_scores`); this is the same projection written plainly, per note, with
float onsets and a lexical sort: the oracle the batched path is checked against, exactly.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import symusic

from pertok.config import PerTokConfig
from pertok.events import NOTE, PEDAL, TEMPO, EventTable, check_score, four_four_index
from pertok.errors import EmptyScoreError
from pertok.timing import (BarMap, bar_length_ticks, bar_segments, project_time_signature, quantize_input_durations,
                           snap_offsets, snap_to_values)
from pertok.vocab import DRUM_PROGRAM, Vocabulary

_EPS = 1e-6  # ticks, as the library's


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
    segment_starts, segment_signatures = bar_segments(change_ticks, change_signature, lengths_of)
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
    position, microtiming, at_next_bar = snap_offsets(onset_ticks - bars.starts[bar], bars.lengths[bar], config)
    return (bar + at_next_bar).astype(np.int64), position, microtiming


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


def reference_score_to_table(score: symusic.Score, vocab: Vocabulary) -> EventTable:
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
    duration = quantize_input_durations(raw["duration_in"], score.ticks_per_quarter, vocab)
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


def reference_table_to_score(table: EventTable, vocab: Vocabulary) -> symusic.Score:
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
