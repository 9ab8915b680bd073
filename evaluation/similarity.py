"""How close a variation stays to its input, as MuseMorphose (Wu & Yang) measures it.

Chroma similarity and groove similarity compare bar k of the input with bar k of the
variation and average over bars:
  sim_chr = mean_k cos(r_k, r'_k), r_k = onset count of each of the 12 pitch classes in bar k;
  sim_grv = mean_k cos(g_k, g'_k), g_k = binary vector of the onset positions in bar k,
            on a grid of `positions_per_beat` per beat (4: MuseMorphose's 16 per 4/4 bar).
Choices made here: the result is in [0, 1] (the paper prints it x100); a bar empty in both
pieces counts as identical (1) and a bar empty in only one as unrelated (0); pieces of
different lengths are compared over the longer one, so missing bars count as 0. Each
piece's bars come from its own time-signature map.

Chroma and entropy skip drum notes; the groove keeps them.

Pitch-class entropy is MusDr's H: the base-2 entropy of the pitch-class histogram of note
onsets, averaged over every window of `window_bars` consecutive bars (hop one bar) that
holds notes; a piece shorter than the window is one window.
"""
from __future__ import annotations

import numpy as np
import symusic

from evaluation.features import NUM_PITCH_CLASSES
from evaluation.notes import PieceNotes, piece_notes


def _as_notes(piece: symusic.Score | PieceNotes) -> PieceNotes:
    return piece if isinstance(piece, PieceNotes) else piece_notes(piece)


def bar_chroma(notes: PieceNotes) -> np.ndarray:
    """Onset count per pitch class in each bar with music, float64 [num_bars, 12] (no drums)."""
    num_bars = notes.num_bars_with_music()
    melodic = notes.melodic
    cells = melodic.bar_of_onset * NUM_PITCH_CLASSES + melodic.pitch % NUM_PITCH_CLASSES
    counts = np.bincount(cells, minlength=num_bars * NUM_PITCH_CLASSES)
    return counts.reshape(num_bars, NUM_PITCH_CLASSES).astype(np.float64)


def bar_groove(notes: PieceNotes, positions_per_beat: int = 4) -> np.ndarray:
    """Which grid positions of each bar hold an onset (drums too), float64 0/1 [bars, positions].

    Onsets go to the nearest grid position counted from their bar line; one that rounds
    onto the next bar line is that bar's downbeat. The width is that of the longest bar;
    shorter bars leave their tail at 0.
    """
    if notes.num_notes == 0:
        return np.zeros((0, 1))
    bar = notes.bar_of_onset
    bar_start = notes.bar_lines_ticks[bar]
    positions_per_tick = positions_per_beat / notes.ticks_per_quarter
    positions_in_bar = np.maximum(
        np.round((notes.bar_lines_ticks[bar + 1] - bar_start) * positions_per_tick), 1).astype(np.int64)
    position = np.round((notes.onset_ticks - bar_start) * positions_per_tick).astype(np.int64)
    spills = position >= positions_in_bar
    bar, position = bar + spills, np.where(spills, 0, position)
    groove = np.zeros((int(bar.max()) + 1, int(positions_in_bar.max())))
    groove[bar, position] = 1.0
    return groove


def _mean_bar_cosine(bars_a: np.ndarray, bars_b: np.ndarray) -> float:
    """Mean over bars of the cosine of matching rows, padding the shorter piece."""
    num_bars = max(bars_a.shape[0], bars_b.shape[0])
    width = max(bars_a.shape[1], bars_b.shape[1])
    if num_bars == 0:
        return 1.0
    padded = []
    for bars in (bars_a, bars_b):
        full = np.zeros((num_bars, width))
        full[:bars.shape[0], :bars.shape[1]] = bars
        padded.append(full)
    a, b = padded
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_empty = (a.sum(axis=1) == 0) & (b.sum(axis=1) == 0)
    cosine = np.divide((a * b).sum(axis=1), norms, out=np.zeros(num_bars), where=norms > 0)
    return float(np.where(both_empty, 1.0, cosine).mean())


def chroma_similarity(input_piece: symusic.Score | PieceNotes,
                      variation: symusic.Score | PieceNotes) -> float:
    """MuseMorphose's sim_chr between an input and its variation, in [0, 1]."""
    return _mean_bar_cosine(bar_chroma(_as_notes(input_piece)), bar_chroma(_as_notes(variation)))


def groove_similarity(input_piece: symusic.Score | PieceNotes,
                      variation: symusic.Score | PieceNotes, positions_per_beat: int = 4) -> float:
    """MuseMorphose's sim_grv between an input and its variation, in [0, 1].

    Args:
      positions_per_beat: onset grid resolution; 4 gives 16 positions in a 4/4 bar.
    """
    return _mean_bar_cosine(bar_groove(_as_notes(input_piece), positions_per_beat),
                            bar_groove(_as_notes(variation), positions_per_beat))


def _entropy_bits(counts_WxC: np.ndarray) -> np.ndarray:
    totals = counts_WxC.sum(axis=1, keepdims=True)
    shares = counts_WxC / totals
    terms = np.where(shares > 0, shares * np.log2(np.where(shares > 0, shares, 1.0)), 0.0)
    return -terms.sum(axis=1)


def pitch_class_entropy(piece: symusic.Score | PieceNotes, window_bars: int | None = 4) -> float:
    """MusDr's pitch-class histogram entropy H, in bits (0 without notes).

    Args:
      window_bars: bars per window (MusDr reports 1 and 4); None for the whole piece.
    """
    chroma_BxC = bar_chroma(_as_notes(piece))
    if chroma_BxC.sum() == 0:
        return 0.0
    window = chroma_BxC.shape[0] if window_bars is None else min(window_bars, chroma_BxC.shape[0])
    cumulative = np.concatenate([np.zeros((1, NUM_PITCH_CLASSES)), np.cumsum(chroma_BxC, axis=0)])
    windows_WxC = cumulative[window:] - cumulative[:-window]
    windows_WxC = windows_WxC[windows_WxC.sum(axis=1) > 0]
    return float(_entropy_bits(windows_WxC).mean())
