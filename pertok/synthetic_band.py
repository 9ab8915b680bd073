"""The rhythm section of the synthetic corpus: drum grooves, bass lines and string pads."""
import numpy as np

from pertok.synthetic_parts import (Harmony, PartNotes, PhraseDynamics, close_voicing, concat_parts,
                                    part_notes, shape_velocity)
from pertok.synthetic_timeline import Timeline, phrase_of

# General MIDI percussion keys.
KICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 44, 46, 49, 51
TOMS_HIGH_TO_LOW = np.array([50, 48, 47, 45, 43, 41])


def _subdivide(timeline: Timeline, beats: np.ndarray, step_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onsets that split each chosen beat into equal steps, and the beat each belongs to.

    Args:
      beats: indices of the beats to subdivide.
      step_q: (len(beats),) subdivision of each beat in quarter notes.
    """
    onsets, owners = [], []
    lengths = timeline.beat_length_q[beats]
    for length, step in set(zip(lengths.tolist(), step_q.tolist())):
        chosen = beats[(lengths == length) & (step_q == step)]
        offsets = np.arange(0.0, length - 1e-9, step)
        onsets.append((timeline.beat_onset_q[chosen][:, None] + offsets).ravel())
        owners.append(np.repeat(chosen, len(offsets)))
    if not onsets:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(onsets), np.concatenate(owners)


def _cymbals(rng: np.random.Generator, timeline: Timeline, beats: np.ndarray) -> PartNotes:
    """Hi-hat or ride on every 8th or 16th, the hat opening on some bars' last off-beat."""
    phrase = phrase_of(timeline, timeline.beat_onset_q[beats])
    simple = timeline.beat_length_q[beats] != 1.5
    sixteenths = (rng.random(timeline.num_phrases) < 0.35)[phrase] & simple
    onsets, owner = _subdivide(timeline, beats, np.where(sixteenths, 0.25, 0.5))
    offset = onsets - timeline.beat_onset_q[owner]
    riding = (rng.random(timeline.num_phrases) < 0.3)[phrase_of(timeline, onsets)]
    last_beat_of_bar = np.append(timeline.beat_bar[1:] != timeline.beat_bar[:-1], True)[owner]
    opens = last_beat_of_bar & (offset == 0.5) & (rng.random(len(onsets)) < 0.35) & ~riding
    pitch = np.where(riding, RIDE, np.where(opens, OPEN_HAT, CLOSED_HAT))
    # Loud on the beat, softer on the 8th off-beats, softest on the in-between 16ths.
    velocity = np.where(offset == 0, 78.0, np.where((offset * 2) % 1 == 0, 62.0, 48.0))
    return part_notes(onsets, np.full(len(onsets), 0.0625), pitch, velocity)


def _kick_and_snare(rng: np.random.Generator, timeline: Timeline, beats: np.ndarray) -> PartNotes:
    """The meter's kick/snare skeleton, pickup kicks, snare ghost notes and pedal hats under a ride."""
    roles = timeline.beat_drum_role[beats]
    onsets = timeline.beat_onset_q[beats]
    pitch = np.where(roles == "K", KICK, SNARE)
    velocity = np.where(roles == "K", 100.0, 108.0)
    # A pickup kick halfway through some kick beats (the "and of 3" in a rock groove).
    pickups = beats[(roles == "K") & (rng.random(len(beats)) < 0.3)]
    pickup_onsets = timeline.beat_onset_q[pickups] + timeline.beat_length_q[pickups] * (2 / 3 if False else 0.5)
    simple = timeline.beat_length_q[beats] != 1.5
    ghost_onsets, owner = _subdivide(timeline, beats, np.where(simple, 0.25, 0.5))
    ghost_density = rng.uniform(0.0, 0.35, timeline.num_phrases)[phrase_of(timeline, ghost_onsets)]
    off_beat = ghost_onsets > timeline.beat_onset_q[owner]
    ghosts = ghost_onsets[off_beat & (rng.random(len(ghost_onsets)) < ghost_density)]
    return concat_parts([
        part_notes(onsets, np.full(len(onsets), 0.125), pitch, velocity),
        part_notes(pickup_onsets, np.full(len(pickups), 0.125), np.full(len(pickups), KICK),
                   np.full(len(pickups), 88.0)),
        # Ghost notes sit far below the backbeat: velocity 15-35 before phrase shaping.
        part_notes(ghosts, np.full(len(ghosts), 0.0625), np.full(len(ghosts), SNARE),
                   rng.uniform(15, 35, len(ghosts)) - 100.0),
    ])


def _fills_and_crashes(rng: np.random.Generator, timeline: Timeline) -> tuple[PartNotes, list[int]]:
    """Tom fills on the last beat of some phrases, crashes where sections and phrases begin.

    Returns:
      (notes, indices of the beats the fills occupy, which the groove leaves free).
    """
    fills, fill_beats = [], []
    for phrase in range(timeline.num_phrases):
        if rng.random() < 0.45:
            beat = int(np.searchsorted(timeline.beat_onset_q, timeline.phrase_bounds_q[phrase + 1] - 1e-9) - 1)
            length = timeline.beat_length_q[beat]
            step = 1 / 3 if length == 1.0 and rng.random() < 0.3 else 0.25
            onsets = timeline.beat_onset_q[beat] + np.arange(0.0, length - 1e-9, step)
            toms = TOMS_HIGH_TO_LOW[np.linspace(0, 5, len(onsets)).round().astype(int)]
            fills.append(part_notes(onsets, np.full(len(onsets), 0.125), toms,
                                    np.linspace(75.0, 105.0, len(onsets))))
            fill_beats.append(beat)
    section_starts = timeline.bar_start_q[list(timeline.section_start_bar)]
    phrase_starts = timeline.phrase_bounds_q[:-1]
    crash_onsets = np.union1d(section_starts, phrase_starts[rng.random(len(phrase_starts)) < 0.4])
    fills.append(part_notes(crash_onsets, np.full(len(crash_onsets), 0.5), np.full(len(crash_onsets), CRASH),
                            np.full(len(crash_onsets), 110.0)))
    return concat_parts(fills), fill_beats


def drum_part(rng: np.random.Generator, timeline: Timeline, dynamics: PhraseDynamics) -> PartNotes:
    """A groove for the whole piece: cymbals, kick/snare, ghost notes, fills and crashes."""
    fills, fill_beats = _fills_and_crashes(rng, timeline)
    groove_beats = np.setdiff1d(np.arange(len(timeline.beat_onset_q)), fill_beats)
    kit = concat_parts([_cymbals(rng, timeline, groove_beats), _kick_and_snare(rng, timeline, groove_beats),
                        fills])
    # Phrase arcs and metric accents on top of each instrument's own level (ghosts stay ghosts).
    shaped = kit.velocity + shape_velocity(rng, timeline, dynamics, kit.onset_q, -8.0, 12.0, 6.0)
    velocity = np.where(kit.velocity < 0, kit.velocity + 100.0, shaped)
    return kit._replace(velocity=velocity)


def bass_part(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
              dynamics: PhraseDynamics, walking: bool) -> PartNotes:
    """A bass line on the chord roots: held roots, root-fifth pulses, eighths, or a walking line."""
    styles = rng.choice(["roots", "pulse", "eighths"], size=timeline.num_phrases)
    pieces = []
    for chord in range(len(harmony.chord_tones)):
        start, end = harmony.chord_bounds_q[chord], harmony.chord_bounds_q[chord + 1]
        tones = harmony.tonic_pc + harmony.chord_tones[chord]
        root = 33 + (tones[0] - 33) % 12  # A1..G#2
        chord_tones = root + (harmony.chord_tones[chord] - harmony.chord_tones[chord][0])
        first, last = np.searchsorted(timeline.beat_onset_q, [start - 1e-9, end - 1e-9])
        beats, lengths = timeline.beat_onset_q[first:last], timeline.beat_length_q[first:last]
        style = "walking" if walking else styles[phrase_of(timeline, np.array([start]))[0]]
        if style == "roots":
            onsets, durations, pitches = [start], [0.95 * (end - start)], [root]
        elif style == "walking":
            next_root = 33 + (harmony.tonic_pc + harmony.chord_tones[min(chord + 1, len(harmony.chord_tones) - 1)][0] - 33) % 12
            pitches = chord_tones[np.arange(len(beats)) % 3]
            pitches[-1] = next_root + rng.choice([-1, 1]) if len(beats) > 1 else pitches[-1]
            onsets, durations = beats, 0.95 * lengths
        elif style == "pulse":
            onsets, durations = beats, 0.8 * lengths
            pitches = (root + np.array([0, 7, 12, 7]))[np.arange(len(beats)) % 4]
        else:
            onsets = np.arange(start, end - 1e-9, 0.5)
            durations = np.full(len(onsets), 0.4)
            pitches = np.where(np.arange(len(onsets)) % 4 == 3, root + 12, root)
        pieces.append(part_notes(onsets, durations, pitches, np.zeros(len(onsets))))
    bass = concat_parts(pieces)
    return bass._replace(velocity=shape_velocity(rng, timeline, dynamics, bass.onset_q, 62.0, 18.0, 12.0))


def pad_part(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
             dynamics: PhraseDynamics) -> PartNotes:
    """Sustained string chords; a chord repeated across bars is held, not re-struck."""
    voicings = np.array([close_voicing((harmony.tonic_pc + tones[:3]) % 12, 55) for tones in harmony.chord_tones])
    changes = np.append(True, np.any(voicings[1:] != voicings[:-1], axis=1))
    starts = np.flatnonzero(changes)
    ends = np.append(starts[1:], len(voicings))
    onsets = np.repeat(harmony.chord_bounds_q[starts], 3)
    durations = np.repeat(harmony.chord_bounds_q[ends] - harmony.chord_bounds_q[starts], 3)
    pad = part_notes(onsets, durations, voicings[starts].ravel(), np.zeros(len(onsets)))
    return pad._replace(velocity=shape_velocity(rng, timeline, dynamics, pad.onset_q, 40.0, 30.0, 0.0))
