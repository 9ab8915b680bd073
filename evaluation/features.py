"""MGEval features (Yang & Lerch 2018, "On the evaluation of generative models in music").

Where the paper or its toolbox leaves a choice, this module makes it as follows:
  * Notes are those of `PieceNotes`: every track merged, ordered by onset then pitch (a
    chord reads bottom-up); MGEval reads one track in MIDI event order. Pitch and
    note-length features skip drum tracks; the onset features (NC, NC/bar, IOI) keep them.
  * Times are in beats (quarter notes), not seconds, and bars come from the score's
    time-signature map (`notes.bar_lines_ticks`), not from a fixed 120 bpm and the last
    time signature as in MGEval's per-bar pitch-class histogram.
  * The pitch-class histograms weight each note by its duration (MGEval sums a piano
    roll; its velocity weighting is dropped so that dynamics do not move a pitch feature).
    Notes count for at least one tick so that a zero-length note is not lost.
  * The 12 note-length classes are fixed note values in quarters (see
    NOTE_LENGTH_CLASSES_BEATS), each length going to the nearest class. MGEval scales
    them by the bar (units of bar / 96), which agrees in 4/4 but in 3/4 files a quarter
    note (32 units) under "half-note triplet"; a quarter note should stay a quarter note.
  * Transition matrices (PCTM, NLTM) count consecutive notes of the ordered note list and
    are divided by their total (MGEval's normalize=2) so that pieces of different lengths
    compare; the note count (NC) keeps the length.
  * IOI is the mean gap between distinct onsets, so a chord is one onset (MGEval's
    pretty_midi onsets repeat chord notes, which turns the mean into span / (notes - 1)).
  * Per-bar variants exist for PC, NC and PCH, as in MGEval, over the first `num_bars`
    bars (pieces are cropped or padded with empty bars) so that all pieces share a shape.
  * A feature a piece cannot have is NaN, shaped as the feature, never zeros: without
    non-drum notes (a drum-only piece) PC, PR, PCH, NLH and the per-bar PC and PCH; with
    fewer than two non-drum notes PI, PCTM and NLTM; with fewer than two distinct onsets
    IOI. The report leaves such a piece out of that feature's distances and counts it.
"""
from __future__ import annotations

import numpy as np

from evaluation.notes import PieceNotes

NUM_PITCH_CLASSES = 12

# Whole, half, quarter, 8th, 16th; their dotted forms; half-, quarter- and 8th-note
# triplets; in quarter notes. MGEval's order, so a histogram bin means the same thing.
NOTE_LENGTH_CLASSES_BEATS = np.array(
    [4, 2, 1, 1 / 2, 1 / 4, 3, 3 / 2, 3 / 4, 3 / 8, 4 / 3, 2 / 3, 1 / 3], np.float64)
NOTE_LENGTH_CLASS_NAMES = (
    "whole", "half", "quarter", "8th", "16th", "dotted half", "dotted quarter",
    "dotted 8th", "dotted 16th", "half triplet", "quarter triplet", "8th triplet")

# Feature name -> the paper's abbreviation, in the order reports list them.
FEATURE_ABBREVIATIONS = {
    "total_used_pitch": "PC",
    "bar_used_pitch": "PC/bar",
    "total_used_note": "NC",
    "bar_used_note": "NC/bar",
    "pitch_class_histogram": "PCH",
    "bar_pitch_class_histogram": "PCH/bar",
    "pitch_class_transition_matrix": "PCTM",
    "pitch_range": "PR",
    "avg_pitch_interval": "PI",
    "avg_ioi": "IOI",
    "note_length_histogram": "NLH",
    "note_length_transition_matrix": "NLTM",
}


def total_used_pitch(notes: PieceNotes) -> float:
    """PC: the number of distinct pitches (drums skipped; NaN without such notes)."""
    if not notes.melodic.num_notes:
        return np.nan
    return float(np.count_nonzero(np.bincount(notes.melodic.pitch, minlength=128)))


def total_used_note(notes: PieceNotes) -> float:
    """NC: the number of notes, drums included."""
    return float(notes.num_notes)


def pitch_range(notes: PieceNotes) -> float:
    """PR: highest minus lowest pitch, in semitones (drums skipped; NaN without notes)."""
    pitch = notes.melodic.pitch
    return float(pitch.max() - pitch.min()) if pitch.size else np.nan


def avg_pitch_interval(notes: PieceNotes) -> float:
    """PI: mean absolute interval between consecutive notes, in semitones (drums skipped)."""
    pitch = notes.melodic.pitch
    return float(np.abs(np.diff(pitch)).mean()) if pitch.size >= 2 else np.nan


def avg_ioi(notes: PieceNotes) -> float:
    """IOI: mean gap between consecutive distinct onsets, in beats (drums included)."""
    if notes.num_notes < 2:
        return np.nan
    # Onsets are sorted, so a chord's repeats are the zero steps.
    onsets = notes.onset_ticks[np.r_[True, np.diff(notes.onset_ticks) != 0]]
    if onsets.size < 2:
        return np.nan
    return float(np.diff(onsets).mean() / notes.ticks_per_quarter)


def _normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.full(counts.shape, np.nan)


def _held_ticks(notes: PieceNotes) -> np.ndarray:
    return np.maximum(notes.duration_ticks, 1).astype(np.float64)


def pitch_class_histogram(notes: PieceNotes) -> np.ndarray:
    """PCH: duration-weighted share of each pitch class, float64 [12] (drums skipped)."""
    melodic = notes.melodic
    counts = np.bincount(melodic.pitch % NUM_PITCH_CLASSES, weights=_held_ticks(melodic),
                         minlength=NUM_PITCH_CLASSES)
    return _normalised(counts)


def _transition_matrix(classes: np.ndarray, num_classes: int) -> np.ndarray:
    if classes.size < 2:
        return np.full((num_classes, num_classes), np.nan)
    pairs = classes[:-1] * num_classes + classes[1:]
    counts = np.bincount(pairs, minlength=num_classes * num_classes).astype(np.float64)
    return _normalised(counts).reshape(num_classes, num_classes)


def pitch_class_transition_matrix(notes: PieceNotes) -> np.ndarray:
    """PCTM: share of each (pitch class -> next pitch class) step, float64 [12, 12]."""
    return _transition_matrix(notes.melodic.pitch % NUM_PITCH_CLASSES, NUM_PITCH_CLASSES)


_CLASS_ORDER = np.argsort(NOTE_LENGTH_CLASSES_BEATS)
_CLASS_MIDPOINTS_BEATS = np.convolve(NOTE_LENGTH_CLASSES_BEATS[_CLASS_ORDER], [0.5, 0.5], "valid")


def note_length_classes(notes: PieceNotes) -> np.ndarray:
    """Index into NOTE_LENGTH_CLASSES_BEATS of each melodic note's nearest note value, int64.

    A length halfway between two values goes to the longer one.
    """
    beats = notes.melodic.duration_beats
    return _CLASS_ORDER[np.searchsorted(_CLASS_MIDPOINTS_BEATS, beats, side="right")]


def note_length_histogram(notes: PieceNotes) -> np.ndarray:
    """NLH: share of notes in each of the 12 note-length classes, float64 [12] (drums skipped)."""
    counts = np.bincount(note_length_classes(notes), minlength=NOTE_LENGTH_CLASSES_BEATS.size)
    return _normalised(counts.astype(np.float64))


def note_length_transition_matrix(notes: PieceNotes) -> np.ndarray:
    """NLTM: share of each (length class -> next length class) step, float64 [12, 12]."""
    return _transition_matrix(note_length_classes(notes), NOTE_LENGTH_CLASSES_BEATS.size)


def _bar_of_onsets(notes: PieceNotes, num_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar index of the notes starting in the first `num_bars` bars, and their mask."""
    bar = notes.bar_of_onset
    in_range = bar < num_bars
    return bar[in_range], in_range


def bar_used_note(notes: PieceNotes, num_bars: int) -> np.ndarray:
    """NC per bar: notes (drums included) starting in each of the first `num_bars` bars."""
    bar, _ = _bar_of_onsets(notes, num_bars)
    return np.bincount(bar, minlength=num_bars).astype(np.float64)


def bar_used_pitch(notes: PieceNotes, num_bars: int) -> np.ndarray:
    """PC per bar: distinct pitches starting in each bar, float64 [num_bars] (drums skipped)."""
    melodic = notes.melodic
    if not melodic.num_notes:
        return np.full(num_bars, np.nan)
    bar, in_range = _bar_of_onsets(melodic, num_bars)
    used_BxP = np.bincount(bar * 128 + melodic.pitch[in_range], minlength=num_bars * 128)
    return np.count_nonzero(used_BxP.reshape(num_bars, 128), axis=1).astype(np.float64)


def bar_pitch_class_histogram(notes: PieceNotes, num_bars: int) -> np.ndarray:
    """PCH per bar: pitch-class shares of the time sounding in each bar, float64 [num_bars, 12].

    A held note counts in every bar it sounds in, for the part it sounds there (MGEval
    slices a piano roll at the bar lines). An empty bar is all zeros. Drums skipped.
    """
    if notes.num_bars < num_bars:
        raise ValueError(f"piece has {notes.num_bars} bar lines laid, per-bar features need "
                         f"{num_bars}: build it with piece_notes(score, min_bars={num_bars})")
    melodic = notes.melodic
    if not melodic.num_notes:
        return np.full((num_bars, NUM_PITCH_CLASSES), np.nan)
    bar_lines = melodic.bar_lines_ticks[:num_bars + 1]
    starts_early = melodic.onset_ticks < bar_lines[-1]
    onset = melodic.onset_ticks[starts_early].astype(np.float64)
    release = onset + _held_ticks(melodic)[starts_early]
    sounding_NxB = np.clip(np.minimum(release[:, None], bar_lines[None, 1:])
                           - np.maximum(onset[:, None], bar_lines[None, :-1]), 0.0, None)
    pitch_class_NxC = np.eye(NUM_PITCH_CLASSES)[melodic.pitch[starts_early] % NUM_PITCH_CLASSES]
    histogram_BxC = sounding_NxB.T @ pitch_class_NxC
    totals = histogram_BxC.sum(axis=1, keepdims=True)
    return np.divide(histogram_BxC, totals, out=np.zeros_like(histogram_BxC), where=totals > 0)


def mgeval_features(notes: PieceNotes, num_bars: int) -> dict[str, np.ndarray]:
    """All MGEval features of one piece, keyed as in FEATURE_ABBREVIATIONS.

    Args:
      notes: the piece, laid with at least `num_bars` bars.
      num_bars: bars read by the per-bar variants.
    """
    values = {
        "total_used_pitch": total_used_pitch(notes),
        "bar_used_pitch": bar_used_pitch(notes, num_bars),
        "total_used_note": total_used_note(notes),
        "bar_used_note": bar_used_note(notes, num_bars),
        "pitch_class_histogram": pitch_class_histogram(notes),
        "bar_pitch_class_histogram": bar_pitch_class_histogram(notes, num_bars),
        "pitch_class_transition_matrix": pitch_class_transition_matrix(notes),
        "pitch_range": pitch_range(notes),
        "avg_pitch_interval": avg_pitch_interval(notes),
        "avg_ioi": avg_ioi(notes),
        "note_length_histogram": note_length_histogram(notes),
        "note_length_transition_matrix": note_length_transition_matrix(notes),
    }
    return {name: np.asarray(value, np.float64) for name, value in values.items()}
