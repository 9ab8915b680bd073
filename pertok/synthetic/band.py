"""The rhythm section of the synthetic corpus: drum grooves, bass lines and string pads."""
import numpy as np

from pertok.synthetic.parts import (Harmony, PartNotes, PhraseDynamics, chord_beat_ranges,
                                    close_voicing, concat_parts, part_notes, shape_velocity,
                                    steps_within)
from pertok.synthetic.timeline import Timeline, phrase_of

# General MIDI percussion keys.
KICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 44, 46, 49, 51
TOMS_HIGH_TO_LOW = np.array([50, 48, 47, 45, 43, 41])
# Bass line styles.
HELD_ROOTS, PULSE, EIGHTHS, WALKING = range(4)


def _subdivide(timeline: Timeline, beats: np.ndarray,
               step_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onsets that split each chosen beat into equal steps, and the beat each belongs to.

    Args:
      beats: indices of the beats to subdivide.
      step_q: (len(beats),) subdivision of each beat in quarter notes.
    """
    onsets, owners = [], []
    lengths = timeline.beat_length_q[beats]
    for length, step in sorted(set(zip(lengths.tolist(), step_q.tolist()))):
        chosen = beats[(lengths == length) & (step_q == step)]
        offsets = np.arange(0.0, length - 1e-9, step)
        onsets.append((timeline.beat_onset_q[chosen][:, None] + offsets).ravel())
        owners.append(np.repeat(chosen, len(offsets)))
    if not onsets:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(onsets), np.concatenate(owners)


def _cymbals(rng: np.random.Generator, timeline: Timeline, beats: np.ndarray) -> PartNotes:
    """Hi-hat or ride on every 8th or 16th; the hat opens on some bars' last off-beat, and
    under a ride the foot closes the hat on the snare beats."""
    phrase = phrase_of(timeline, timeline.beat_onset_q[beats])
    simple = timeline.beat_length_q[beats] != 1.5
    sixteenths = (rng.random(timeline.num_phrases) < 0.35)[phrase] & simple
    riding_phrase = rng.random(timeline.num_phrases) < 0.3
    onsets, owner = _subdivide(timeline, beats, np.where(sixteenths, 0.25, 0.5))
    offset = onsets - timeline.beat_onset_q[owner]
    riding = riding_phrase[phrase_of(timeline, onsets)]
    last_beat_of_bar = np.append(timeline.beat_bar[1:] != timeline.beat_bar[:-1], True)[owner]
    opens = last_beat_of_bar & (offset == 0.5) & (rng.random(len(onsets)) < 0.35) & ~riding
    pitch = np.where(riding, RIDE, np.where(opens, OPEN_HAT, CLOSED_HAT))
    # Loud on the beat, softer on the 8th off-beats, softest on the in-between 16ths.
    velocity = np.where(offset == 0, 78.0, np.where((offset * 2) % 1 == 0, 62.0, 48.0))
    foot = beats[riding_phrase[phrase] & (timeline.beat_drum_role[beats] == "S")]
    return concat_parts([
        part_notes(onsets, np.full(len(onsets), 0.0625), pitch, velocity),
        part_notes(timeline.beat_onset_q[foot], np.full(len(foot), 0.0625), np.full(len(foot), PEDAL_HAT),
                   np.full(len(foot), 55.0)),
    ])


def _kick_and_snare(rng: np.random.Generator, timeline: Timeline,
                    beats: np.ndarray) -> tuple[PartNotes, PartNotes]:
    """The meter's kick/snare skeleton with pickup kicks, and the snare's ghost notes.

    Returns:
      (kick and snare, ghost notes at velocity 15-35).
    """
    roles = timeline.beat_drum_role[beats]
    onsets = timeline.beat_onset_q[beats]
    pitch = np.where(roles == "K", KICK, SNARE)
    velocity = np.where(roles == "K", 100.0, 108.0)
    # A pickup kick inside some kick beats (the "and of 3" in a rock groove, the third 8th in 6/8).
    pickups = beats[(roles == "K") & (rng.random(len(beats)) < 0.3)]
    pickup_lengths = timeline.beat_length_q[pickups]
    pickup_offsets = np.where(pickup_lengths == 1.5, 1.0, pickup_lengths / 2)
    pickup_onsets = timeline.beat_onset_q[pickups] + pickup_offsets
    simple = timeline.beat_length_q[beats] != 1.5
    ghost_onsets, owner = _subdivide(timeline, beats, np.where(simple, 0.25, 0.5))
    ghost_density = rng.uniform(0.0, 0.35, timeline.num_phrases)[phrase_of(timeline, ghost_onsets)]
    off_beat = ghost_onsets > timeline.beat_onset_q[owner]
    ghosts = ghost_onsets[off_beat & (rng.random(len(ghost_onsets)) < ghost_density)]
    skeleton = concat_parts([
        part_notes(onsets, np.full(len(onsets), 0.125), pitch, velocity),
        part_notes(pickup_onsets, np.full(len(pickups), 0.125), np.full(len(pickups), KICK),
                   np.full(len(pickups), 88.0)),
    ])
    return skeleton, part_notes(ghosts, np.full(len(ghosts), 0.0625), np.full(len(ghosts), SNARE),
                                rng.uniform(15, 35, len(ghosts)))


def _fills_and_crashes(rng: np.random.Generator, timeline: Timeline) -> tuple[PartNotes, list[int]]:
    """Tom fills on the last beat of some phrases, crashes where sections and phrases begin.

    Returns:
      (notes, indices of the beats the fills occupy, which the groove leaves free).
    """
    fills, fill_beats = [], []
    for phrase in range(timeline.num_phrases):
        if rng.random() < 0.45:
            phrase_end = timeline.phrase_bounds_q[phrase + 1]
            beat = int(np.searchsorted(timeline.beat_onset_q, phrase_end - 1e-9)) - 1
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
    crashes = len(crash_onsets)
    fills.append(part_notes(crash_onsets, np.full(crashes, 0.5), np.full(crashes, CRASH),
                            np.full(crashes, 110.0)))
    return concat_parts(fills), fill_beats


def drum_part(rng: np.random.Generator, timeline: Timeline, dynamics: PhraseDynamics) -> PartNotes:
    """A groove for the whole piece: cymbals, kick/snare, ghost notes, fills and crashes."""
    fills, fill_beats = _fills_and_crashes(rng, timeline)
    groove_beats = np.setdiff1d(np.arange(len(timeline.beat_onset_q)), fill_beats)
    skeleton, ghosts = _kick_and_snare(rng, timeline, groove_beats)
    kit = concat_parts([_cymbals(rng, timeline, groove_beats), skeleton, fills])
    # Phrase arcs and metric accents ride on each instrument's own level; ghosts stay ghosts.
    shaped = kit.velocity + shape_velocity(rng, timeline, dynamics, kit.onset_q, -8.0, 12.0, 6.0)
    return concat_parts([kit._replace(velocity=shaped), ghosts])


def bass_part(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
              dynamics: PhraseDynamics, walking: bool) -> PartNotes:
    """A bass line on the chord roots: held roots, root-fifth pulses, eighths, or a walking line.

    Args:
      walking: walk in quarter notes through the chord tones, approaching each new root by a
        semitone (the whole piece); otherwise each phrase picks one of the other styles.
    """
    roots = 33 + (harmony.tonic_pc + harmony.chord_tones[:, 0] - 33) % 12  # A1..G#2
    start, end = harmony.chord_bounds_q[:-1], harmony.chord_bounds_q[1:]
    phrase_style = rng.integers(HELD_ROOTS, WALKING, timeline.num_phrases)
    style = np.full(len(start), WALKING) if walking else phrase_style[phrase_of(timeline, start)]
    first_beat, end_beat = chord_beat_ranges(timeline, harmony)
    held = np.flatnonzero(style == HELD_ROOTS)
    # Pulses and walks: one note per beat, indexed within the chord.
    by_beat = np.flatnonzero((style == PULSE) | (style == WALKING))
    owner, index = steps_within(end_beat[by_beat] - first_beat[by_beat])
    chord, beat = by_beat[owner], first_beat[by_beat][owner] + index
    chord_tones = roots[chord] + (harmony.chord_tones[chord, index % 3] - harmony.chord_tones[chord, 0])
    pulse_pitch = roots[chord] + np.array([0, 7, 12, 7])[index % 4]
    next_root = roots[np.minimum(chord + 1, len(roots) - 1)]
    approach = (beat == end_beat[chord] - 1) & (index > 0)  # last beat leads into the next root
    walk_pitch = np.where(approach, next_root + rng.choice([-1, 1], len(beat)), chord_tones)
    # Straight eighths on the root, jumping the octave on every fourth.
    eighths = np.flatnonzero(style == EIGHTHS)
    eighth_counts = np.ceil((end[eighths] - start[eighths]) / 0.5 - 1e-9).astype(np.int64)
    eighth_owner, eighth_index = steps_within(eighth_counts)
    eighth_chord = eighths[eighth_owner]
    walks = style[chord] == WALKING
    bass = concat_parts([
        part_notes(start[held], 0.95 * (end[held] - start[held]), roots[held], np.zeros(len(held))),
        part_notes(timeline.beat_onset_q[beat], np.where(walks, 0.95, 0.8) * timeline.beat_length_q[beat],
                   np.where(walks, walk_pitch, pulse_pitch), np.zeros(len(beat))),
        part_notes(start[eighth_chord] + 0.5 * eighth_index, np.full(len(eighth_chord), 0.4),
                   roots[eighth_chord] + 12 * (eighth_index % 4 == 3), np.zeros(len(eighth_chord))),
    ])
    return bass._replace(velocity=shape_velocity(rng, timeline, dynamics, bass.onset_q, 62.0, 18.0, 12.0))


def pad_part(rng: np.random.Generator, timeline: Timeline, harmony: Harmony,
             dynamics: PhraseDynamics) -> PartNotes:
    """Sustained string chords; a chord repeated across bars is held, not re-struck."""
    voicings = close_voicing((harmony.tonic_pc + harmony.chord_tones[:, :3]) % 12, 55)
    changes = np.append(True, np.any(voicings[1:] != voicings[:-1], axis=1))
    starts = np.flatnonzero(changes)
    ends = np.append(starts[1:], len(voicings))
    onsets = np.repeat(harmony.chord_bounds_q[starts], 3)
    durations = np.repeat(harmony.chord_bounds_q[ends] - harmony.chord_bounds_q[starts], 3)
    pad = part_notes(onsets, durations, voicings[starts].ravel(), np.zeros(len(onsets)))
    return pad._replace(velocity=shape_velocity(rng, timeline, dynamics, pad.onset_q, 40.0, 30.0, 0.0))
