"""MGEval's features as its toolbox computes them: the `--protocol=mgeval` report.

Yang & Lerch's toolbox (github.com/RichardYang40148/mgeval, `mgeval/core.py`) reads a
file twice, through pretty_midi (seconds) and through python-midi (ticks, one track, event
order). This module re-derives each feature in NumPy from a symusic Score, so that its
numbers can stand beside MGEval-based papers. Feature by feature:

  PC   distinct pitches whose velocity-weighted piano roll (pretty_midi `get_piano_roll`,
       fs = 100 frames/s) is non-zero. A note covers frames int(start*100)..int(end*100)-1,
       so a note shorter than one frame may cover none and is then not counted.
  PR   highest minus lowest pitch of that piano roll, in semitones.
  PCH  the piano roll summed over time (velocity x 10 ms frames), folded to 12 pitch
       classes, divided by its total.
  PCTM pretty_midi's `get_pitch_class_transition_matrix`: per track, every ordered pair
       of notes (i, j), i == j included, with |end_i - start_j| < 0.05 s adds one count at
       (class_i, class_j); raw counts (MGEval's `normalize=0`), summed over tracks.
  NC   the number of notes (note-ons with velocity > 0).
  PI   mean |pitch difference| of consecutive note-ons, in semitones.
  IOI  pretty_midi `get_onsets`: every note's onset in seconds, all tracks, sorted,
       chord notes repeated; the mean of their differences.
  NLH  each note's length in ticks goes to the nearest of 12 classes measured in units of
       bar / 96 (96, 48, 24, 12, 6, 72, 36, 18, 9, 32, 16, 8 units: whole ... 8th
       triplet), the bar being that of the time signature in force at the onset; the
       class counts divided by their total.
  NLTM the same classes, one count per consecutive pair of notes; raw counts.

Where MGEval's code cannot be followed literally, this module does as follows:
  * Tracks. MGEval reads pretty_midi's first instrument (PC, PR, PCH) or one python-midi
    track (NC, PI, NLH, NLTM; its `__main__` passes track 0, the tempo track of a type-1
    file, which then has no notes). Here the piano roll is summed over every non-drum
    track (pretty_midi's `PrettyMIDI.get_piano_roll`), PCTM is summed over non-drum
    tracks (`PrettyMIDI.get_pitch_class_transition_matrix`), NC and IOI count every note
    of every track, drums included, and PI, NLH and NLTM read the non-drum notes of all
    tracks merged. On one-track piano files all of these agree with MGEval.
  * Note order. MIDI event order is not kept by symusic: PI and NLTM read notes by onset,
    then pitch (a chord bottom-up).
  * Piano roll. As pretty_midi >= 0.2.9 by default: between a sustain-pedal press (CC 64
    >= 64) and its release, each pitch keeps the running maximum of its roll. Pitch bends
    are ignored (pretty_midi shifts rows by them). Seconds come from the tempo map as
    pretty_midi computes them (120 qpm before the first tempo).
  * Degenerate pieces get NaN, never a number MGEval would crash on or fill with zeros:
    PC, PR, PCH and NLH need a non-drum note (PC and PR a non-empty piano roll; MGEval's
    PR raises on an empty one, its PCH and NLH divide 0 by 0); PI and NLTM need two
    non-drum notes, PCTM a non-drum track with two notes (pretty_midi returns zeros
    otherwise); IOI needs two notes (MGEval takes the mean of an empty array). The
    report excludes such pieces from that feature and counts them.
  * Per-bar features (PC/bar, NC/bar, PCH/bar) are not computed: MGEval's `__main__`
    drops them unless --num-bar is given, and its code for them indexes arrays with
    Python 2 division, assumes 120 bpm and one time signature, and fails to reshape
    pieces longer than num_bar bars. The project protocol has per-bar features.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import symusic

from evaluation.features import FEATURE_ABBREVIATIONS

NUM_PITCH_CLASSES = 12
FRAMES_PER_SECOND = 100  # pretty_midi get_piano_roll(fs=100)
TRANSITION_SECONDS = 0.05  # pretty_midi's time_thresh
SUSTAIN_PEDAL, PEDAL_THRESHOLD = 64, 64
DEFAULT_MICROSECONDS_PER_QUARTER = 500_000  # 120 qpm
# Note-length classes in units of bar / 96, in MGEval's order.
NOTE_LENGTH_UNITS = np.array([96, 48, 24, 12, 6, 72, 36, 18, 9, 32, 16, 8], np.float64)

# The features MGEval's `__main__` reports without --num-bar: the papers' table.
PAPER_FEATURES = {name: FEATURE_ABBREVIATIONS[name] for name in (
    "total_used_pitch", "total_used_note", "pitch_class_histogram", "pitch_class_transition_matrix",
    "pitch_range", "avg_pitch_interval", "avg_ioi", "note_length_histogram",
    "note_length_transition_matrix")}


@dataclasses.dataclass(frozen=True)
class TrackNotes:
    """One track's notes in score order, with times in ticks and in seconds.

    Attributes:
      onset_ticks, duration_ticks, pitch, velocity: int64 [num_notes].
      onset_s, end_s: float64 [num_notes], from the tempo map.
      is_drum: the track is a drum track.
      sustain_s, sustain_value: float64 / int64 [num_events], the CC 64 events in order.
    """

    onset_ticks: np.ndarray
    duration_ticks: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    onset_s: np.ndarray
    end_s: np.ndarray
    is_drum: bool
    sustain_s: np.ndarray
    sustain_value: np.ndarray


def seconds_of_ticks(ticks: np.ndarray, tempos: np.ndarray, ticks_per_quarter: int) -> np.ndarray:
    """Seconds of each tick under a tempo map, as pretty_midi maps them.

    Args:
      ticks: any ticks, float64 or int.
      tempos: int64 [num_tempos, 2] rows (tick, microseconds per quarter), any order;
        120 qpm holds before the first one.
    """
    tempos = np.asarray(tempos, np.int64).reshape(-1, 2)
    tempos = tempos[np.argsort(tempos[:, 0], kind="stable")]
    if not tempos.size or tempos[0, 0] > 0:
        tempos = np.vstack([[0, DEFAULT_MICROSECONDS_PER_QUARTER], tempos])
    # Of two tempos on one tick, the later one holds.
    last = np.r_[tempos[1:, 0] != tempos[:-1, 0], True]
    start_tick, mspq = tempos[last, 0].astype(np.float64), tempos[last, 1]
    seconds_per_tick = 60.0 / ((6e7 / mspq) * ticks_per_quarter)
    start_s = np.r_[0.0, np.cumsum(np.diff(start_tick) * seconds_per_tick[:-1])]
    segment = np.searchsorted(start_tick, ticks, side="right") - 1
    return start_s[segment] + (np.asarray(ticks, np.float64) - start_tick[segment]) * seconds_per_tick[segment]


@dataclasses.dataclass(frozen=True)
class MgevalPiece:
    """What the MGEval features read of one score: its tracks and its meter."""

    tracks: list[TrackNotes]
    ticks_per_quarter: int
    time_signatures: np.ndarray  # int64 [num, 3]: (tick, numerator, denominator)

    @property
    def melodic(self) -> list[TrackNotes]:
        return [track for track in self.tracks if not track.is_drum and track.pitch.size]


def mgeval_piece(score: symusic.Score) -> MgevalPiece:
    """Read the tracks, tempo map and time signatures of a score (any time unit)."""
    if score.ttype != symusic.TimeUnit.tick:
        score = score.to(symusic.TimeUnit.tick)
    tpq = int(score.ticks_per_quarter)
    tempos = np.array([(t.time, t.mspq) for t in score.tempos], np.int64).reshape(-1, 2)
    tracks = []
    for track in score.tracks:
        columns = track.notes.numpy()
        onset, duration, pitch, velocity = (np.asarray(columns[key]).astype(np.int64)
                                            for key in ("time", "duration", "pitch", "velocity"))
        order = np.lexsort((pitch, onset))  # score order; symusic keeps no event order
        onset, duration, pitch, velocity = onset[order], duration[order], pitch[order], velocity[order]
        controls = track.controls.numpy()
        sustain = np.asarray(controls["number"]) == SUSTAIN_PEDAL
        sustain_ticks = np.asarray(controls["time"])[sustain].astype(np.int64)
        tracks.append(TrackNotes(
            onset_ticks=onset, duration_ticks=duration, pitch=pitch, velocity=velocity,
            onset_s=seconds_of_ticks(onset, tempos, tpq),
            end_s=seconds_of_ticks(onset + duration, tempos, tpq), is_drum=bool(track.is_drum),
            sustain_s=seconds_of_ticks(sustain_ticks, tempos, tpq),
            sustain_value=np.asarray(controls["value"])[sustain].astype(np.int64)))
    signatures = np.array([(s.time, s.numerator, s.denominator) for s in score.time_signatures],
                          np.int64).reshape(-1, 3)
    return MgevalPiece(tracks=tracks, ticks_per_quarter=tpq, time_signatures=signatures)


def _pedal_intervals(track: TrackNotes) -> list[tuple[int, int]]:
    """Frames [press, release) of each sustain-pedal hold, as pretty_midi reads CC 64."""
    intervals, pressed_at = [], None
    # Plain floats: a loop over NumPy scalars costs more than the rest of the feature.
    for time_s, value in zip(track.sustain_s.tolist(), track.sustain_value.tolist()):
        frame = int(time_s * FRAMES_PER_SECOND)
        if pressed_at is None and value >= PEDAL_THRESHOLD:
            pressed_at = frame
        elif pressed_at is not None and value < PEDAL_THRESHOLD:
            intervals.append((pressed_at, frame))
            pressed_at = None
    return intervals


def _pedal_gains(start: np.ndarray, stop: np.ndarray, track: TrackNotes,
                 holds: np.ndarray) -> np.ndarray:
    """What the pedal holds add to each pitch's roll sum (running maximum minus the roll), [128].

    Inside one hold a pitch's roll is a step function that changes only where a note
    starts or stops, so the running maximum is taken over those steps, for all (pitch,
    hold) groups at once, instead of over 10 ms frames hold by hold.

    Args:
      start, stop: each note's first and end frame.
      holds: int64 [num_holds, 2], (press, release) frames, in time order, not overlapping.
    """
    press, release = holds[:, 0], holds[:, 1]
    # Holds overlapping each note: press before its stop and release after its start.
    first = np.searchsorted(release, start, side="right")
    counts = np.where(stop > start, np.maximum(np.searchsorted(press, stop, side="left") - first, 0), 0)
    note = np.repeat(np.arange(start.size), counts)
    hold = np.repeat(first, counts) + np.arange(note.size) - np.repeat(np.cumsum(counts) - counts, counts)
    low, high = np.maximum(start[note], press[hold]), np.minimum(stop[note], release[hold])
    note, hold, low, high = note[high > low], hold[high > low], low[high > low], high[high > low]
    if not note.size:
        return np.zeros(128)
    group = np.tile(track.pitch[note] * holds.shape[0] + hold, 2)
    frame = np.concatenate([low, high])
    delta = np.concatenate([track.velocity[note], -track.velocity[note]])
    # Within a frame, releases before onsets: no step shows a sum the roll never holds.
    order = np.lexsort((delta, frame, group))
    group, frame, delta = group[order], frame[order], delta[order]
    value = np.cumsum(delta)  # each group's deltas sum to 0, so every group starts from 0
    last = np.r_[group[1:] != group[:-1], True]
    step_end = np.where(last, release[group % holds.shape[0]], np.r_[frame[1:], 0])
    # A running maximum that restarts per group: lift each group above all earlier ones.
    lift = np.cumsum(np.r_[True, last[:-1]]) * (int(value.max()) + 1)
    peak = np.maximum.accumulate(value + lift) - lift
    return np.bincount(group // holds.shape[0], weights=(peak - value) * (step_end - frame), minlength=128)


def _track_roll_sums(track: TrackNotes) -> np.ndarray:
    """One non-drum track's piano roll (velocity x 10 ms frames) summed over time, float64 [128].

    Without the pedal a note adds velocity x frames covered; the pedal holds then add their
    gain. Holds never overlap, so this equals summing pretty_midi's roll, without the roll.
    """
    end_time = max(float(track.end_s.max()), float(track.sustain_s.max(initial=0.0)))
    num_frames = int(FRAMES_PER_SECOND * end_time)
    start = (track.onset_s * FRAMES_PER_SECOND).astype(np.int64)
    stop = np.minimum((track.end_s * FRAMES_PER_SECOND).astype(np.int64), num_frames)
    sums = np.bincount(track.pitch, weights=track.velocity * np.maximum(stop - start, 0), minlength=128)
    holds = np.array(_pedal_intervals(track), np.int64).reshape(-1, 2)
    holds = holds[holds[:, 1] > holds[:, 0]]
    if holds.size:
        sums = sums + _pedal_gains(start, stop, track, holds)
    return sums.astype(np.float64)


def piano_roll_sums(piece: MgevalPiece) -> np.ndarray:
    """The velocity-weighted piano roll of all non-drum tracks, summed over time, float64 [128]."""
    return sum((_track_roll_sums(track) for track in piece.melodic), np.zeros(128))


def _merged_melodic(piece: MgevalPiece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset ticks, duration ticks and pitch of every non-drum note, by onset then pitch."""
    tracks = piece.melodic
    if not tracks:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    onset, duration, pitch = (np.concatenate([getattr(t, key) for t in tracks])
                              for key in ("onset_ticks", "duration_ticks", "pitch"))
    order = np.lexsort((pitch, onset))
    return onset[order], duration[order], pitch[order]


def note_length_classes(piece: MgevalPiece) -> np.ndarray:
    """Index into NOTE_LENGTH_UNITS of each non-drum note (merged order), int64."""
    onset, duration, _ = _merged_melodic(piece)
    signatures = piece.time_signatures
    signatures = signatures[np.argsort(signatures[:, 0], kind="stable")]
    numerator, denominator = np.full(onset.size, 4), np.full(onset.size, 4)
    if signatures.size:
        in_force = np.searchsorted(signatures[:, 0], onset, side="right") - 1
        has = in_force >= 0
        numerator[has], denominator[has] = signatures[in_force[has], 1], signatures[in_force[has], 2]
    invalid = (numerator < 1) | (denominator < 1)  # a broken meter reads as 4/4, as in `notes`
    numerator[invalid], denominator[invalid] = 4, 4
    unit_ticks = numerator * piece.ticks_per_quarter * 4 / denominator / 96.0
    distance_NxC = np.abs(unit_ticks[:, None] * NOTE_LENGTH_UNITS[None, :] - duration[:, None])
    return distance_NxC.argmin(axis=1)  # the first class on a tie, as argmin in MGEval


def _nan(shape: tuple[int, ...] = ()) -> np.ndarray:
    return np.full(shape, np.nan)


def _transition_counts(classes: np.ndarray, num_classes: int) -> np.ndarray:
    pairs = classes[:-1] * num_classes + classes[1:]
    return np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, num_classes).astype(np.float64)


def pitch_class_transition_counts(track: TrackNotes) -> np.ndarray:
    """pretty_midi's transition matrix of one track: pairs with |end_i - start_j| < 50 ms."""
    order = np.argsort(track.onset_s, kind="stable")
    starts, start_class = track.onset_s[order], track.pitch[order] % NUM_PITCH_CLASSES
    # Candidates from sorted starts (a margin for rounding), then pretty_midi's exact test.
    low = np.searchsorted(starts, track.end_s - TRANSITION_SECONDS - 1e-9, side="left")
    high = np.searchsorted(starts, track.end_s + TRANSITION_SECONDS + 1e-9, side="right")
    counts = high - low
    source = np.repeat(np.arange(track.end_s.size), counts)
    target = np.repeat(low, counts) + np.arange(source.size) - np.repeat(np.cumsum(counts) - counts, counts)
    close = np.abs(track.end_s[source] - starts[target]) < TRANSITION_SECONDS
    cells = (track.pitch[source[close]] % NUM_PITCH_CLASSES) * NUM_PITCH_CLASSES + start_class[target[close]]
    return np.bincount(cells, minlength=NUM_PITCH_CLASSES ** 2).reshape(
        NUM_PITCH_CLASSES, NUM_PITCH_CLASSES).astype(np.float64)


def _pitch_features(piece: MgevalPiece) -> dict[str, np.ndarray]:
    """PC, PR and PCH from the piano roll; NaN when the roll is empty."""
    sums = piano_roll_sums(piece)
    used = np.nonzero(sums > 0)[0]
    if not used.size:
        return {"total_used_pitch": _nan(), "pitch_range": _nan(),
                "pitch_class_histogram": _nan((NUM_PITCH_CLASSES,))}
    histogram = np.bincount(np.arange(128) % NUM_PITCH_CLASSES, weights=sums, minlength=NUM_PITCH_CLASSES)
    return {"total_used_pitch": np.float64(used.size), "pitch_range": np.float64(used[-1] - used[0]),
            "pitch_class_histogram": histogram / histogram.sum()}


def mgeval_features(score: symusic.Score) -> dict[str, np.ndarray]:
    """MGEval's nine whole-piece features of one score, keyed as in PAPER_FEATURES.

    Undefined features (see the module doc) are NaN, shaped as the feature.
    """
    piece = mgeval_piece(score)
    all_onsets_s = np.sort(np.concatenate([t.onset_s for t in piece.tracks] + [np.zeros(0)]))
    _, _, pitch = _merged_melodic(piece)
    classes = note_length_classes(piece)
    num_classes = NOTE_LENGTH_UNITS.size
    pctm_tracks = [t for t in piece.melodic if t.pitch.size >= 2]
    values = {
        **_pitch_features(piece),
        "total_used_note": np.float64(all_onsets_s.size),
        "pitch_class_transition_matrix": (
            sum(pitch_class_transition_counts(t) for t in pctm_tracks) if pctm_tracks
            else _nan((NUM_PITCH_CLASSES, NUM_PITCH_CLASSES))),
        "avg_pitch_interval": np.abs(np.diff(pitch)).mean() if pitch.size >= 2 else _nan(),
        "avg_ioi": np.diff(all_onsets_s).mean() if all_onsets_s.size >= 2 else _nan(),
        "note_length_histogram": (np.bincount(classes, minlength=num_classes) / classes.size
                                  if classes.size else _nan((num_classes,))),
        "note_length_transition_matrix": (_transition_counts(classes, num_classes) if classes.size >= 2
                                          else _nan((num_classes, num_classes))),
    }
    return {name: np.asarray(values[name], np.float64) for name in PAPER_FEATURES}
