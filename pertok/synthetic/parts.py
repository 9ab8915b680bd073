"""Pitched parts of the synthetic corpus: harmony, piano, melody, bass, pad and dynamics.

Parts are written in score time (quarter notes, on the 16th and 8th-triplet grid); microtiming
and ticks come later, in `timeline.performed_ticks`.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pertok.synthetic.timeline import METERS, Timeline, beat_of, phrase_of

MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
NATURAL_MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])
# Scale degrees from 0 (I / i): I-vi-IV-V, ii-V-I, I-IV-V-I, I-V-vi-IV, ...
MAJOR_PROGRESSIONS = ((0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 0), (0, 4, 5, 3), (5, 3, 0, 4),
                      (0, 2, 3, 4), (1, 4, 0, 5))
MINOR_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 2, 6), (0, 3, 6, 2), (1, 4, 0, 0), (0, 6, 5, 4))
# Rhythm cells a melody picks per felt beat, keyed by beat length: (offset, duration) pairs in
# quarter notes, on the 16th grid or the 8th-triplet grid. An empty cell is a rest.
RHYTHM_CELLS: dict[float, tuple[tuple[tuple[float, float], ...], ...]] = {
    1.0: (((0, 1),), ((0, .5), (.5, .5)), ((0, .75), (.75, .25)), ((0, .5), (.5, .25), (.75, .25)),
          ((0, .25), (.25, .25), (.5, .25), (.75, .25)), ((0, 1 / 3), (1 / 3, 1 / 3), (2 / 3, 1 / 3)),
          ()),
    1.5: (((0, 1.5),), ((0, 1), (1, .5)), ((0, .5), (.5, .5), (1, .5)),
          ((0, .75), (.75, .25), (1, .5)), ((0, .5), (.5, .25), (.75, .25), (1, .5))),
    2.0: (((0, 2),), ((0, 1), (1, 1)), ((0, 1.5), (1.5, .5)), ((0, .5), (.5, .5), (1, 1)),
          ((0, 2 / 3), (2 / 3, 2 / 3), (4 / 3, 2 / 3))),
}
# Accompaniment textures a phrase can take.
BLOCK, ARPEGGIO, ALBERTI, HELD = range(4)
MELODY_STEPS = np.array([-3, -2, -1, -1, 0, 1, 1, 2, 3])  # scale steps, stepwise motion most likely


class PartNotes(NamedTuple):
    """The notes of one part in score time."""

    onset_q: np.ndarray  # (notes,) float quarter notes
    duration_q: np.ndarray  # (notes,) float quarter notes
    pitch: np.ndarray  # (notes,) int MIDI pitch
    velocity: np.ndarray  # (notes,) float, rounded and clipped to 1..127 when written
    strike_q: np.ndarray  # (notes,) the time the player aims at; a grace note aims at its main note


def part_notes(onset_q, duration_q, pitch, velocity, strike_q=None) -> PartNotes:
    """Build a PartNotes from array-likes; strike time defaults to the onset."""
    onset_q = np.asarray(onset_q, dtype=np.float64)
    strike_q = onset_q if strike_q is None else np.asarray(strike_q, dtype=np.float64)
    return PartNotes(onset_q, np.asarray(duration_q, dtype=np.float64),
                     np.asarray(pitch, dtype=np.int64), np.asarray(velocity, dtype=np.float64),
                     strike_q)


def concat_parts(parts: list[PartNotes]) -> PartNotes:
    """Join the notes of several parts (or pieces of one part)."""
    if not parts:
        return part_notes([], [], [], [])
    return PartNotes(*(np.concatenate(field) for field in zip(*parts)))


@dataclass(frozen=True)
class Harmony:
    """Key and chord changes of a piece."""

    tonic_pc: int  # pitch class of the tonic, 0 = C
    scale: np.ndarray  # (7,) semitones above the tonic
    chord_bounds_q: np.ndarray  # (chords + 1,) chord change times, last one is the piece end
    # (chords, 4) semitones above the tonic, root first; a triad repeats its root an octave up.
    chord_tones: np.ndarray

    def chord_at(self, time_q: np.ndarray) -> np.ndarray:
        """Index of the chord sounding at each time."""
        index = np.searchsorted(self.chord_bounds_q, time_q + 1e-9, side="right") - 1
        return np.clip(index, 0, len(self.chord_tones) - 1)


def _chord(degree: int, scale: np.ndarray, minor: bool, seventh: bool) -> np.ndarray:
    """Stack thirds on a scale degree; in minor, V gets the raised leading tone."""
    steps = degree + np.array([0, 2, 4, 6])
    tones = scale[steps % 7] + 12 * (steps // 7)
    if minor and degree == 4:
        tones[1] += 1
    if not seventh:
        tones[3] = tones[0] + 12
    return tones


def build_harmony(rng: np.random.Generator, timeline: Timeline) -> Harmony:
    """Pick a key and a progression per section; one chord per bar, sometimes two."""
    tonic_pc, minor = int(rng.integers(12)), bool(rng.random() < 0.35)
    scale = NATURAL_MINOR_SCALE if minor else MAJOR_SCALE
    progressions = MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS
    sections = [*timeline.section_start_bar, len(timeline.bar_meter)]
    starts, tones = [], []
    for first_bar, end_bar in zip(sections[:-1], sections[1:]):
        progression = progressions[int(rng.integers(len(progressions)))]
        sevenths, two_per_bar = rng.random() < 0.3, rng.random() < 0.3
        slot = 0
        for bar in range(first_bar, end_bar):
            start, length = timeline.bar_start_q[bar], timeline.bar_length_q[bar]
            halves = (start, start + length / 2) if two_per_bar and length in (4.0, 6.0) else (start,)
            for chord_start in halves:
                starts.append(float(chord_start))
                tones.append(_chord(progression[slot % len(progression)], scale, minor, sevenths))
                slot += 1
    tones[-1] = _chord(0, scale, minor, False)  # end on the tonic
    return Harmony(tonic_pc, scale, np.append(starts, timeline.end_q), np.stack(tones))


def close_voicing(pitch_classes: np.ndarray, floor: int) -> np.ndarray:
    """Place pitch classes in the octave starting at `floor`, ascending (last axis)."""
    return np.sort(floor + (pitch_classes - floor) % 12, axis=-1)


def snap_to_chord(harmony: Harmony, time_q: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Move each pitch to the nearest tone of the chord sounding at its time."""
    chord_pcs = (harmony.tonic_pc + harmony.chord_tones[harmony.chord_at(time_q)]) % 12
    shift = (chord_pcs - pitch[:, None] + 6) % 12 - 6
    return pitch + shift[np.arange(len(pitch)), np.argmin(np.abs(shift), axis=1)]


class PhraseDynamics(NamedTuple):
    """Dynamic arc of each phrase, shared by the ensemble."""

    peak: np.ndarray  # (phrases,) where the swell peaks: 0 decrescendo, 1 crescendo, between an arc
    level: np.ndarray  # (phrases,) loudness offset of the phrase, velocity units


def plan_dynamics(rng: np.random.Generator, timeline: Timeline) -> PhraseDynamics:
    """Choose a crescendo, decrescendo or arc and a loudness for every phrase."""
    shape = rng.choice(3, size=timeline.num_phrases, p=[0.6, 0.2, 0.2])
    peak = np.where(shape == 0, rng.uniform(0.35, 0.8, timeline.num_phrases), shape == 1)
    return PhraseDynamics(peak.astype(np.float64), rng.uniform(-12, 12, timeline.num_phrases))


def shape_velocity(rng: np.random.Generator, timeline: Timeline, dynamics: PhraseDynamics,
                   onset_q: np.ndarray, base: float, swell: float, accent_gain: float) -> np.ndarray:
    """Velocity from the phrase arc, the metric accent of the onset and a little noise.

    Args:
      base: velocity at the quiet ends of a phrase.
      swell: velocity added at the peak of the phrase arc.
      accent_gain: velocity added on a downbeat (scaled by each beat's metric weight).
    """
    phrase = phrase_of(timeline, onset_q)
    start, end = timeline.phrase_bounds_q[phrase], timeline.phrase_bounds_q[phrase + 1]
    progress = np.clip((onset_q - start) / (end - start), 0.0, 1.0)
    peak = dynamics.peak[phrase]
    rising = progress / np.maximum(peak, 1e-9)
    falling = (1.0 - progress) / np.maximum(1.0 - peak, 1e-9)
    contour = np.clip(np.where(progress < peak, rising, falling), 0.0, 1.0)
    beat = beat_of(timeline, onset_q)
    on_beat = np.abs(onset_q - timeline.beat_onset_q[beat]) < 1e-6
    accent = np.where(on_beat, timeline.beat_accent[beat], 0.0)
    noise = rng.normal(0.0, 4.0, size=len(onset_q))
    return base + dynamics.level[phrase] + swell * contour + accent_gain * accent + noise


def _reflect(degree: np.ndarray, low: int, high: int) -> np.ndarray:
    """Fold a random walk back into [low, high] like a ball bouncing between walls."""
    width = high - low
    folded = (degree - low) % (2 * width)
    return low + np.where(folded > width, 2 * width - folded, folded)


def _bar_after_phrase(timeline: Timeline, phrase: int) -> int:
    """Index of the first bar after a phrase (the bar count after the last phrase)."""
    starts = (*timeline.phrase_start_bar, len(timeline.bar_meter))
    return starts[phrase + 1]


def _phrase_rhythm(rng: np.random.Generator, timeline: Timeline, phrase: int,
                   long_ending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and durations of one melodic phrase: a rhythm cell per beat, then a held ending."""
    last_bar = _bar_after_phrase(timeline, phrase) - 1
    first_bar = timeline.phrase_start_bar[phrase]
    # A long ending holds the last note across the final two bars (6-12 beats).
    ending_bar = last_bar - 1 if long_ending and last_bar - first_bar >= 2 else last_bar
    ending_q = timeline.bar_start_q[ending_bar]
    beats = np.flatnonzero((timeline.beat_onset_q >= timeline.phrase_bounds_q[phrase])
                           & (timeline.beat_onset_q < ending_q))
    picks = rng.random(len(beats))
    onsets, durations = [], []
    for beat, pick in zip(beats, picks):
        cells = RHYTHM_CELLS[float(timeline.beat_length_q[beat])]
        if timeline.beat_onset_q[beat] % 1:  # beat starts mid-quarter: keep to the 16th grid
            cells = [cell for cell in cells if all((offset * 4) % 1 == 0 for offset, _ in cell)]
        for offset, duration in cells[int(pick * len(cells))]:
            onsets.append(timeline.beat_onset_q[beat] + offset)
            durations.append(duration)
    onsets.append(ending_q)
    durations.append(timeline.phrase_bounds_q[phrase + 1] - ending_q)
    return np.asarray(onsets), np.asarray(durations)


def melody_part(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
                dynamics: PhraseDynamics, lowest_pitch: int, loudness: float) -> PartNotes:
    """A singing line: stepwise walks per phrase, chord tones on strong beats, grace notes.

    Args:
      lowest_pitch: roughly the bottom of the instrument's range; the line spans two octaves.
      loudness: base velocity.
    """
    onsets, durations, degrees = [], [], []
    for phrase in range(timeline.num_phrases):
        long_ending = bool(rng.random() < 0.4)
        phrase_onsets, phrase_durations = _phrase_rhythm(rng, timeline, phrase, long_ending)
        if rng.random() < 0.3:  # a staccato phrase; its held ending stays held
            short = phrase_durations < 1.0
            phrase_durations = np.where(short, phrase_durations * rng.uniform(0.25, 0.45), phrase_durations)
        walk = int(rng.integers(2, 10)) + np.cumsum(rng.choice(MELODY_STEPS, len(phrase_onsets)))
        onsets.append(phrase_onsets)
        durations.append(phrase_durations)
        degrees.append(_reflect(walk, 0, 14))
    onset_q, duration_q, degree = (np.concatenate(column) for column in (onsets, durations, degrees))
    tonic = lowest_pitch + (harmony.tonic_pc - lowest_pitch) % 12
    pitch = tonic + 12 * (degree // 7) + harmony.scale[degree % 7]
    beat = beat_of(timeline, onset_q)
    on_beat = np.abs(onset_q - timeline.beat_onset_q[beat]) < 1e-6
    strong_beat = on_beat & (timeline.beat_accent[beat] >= 0.7)
    pitch = np.where(strong_beat | (duration_q >= 1.0), snap_to_chord(harmony, onset_q, pitch), pitch)
    velocity = shape_velocity(rng, timeline, dynamics, onset_q, loudness, 22.0, 10.0)
    return _with_grace_notes(rng, timeline, part_notes(onset_q, duration_q, pitch, velocity))


def _with_grace_notes(rng: np.random.Generator, timeline: Timeline, melody: PartNotes) -> PartNotes:
    """Ornament some longer notes with a 1/32-beat grace note from a neighbouring pitch."""
    beat_length = timeline.beat_length_q[beat_of(timeline, melody.onset_q)]
    grace_length = beat_length / 32
    long_enough = (melody.duration_q >= 0.5) & (melody.onset_q > 0.25)
    chosen = (rng.random(len(melody.onset_q)) < 0.08) & long_enough
    # Sounded a 1/16 quarter early so microtiming never pushes it past its main note.
    grace = part_notes(melody.onset_q[chosen] - 0.0625, grace_length[chosen],
                       melody.pitch[chosen] + rng.choice([-1, 2], size=int(chosen.sum())),
                       melody.velocity[chosen] - 12, strike_q=melody.onset_q[chosen])
    return concat_parts([melody, grace])


def piano_voicings(harmony: Harmony) -> tuple[np.ndarray, np.ndarray]:
    """Left-hand root (C2-B2) and a four-note close voicing from F3 upwards, for every chord.

    Returns:
      (roots (chords,), voicings (chords, 4) ascending).
    """
    pitch_classes = (harmony.tonic_pc + harmony.chord_tones) % 12
    roots = 36 + (pitch_classes[:, 0] - 36) % 12
    voicings = close_voicing(pitch_classes, 53)
    # A triad repeats its root: lift the repeat an octave so four different keys sound.
    repeated = np.zeros(voicings.shape, dtype=bool)
    repeated[:, 1:] = voicings[:, 1:] == voicings[:, :-1]
    return roots, np.sort(voicings + 12 * repeated, axis=1)


def chord_beat_ranges(timeline: Timeline, harmony: Harmony) -> tuple[np.ndarray, np.ndarray]:
    """For every chord, the index of its first beat and one past its last."""
    bounds = np.searchsorted(timeline.beat_onset_q, harmony.chord_bounds_q - 1e-9)
    return bounds[:-1], bounds[1:]


def steps_within(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of the given sizes: the group of each element and its index inside the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    return group, np.arange(len(group)) - np.repeat(np.cumsum(counts) - counts, counts)


def _block_chords(timeline: Timeline, harmony: Harmony, chosen: np.ndarray, articulation: np.ndarray,
                  staccato: np.ndarray) -> PartNotes:
    """Chords struck on every beat over a root on each chord change.

    Args:
      chosen: (chords,) bool, the chords played this way.
      articulation: (phrases,) fraction of each beat the chord is held.
      staccato: (phrases,) bool, whether the root is short too.
    """
    roots, voicings = piano_voicings(harmony)
    beat_chord = harmony.chord_at(timeline.beat_onset_q)
    beats = np.flatnonzero(chosen[beat_chord])
    beat_phrase = phrase_of(timeline, timeline.beat_onset_q[beats])
    chords = np.flatnonzero(chosen)
    start, end = harmony.chord_bounds_q[chords], harmony.chord_bounds_q[chords + 1]
    phrase = phrase_of(timeline, start)
    first_beat_length = timeline.beat_length_q[beat_of(timeline, start)]
    root_duration = np.where(staccato[phrase], first_beat_length * articulation[phrase], end - start)
    onsets = np.concatenate([start, np.repeat(timeline.beat_onset_q[beats], 4)])
    chord_duration = timeline.beat_length_q[beats] * articulation[beat_phrase]
    durations = np.concatenate([root_duration, np.repeat(chord_duration, 4)])
    pitches = np.concatenate([roots[chords], voicings[beat_chord[beats]].ravel()])
    return part_notes(onsets, durations, pitches, np.zeros(len(onsets)))


def _broken_chords(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
                   chosen: np.ndarray, alberti: np.ndarray) -> PartNotes:
    """Arpeggios (up and down through root and voicing) or Alberti figures, in 8ths, 16ths or triplets.

    Args:
      chosen: (chords,) bool, the chords played this way.
      alberti: (chords,) bool, Alberti figure instead of an arpeggio.
    """
    roots, voicings = piano_voicings(harmony)
    chords = np.flatnonzero(chosen)
    start, end = harmony.chord_bounds_q[chords], harmony.chord_bounds_q[chords + 1]
    bar = np.searchsorted(timeline.bar_start_q, start + 1e-9, side="right") - 1
    # 8th triplets only where the beats are plain quarters or halves and start on a quarter.
    plain_beats = np.array([1.5 not in METERS[timeline.bar_meter[b]].beat_lengths_q for b in bar],
                           dtype=bool)
    triplets_fit = plain_beats & (start % 1 == 0)
    step = np.array([0.5, 0.25, 1 / 3])[rng.integers(0, np.where(triplets_fit, 3, 2))]
    counts = np.ceil((end - start) / step - 1e-9).astype(np.int64)
    owner, index = steps_within(counts)
    onsets = start[owner] + step[owner] * index
    patterns = np.array([[0, 1, 2, 3, 4, 3, 2, 1], [0, 1, 3, 2, 3, 1, 3, 2]])
    order = patterns[alberti[chords][owner].astype(int), index % 8]
    pool = np.concatenate([roots[:, None], voicings], axis=1)[chords]
    durations = np.where(order == 0, end[owner] - onsets, 1.5 * step[owner])  # the root rings on
    return part_notes(onsets, durations, pool[owner, order], np.zeros(len(onsets)))


def piano_accompaniment(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
                        dynamics: PhraseDynamics) -> tuple[PartNotes, np.ndarray]:
    """The piano's left hand and inner voices, plus its sustain-pedal spans.

    Each phrase picks a texture (block chords, arpeggio, Alberti figure, chords held over a
    pedal point of 6-12 beats); the pedal is re-taken just after every chord change, except
    under staccato block chords.

    Returns:
      (notes, pedal spans (k, 2) as [press, release] in quarter notes).
    """
    textures = rng.choice([BLOCK, ARPEGGIO, ALBERTI, HELD], size=timeline.num_phrases,
                          p=[0.35, 0.3, 0.2, 0.15])
    staccato = (rng.random(timeline.num_phrases) < 0.25) & (textures == BLOCK)
    articulation = np.where(staccato, rng.uniform(0.2, 0.35, timeline.num_phrases),
                            rng.uniform(0.85, 1.0, timeline.num_phrases))
    start, end = harmony.chord_bounds_q[:-1], harmony.chord_bounds_q[1:]
    chord_phrase = phrase_of(timeline, start)
    texture = textures[chord_phrase]
    held = np.flatnonzero(texture == HELD)
    _, voicings = piano_voicings(harmony)
    held_phrases = np.flatnonzero(textures == HELD)
    phrase_start = timeline.phrase_bounds_q[held_phrases]
    phrase_length = timeline.phrase_bounds_q[held_phrases + 1] - phrase_start
    pedal_points = 36 + (harmony.tonic_pc - 36) % 12 - 12 * rng.integers(0, 2, len(held_phrases))
    broken = (texture == ARPEGGIO) | (texture == ALBERTI)
    notes = concat_parts([
        _block_chords(timeline, harmony, texture == BLOCK, articulation, staccato),
        _broken_chords(rng, timeline, harmony, broken, texture == ALBERTI),
        part_notes(np.repeat(start[held], 4), np.repeat(end[held] - start[held], 4),
                   voicings[held].ravel(), np.zeros(4 * len(held))),
        part_notes(phrase_start, np.minimum(phrase_length, 12.0), pedal_points,
                   np.zeros(len(held_phrases))),
    ])
    velocity = shape_velocity(rng, timeline, dynamics, notes.onset_q, 38.0, 20.0, 12.0)
    # Legato pedalling: lift as the next chord sounds, press again just after it.
    pedalled = ~staccato[chord_phrase]
    press = start[pedalled] + rng.uniform(0.08, 0.2, int(pedalled.sum()))
    release = np.where(end[pedalled] < timeline.end_q, end[pedalled] + 0.03, end[pedalled] + 0.5)
    return notes._replace(velocity=velocity), np.stack([press, release], axis=1)
