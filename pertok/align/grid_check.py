"""Does a file's tick grid follow its beat? Said before its microtiming is taken for expression.

A performance recorded without a click (ASAP, MAESTRO, GiantMIDI: one tempo, 4/4) puts its
onsets anywhere between the points of PerTok's 16th/triplet grid, so its MicroTiming tokens are
spread over every bin; a file played to a click or quantized (Groove, a DAW export, a score, the
built-in corpus) keeps most onsets near one offset from the grid, even when a drummer plays
late. The statistic is the largest share of notes in three adjacent MicroTiming bins (1/32
beat); files at or below `GRIDLESS_PEAK` are said to follow no beat. Its distribution on the
shared folders: `benchmarks/grid_check.py` (docs/results/grid_check.md).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pertok.tokenizer import PerTok
from pertok.vocab import TokenType

GRIDLESS_PEAK = 0.27  # chosen on samples of the shared folders (see the module doc)
MIN_NOTES = 32  # fewer notes say nothing either way


@dataclasses.dataclass(frozen=True)
class GridCheck:
    notes: int
    peak_share: float  # the largest share of notes in three adjacent MicroTiming bins

    @property
    def follows_the_beat(self) -> bool:
        return self.notes < MIN_NOTES or self.peak_share > GRIDLESS_PEAK


def check_grid(ids: np.ndarray, tokenizer: PerTok) -> GridCheck:
    """The grid check of a full-view token sequence."""
    ids = np.asarray(ids)
    centre = tokenizer.type_ranges["MicroTiming"][0] + tokenizer.config.microtiming_bins // 2
    bins = ids[tokenizer.token_types(ids) == TokenType.MICROTIMING].astype(np.int64) - centre
    if not len(bins):
        return GridCheck(0, 1.0)
    half = tokenizer.config.microtiming_bins // 2
    counts = np.bincount(bins + half, minlength=2 * half + 1)
    windows = np.convolve(counts, np.ones(3), mode="valid")
    return GridCheck(int(len(bins)), float(windows.max() / len(bins)))
