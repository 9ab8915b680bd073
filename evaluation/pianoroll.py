"""Piano rolls a musician reads: pieces stacked on one beat axis and one pitch range.

Every row shares the x axis (beats from the start of the piece) and the pitch range of all
rows, so an input and its variations line up note for note. Bar lines are drawn per row (each
piece keeps its own meter); drum notes get their own lane under the pitched notes, one row per
drum sound, instead of being drawn as pitches among the melody. Colour is velocity; where a row
has a `split_beat` (a prompt and its continuation) the notes before it are drawn in grey.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from evaluation.notes import PieceNotes

_DPI = 100
_DRUM_GAP = 3  # semitone rows between the lowest pitched note and the drum lane
_MIN_SPAN = 12  # a piece of few pitches still gets an octave of room


@dataclass(frozen=True)
class RollRow:
    """One piece of a figure: its label, notes, and optionally the beat where its own part
    starts (notes before it, e.g. a prompt, are drawn grey)."""

    label: str
    notes: PieceNotes
    split_beat: float | None = None


def _beats(notes: PieceNotes, ticks: np.ndarray) -> np.ndarray:
    return np.asarray(ticks, np.float64) / notes.ticks_per_quarter


def _shown(notes: PieceNotes, num_bars: int) -> tuple[np.ndarray, float]:
    """Which notes fall in the first `num_bars` bars, and where those bars end (beats)."""
    end_tick = notes.bar_lines_ticks[min(num_bars, len(notes.bar_lines_ticks) - 1)]
    return notes.onset_ticks < end_tick, float(end_tick) / notes.ticks_per_quarter


def _pitch_range(rows: Sequence[RollRow], num_bars: int) -> tuple[int, int]:
    pitches = [row.notes.pitch[_shown(row.notes, num_bars)[0] & ~row.notes.is_drum] for row in rows]
    pitches = np.concatenate(pitches) if pitches else np.zeros(0, np.int64)
    low, high = (int(pitches.min()), int(pitches.max())) if pitches.size else (60, 72)
    middle = (low + high) / 2
    if high - low < _MIN_SPAN:
        low, high = int(middle - _MIN_SPAN / 2), int(middle + _MIN_SPAN / 2)
    return low, high


def _segments(onset: np.ndarray, length: np.ndarray, y: np.ndarray) -> np.ndarray:
    release = onset + np.maximum(length, 0.05)
    return np.stack([np.stack([onset, y], 1), np.stack([release, y], 1)], 1)


def _draw_row(axes, row: RollRow, num_bars: int, low: int, drum_sounds: np.ndarray) -> None:
    notes = row.notes
    shown, _ = _shown(notes, num_bars)
    onset = _beats(notes, notes.onset_ticks)
    length = _beats(notes, notes.duration_ticks)
    own = shown if row.split_beat is None else shown & (onset >= row.split_beat)
    before = shown & ~own
    pitched, drum = ~notes.is_drum, notes.is_drum
    # Drum sounds sit in a lane under the pitched notes: one row per sound used in the figure.
    drum_y = low - _DRUM_GAP - np.searchsorted(drum_sounds, notes.pitch).astype(np.float64)
    y = np.where(drum, drum_y, notes.pitch.astype(np.float64))
    length = np.where(drum, 0.12, length)  # a drum hit has no musical length: a short mark
    for selection, grey in ((before, True), (own, False)):
        for kind in (pitched, drum):
            picked = selection & kind
            if not picked.any():
                continue
            lines = LineCollection(_segments(onset[picked], length[picked], y[picked]),
                                   linewidths=2.5 if kind is pitched else 4.0)
            if grey:
                lines.set_color("0.6")
            else:
                lines.set_array(notes.velocity[picked].astype(np.float64))
                lines.set_cmap("viridis")
                lines.set_clim(1, 127)
            axes.add_collection(lines)
    for bar_line in _beats(notes, notes.bar_lines_ticks[:num_bars + 1]):
        axes.axvline(bar_line, color="0.8", linewidth=0.6, zorder=0)
    if row.split_beat is not None:
        axes.axvline(row.split_beat, color="tab:red", linewidth=1.0, linestyle="--")
    axes.set_title(row.label, fontsize="small", loc="left")


def write_piano_roll_figure(path: str | Path, rows: Sequence[RollRow], num_bars: int,
                            title: str = "") -> str:
    """Draw `rows` (first `num_bars` bars each) into one PNG at `path`; returns its file name.
    The title defaults to the file's name."""
    path = Path(path)
    figure = piano_roll_figure(rows, num_bars, title or path.stem)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)
    return path.name


def piano_roll_figure(rows: Sequence[RollRow], num_bars: int, title: str) -> Figure:
    """The figure of `write_piano_roll_figure`, one axes per row, top to bottom."""
    low, high = _pitch_range(rows, num_bars)
    drum_sounds = np.unique(np.concatenate(
        [row.notes.pitch[row.notes.is_drum] for row in rows] or [np.zeros(0, np.int64)]))
    bottom = low - _DRUM_GAP - len(drum_sounds) if drum_sounds.size else low - 2
    end_beat = max([_shown(row.notes, num_bars)[1] for row in rows] or [4.0])
    height = 1.9 * max(len(rows), 1) + 0.9
    figure = Figure(figsize=(11, height))
    figure.subplots_adjust(left=0.07, right=0.86, bottom=0.55 / height, top=1 - 0.6 / height, hspace=0.55)
    axes_list = [figure.add_subplot(len(rows), 1, i + 1) for i in range(len(rows))]
    for axes, row in zip(axes_list, rows):
        _draw_row(axes, row, num_bars, low, drum_sounds)
        axes.set(xlim=(0, end_beat), ylim=(bottom - 0.5, high + 2))
        _pitch_ticks(axes, low, high, drum_sounds)
        if drum_sounds.size:
            axes.axhspan(bottom - 0.5, low - _DRUM_GAP + 0.5, color="0.95", zorder=-1)
    if axes_list:
        axes_list[-1].set_xlabel("beats (quarter notes) from the start")
        _legend(figure, axes_list[0], any(row.split_beat is not None for row in rows))
    figure.suptitle(title, fontsize="medium")
    return figure


_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _pitch_ticks(axes, low: int, high: int, drum_sounds: np.ndarray) -> None:
    """Every C named (C4 = middle C), and the drum lane labelled as such."""
    ticks = [p for p in range(low, high + 1) if p % 12 == 0] or [low]
    labels = [f"{_NOTE_NAMES[p % 12]}{p // 12 - 1}" for p in ticks]
    if drum_sounds.size:
        ticks.append(low - _DRUM_GAP - (len(drum_sounds) - 1) / 2)
        labels.append("drums")
    axes.set_yticks(ticks, labels, fontsize="small")


def _legend(figure: Figure, axes, has_split: bool) -> None:
    """Bar line and prompt keys above a velocity colour bar, right of the rolls."""
    handles = [Line2D([], [], color="0.8", linewidth=0.6, label="bar line")]
    if has_split:
        handles += [Line2D([], [], color="0.6", linewidth=2.5, label="prompt (given)"),
                    Line2D([], [], color="tab:red", linestyle="--", label="continuation starts")]
    figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.875, 0.98), fontsize="x-small")
    coloured = [c for a in figure.axes for c in a.collections if c.get_array() is not None]
    if coloured:
        bar = figure.colorbar(coloured[0], cax=figure.add_axes((0.89, 0.12, 0.015, 0.5)))
        bar.set_label("velocity", fontsize="small")
