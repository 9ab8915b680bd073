"""Whole pieces of the built-in corpus: a seed -> a multi-track Score, and a corpus folder.

A seed fully determines a piece. Its kind ("piano", "drums", "band") and its opening meter
cycle with the seed, so any 21 consecutive seeds cover every (kind, meter) pair; everything
else (length, sections, key, tempo map, textures, dynamics, swing, microtiming) is drawn
from `np.random.default_rng(seed)`.
"""
import pathlib
from typing import NamedTuple

import numpy as np
import symusic

from pertok.synthetic.band import bass_part, drum_part, pad_part
from pertok.synthetic.parts import (PartNotes, build_harmony, melody_part, piano_accompaniment,
                                    plan_dynamics)
from pertok.synthetic.timeline import (METER_NAMES, METERS, Feel, Timeline, build_timeline,
                                       ensemble_drift_ms, performed_ticks, swing)

KINDS: tuple[str, ...] = ("piano", "drums", "band")
# Mostly the common 480, sometimes other resolutions so tokenizers meet several.
TPQ_CHOICES, TPQ_WEIGHTS = (480, 384, 960, 220), (0.7, 0.1, 0.1, 0.1)
LEAD_INSTRUMENTS = {56: 60, 65: 56, 71: 55, 73: 72, 40: 67}  # GM program -> lowest melody pitch
PAD_PROGRAMS = (48, 49, 89)  # string ensembles, warm pad
# Corpus piece i of corpus seed s is generate_score(s * PIECE_SEED_STRIDE + i).
PIECE_SEED_STRIDE = 1_000_000
SUSTAIN_PEDAL_CC = 64


class Voice(NamedTuple):
    """Notes one player shapes alike (a pianist's melody leads; the accompaniment does not)."""

    notes: PartNotes
    feel: Feel


class Part(NamedTuple):
    """One instrument of a piece, still in score time."""

    name: str
    program: int
    is_drum: bool
    voices: tuple[Voice, ...]
    pedals_q: np.ndarray | None = None  # (k, 2) sustain [press, release] in quarter notes


DRUM_FEEL = Feel(jitter_ms=6.0, chord_spread_ms=2.0, lag_ms=0.0)
PIANO_FEEL = Feel(jitter_ms=10.0, chord_spread_ms=5.0, lag_ms=0.0)
MELODY_FEEL = Feel(jitter_ms=10.0, chord_spread_ms=3.0, lag_ms=-8.0)  # melody leads its accompaniment
BASS_FEEL = Feel(jitter_ms=8.0, chord_spread_ms=2.0, lag_ms=6.0)  # bass lays back a little
PAD_FEEL = Feel(jitter_ms=12.0, chord_spread_ms=6.0, lag_ms=5.0)


def _compose(rng: np.random.Generator, kind: str, timeline: Timeline) -> list[Part]:
    """Write the parts of a piece of the given kind."""
    dynamics = plan_dynamics(rng, timeline)
    if kind == "drums":
        return [Part("Drums", 0, True, (Voice(drum_part(rng, timeline, dynamics), DRUM_FEEL),))]
    harmony = build_harmony(rng, timeline)
    accompaniment, pedals_q = piano_accompaniment(rng, timeline, harmony, dynamics)
    second = str(rng.choice(["lead", "pad", "none"], p=[0.45, 0.3, 0.25])) if kind == "band" else "none"
    piano_voices = [Voice(accompaniment, PIANO_FEEL)]
    parts = []
    if second == "lead":  # the lead instrument takes the tune and the piano only comps
        program = int(rng.choice(list(LEAD_INSTRUMENTS)))
        lead = melody_part(rng, timeline, harmony, dynamics, LEAD_INSTRUMENTS[program], 72.0)
        parts.append(Part("Lead", program, False, (Voice(lead, MELODY_FEEL),)))
    else:
        piano_voices.append(Voice(melody_part(rng, timeline, harmony, dynamics, 60, 58.0), MELODY_FEEL))
    parts.insert(0, Part("Piano", 0, False, tuple(piano_voices), pedals_q))
    if kind == "band":
        walking = bool(rng.random() < 0.3)
        bass = bass_part(rng, timeline, harmony, dynamics, walking)
        parts.append(Part("Bass", int(rng.integers(32, 40)), False, (Voice(bass, BASS_FEEL),)))
        parts.append(Part("Drums", 0, True, (Voice(drum_part(rng, timeline, dynamics), DRUM_FEEL),)))
    if second == "pad":
        pad = pad_part(rng, timeline, harmony, dynamics)
        parts.append(Part("Strings", int(rng.choice(PAD_PROGRAMS)), False, (Voice(pad, PAD_FEEL),)))
    return parts


def _swung(timeline: Timeline, notes: PartNotes, ratio: float, unit_q: float) -> PartNotes:
    """Swing onsets, note ends and strike times together."""
    onset_q = swing(timeline, notes.onset_q, ratio, unit_q)
    end_q = swing(timeline, notes.onset_q + notes.duration_q, ratio, unit_q)
    return notes._replace(onset_q=onset_q, duration_q=np.maximum(end_q - onset_q, 1e-3),
                          strike_q=swing(timeline, notes.strike_q, ratio, unit_q))


def _one_note_per_key(onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray,
                      velocity: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop repeated strikes of a key at one tick and cut notes short where their key sounds again.

    MIDI cannot hold two overlapping notes of one pitch on one channel, so without this a file
    would not read back as the notes written. Returns the arrays sorted by (onset, pitch).
    """
    order = np.lexsort((onset, pitch))
    key_onset = np.stack([pitch[order], onset[order]], axis=1)
    order = order[np.append(True, np.any(key_onset[1:] != key_onset[:-1], axis=1))]
    onset, duration, pitch, velocity = onset[order], duration[order], pitch[order], velocity[order]
    next_same_key = np.append(pitch[1:] == pitch[:-1], False)
    next_onset = np.append(onset[1:], np.iinfo(np.int64).max)
    duration = np.where(next_same_key, np.minimum(duration, next_onset - onset), duration)
    order = np.lexsort((pitch, onset))
    return onset[order], duration[order], pitch[order], velocity[order]


def _fold_into_range(pitch: np.ndarray, lowest: int, highest: int) -> np.ndarray:
    """Move pitches outside [lowest, highest] by whole octaves until they fit."""
    pitch = np.where(pitch < lowest, pitch + 12 * ((lowest - pitch + 11) // 12), pitch)
    return np.where(pitch > highest, pitch - 12 * ((pitch - highest + 11) // 12), pitch)


def _sustain_pedal(track: symusic.core.TrackTick, pedals_q: np.ndarray, tpq: int) -> None:
    """Put sustain-pedal spans on a track, both as pedals and as the CC64 events a file holds."""
    press, release = np.rint(pedals_q.T * tpq).astype(np.int32)
    track.pedals = symusic.Pedal.from_numpy(press, release - press)
    # symusic writes only the controller events to MIDI, and reads pedals back from them.
    times = np.stack([press, release], axis=1).ravel()
    numbers = np.full(len(times), SUSTAIN_PEDAL_CC, dtype=np.uint8)
    values = np.tile(np.array([127, 0], dtype=np.uint8), len(press))
    track.controls = symusic.ControlChange.from_numpy(times, numbers, values)


def _perform(rng: np.random.Generator, part: Part, timeline: Timeline, drift_ms: np.ndarray, tpq: int,
             swing_feel: tuple[float, float] | None) -> symusic.core.TrackTick:
    """Render a part to a symusic track: swing, microtiming, velocity and range limits, pedal.

    Args:
      drift_ms: the ensemble's rushing/dragging, from ensemble_drift_ms.
      swing_feel: (ratio, unit in quarter notes) shared by the band, or None for straight time.
    """
    columns = []
    for notes, feel in part.voices:
        if swing_feel is not None:
            notes = _swung(timeline, notes, *swing_feel)
        onset, duration = performed_ticks(rng, timeline, notes.onset_q, notes.duration_q,
                                          notes.strike_q, feel, drift_ms, tpq)
        velocity = np.clip(np.rint(notes.velocity), 1, 127).astype(np.int64)
        columns.append((onset, duration, notes.pitch, velocity))
    onset, duration, pitch, velocity = (np.concatenate(column) for column in zip(*columns))
    if not part.is_drum:
        pitch = _fold_into_range(pitch, 21, 108)
    onset, duration, pitch, velocity = _one_note_per_key(onset, duration, pitch, velocity)
    track = symusic.Track(part.name, part.program, part.is_drum)
    track.notes = symusic.Note.from_numpy(time=onset.astype(np.int32), duration=duration.astype(np.int32),
                                          pitch=pitch.astype(np.int8), velocity=velocity.astype(np.int8))
    if part.pedals_q is not None and len(part.pedals_q):
        _sustain_pedal(track, part.pedals_q, tpq)
    return track


def _meter_and_tempo_events(score: symusic.core.ScoreTick, timeline: Timeline, tpq: int) -> None:
    """Write time-signature changes (at bar lines) and tempo changes into the score."""
    meters = np.array(timeline.bar_meter)
    changes = np.flatnonzero(np.append(True, meters[1:] != meters[:-1]))
    score.time_signatures = symusic.TimeSignature.from_numpy(
        np.rint(timeline.bar_start_q[changes] * tpq).astype(np.int32),
        np.array([METERS[m].numerator for m in meters[changes]], dtype=np.uint8),
        np.array([METERS[m].denominator for m in meters[changes]], dtype=np.uint8))
    mspq = np.rint(60_000_000 / timeline.tempo_qpm).astype(np.int32)
    keep = np.append(True, mspq[1:] != mspq[:-1])  # no tempo event that changes nothing
    tempo_ticks = np.rint(timeline.tempo_time_q[keep] * tpq).astype(np.int32)
    score.tempos = symusic.Tempo.from_numpy(tempo_ticks, mspq[keep])


def generate_score(seed: int, kind: str | None = None) -> symusic.core.ScoreTick:
    """Generate one expressive piece; the same seed always gives the same score.

    Args:
      seed: non-negative integer that fixes everything about the piece.
      kind: "piano", "drums" or "band"; None picks by seed (cycling through KINDS).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if kind is None:
        kind = KINDS[seed % len(KINDS)]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    rng = np.random.default_rng(seed)
    tpq = int(rng.choice(TPQ_CHOICES, p=TPQ_WEIGHTS))
    timeline = build_timeline(rng, METER_NAMES[seed % len(METER_NAMES)])
    parts = _compose(rng, kind, timeline)
    swing_feel = None
    if kind != "piano" and rng.random() < 0.5:  # 8th swing, or 16th swing over half-beat units
        swing_feel = (float(rng.uniform(0.55, 0.67)), float(rng.choice([1.0, 0.5], p=[0.7, 0.3])))
    drift_ms = ensemble_drift_ms(rng, timeline)
    score = symusic.Score(tpq)
    _meter_and_tempo_events(score, timeline, tpq)
    for part in parts:
        score.tracks.append(_perform(rng, part, timeline, drift_ms, tpq, swing_feel))
    return score


def write_corpus(out_dir: str | pathlib.Path, num_pieces: int, seed: int = 0) -> list[pathlib.Path]:
    """Write num_pieces MIDI files, out_dir/piece_0000_<kind>.mid and on.

    Args:
      out_dir: directory to write into; created if missing.
      num_pieces: how many pieces.
      seed: corpus seed; piece i is generate_score(seed * PIECE_SEED_STRIDE + i).
    """
    if num_pieces < 0:
        raise ValueError(f"num_pieces must be >= 0, got {num_pieces}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(num_pieces):
        piece_seed = seed * PIECE_SEED_STRIDE + index
        kind = KINDS[piece_seed % len(KINDS)]
        path = out_dir / f"piece_{index:04d}_{kind}.mid"
        path.write_bytes(generate_score(piece_seed, kind).dumps_midi())
        paths.append(path)
    return paths
