"""PNG plots of a report: distance densities, OA bars, expressive histograms, piano rolls.

Figures are built with matplotlib's object API (Figure + Agg canvas), never pyplot, so
that writing a report neither needs a display nor changes the caller's backend.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from evaluation.expressive import MICROTIMING_BIN_EDGES_BEATS, NUM_VELOCITIES
from evaluation.notes import PieceNotes

_DPI = 100
_SET_COLOURS = {"generated": "tab:orange", "reference": "tab:blue", "inter": "tab:green"}


def _figure(width: float, height: float, left: float = 0.8, bottom: float = 0.55,
            top: float = 0.35, **adjust) -> Figure:
    """A figure with fixed margins in inches (tight_layout costs more than the drawing)."""
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - 0.15 / width, bottom=bottom / height,
                           top=1 - top / height, **adjust)
    return figure


def _save(figure: Figure, path: Path) -> str:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)
    return path.name


def write_distance_densities(path: Path, title: str, grid: np.ndarray,
                             densities: Mapping[str, np.ndarray], oa: float) -> str:
    """One feature's intra- and inter-set distance densities; returns the file name.

    Args:
      densities: label -> density on `grid`; labels "intra generated", "inter",
        "intra reference" pick their colour from the set they name.
    """
    figure = _figure(5, 3.2)
    axes = figure.add_subplot()
    for label, density in densities.items():
        colour = next(c for key, c in _SET_COLOURS.items() if key in label)
        axes.plot(grid, density, label=label, color=colour, linestyle="--" if "reference" in label else "-")
    axes.set(title=f"{title}  (OA {oa:.3f})", xlabel="distance", ylabel="density")
    axes.legend(fontsize="small")
    return _save(figure, path)


def write_overlap_bars(path: Path, overlap_by_feature: Mapping[str, float]) -> str:
    """Bar chart of the OA of every feature; returns the file name."""
    figure = _figure(max(6, 0.45 * len(overlap_by_feature)), 3.8, left=0.6, bottom=1.0)
    axes = figure.add_subplot()
    names = list(overlap_by_feature)
    axes.bar(range(len(names)), [overlap_by_feature[n] for n in names], color=_SET_COLOURS["inter"])
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="small")
    axes.set(ylim=(0, 1), ylabel="overlap area", title="OA of intra-set (generated) and inter-set distances")
    return _save(figure, path)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def write_velocity_histogram(path: Path, generated_counts: np.ndarray, reference_counts: np.ndarray,
                             oa: float) -> str:
    """Share of notes at each velocity in both sets; returns the file name."""
    figure = _figure(6, 3.2)
    axes = figure.add_subplot()
    velocities = np.arange(NUM_VELOCITIES)
    for name, counts in (("generated", generated_counts), ("reference", reference_counts)):
        axes.step(velocities, _shares(counts), where="mid", label=name, color=_SET_COLOURS[name])
    axes.set(title=f"velocity (OA {oa:.3f})", xlabel="MIDI velocity", ylabel="share of notes")
    axes.legend(fontsize="small")
    return _save(figure, path)


def write_microtiming_histogram(path: Path, generated_counts: np.ndarray,
                                reference_counts: np.ndarray, oa: float) -> str:
    """Share of notes in each microtiming bin in both sets; returns the file name."""
    figure = _figure(6, 3.2)
    axes = figure.add_subplot()
    centres = (MICROTIMING_BIN_EDGES_BEATS[:-1] + MICROTIMING_BIN_EDGES_BEATS[1:]) / 2
    width = np.diff(MICROTIMING_BIN_EDGES_BEATS)[0]
    for offset, name, counts in ((-0.2, "generated", generated_counts), (0.2, "reference", reference_counts)):
        axes.bar(centres + offset * width, _shares(counts), width=0.4 * width, label=name,
                 color=_SET_COLOURS[name])
    axes.set(title=f"microtiming: onset - nearest 16th/triplet (OA {oa:.3f})",
             xlabel="deviation (beats)", ylabel="share of notes")
    axes.legend(fontsize="small")
    return _save(figure, path)


def _draw_piano_roll(axes, notes: PieceNotes, num_bars: int, title: str) -> None:
    end_tick = notes.bar_lines_ticks[min(num_bars, notes.num_bars)]
    shown = notes.onset_ticks < end_tick
    onset = notes.onset_beats[shown]
    release = onset + np.maximum(notes.duration_beats[shown], 0.05)
    pitch = notes.pitch[shown]
    segments = np.stack([np.stack([onset, pitch], 1), np.stack([release, pitch], 1)], 1)
    lines = LineCollection(segments, linewidths=2.5, cmap="viridis", norm=None)
    lines.set_array(notes.velocity[shown].astype(np.float64))
    lines.set_clim(1, 127)
    axes.add_collection(lines)
    for bar_line in notes.bar_lines_ticks[:num_bars + 1] / notes.ticks_per_quarter:
        axes.axvline(bar_line, color="0.85", linewidth=0.5, zorder=0)
    low, high = (int(pitch.min()), int(pitch.max())) if pitch.size else (60, 72)
    axes.set(xlim=(0, end_tick / notes.ticks_per_quarter), ylim=(low - 2, high + 2), ylabel="pitch")
    axes.set_title(title, fontsize="small", loc="left")


def write_piano_rolls(path: Path, pieces: Sequence[tuple[str, PieceNotes]], num_bars: int) -> str:
    """Piano rolls of the first `num_bars` bars of each (title, notes); returns the file name.

    Colour is velocity (viridis, 1..127); grey lines are bar lines.
    """
    figure = _figure(10, 1.8 * max(len(pieces), 1), left=0.6, hspace=0.6)
    for row, (title, notes) in enumerate(pieces):
        _draw_piano_roll(figure.add_subplot(len(pieces), 1, row + 1), notes, num_bars, title)
    if pieces:
        figure.axes[-1].set_xlabel("beats")
    return _save(figure, path)
