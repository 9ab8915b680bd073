"""Event tables: what the tokens hold, as NumPy columns. The data model every path shares.

An EventTable is the quantized content of a piece: bars, and one row per tempo change,
sustain-pedal press and note, in token order; a TableBatch is the tables of many pieces
concatenated. The path of a note:

    Score --quantize.scores_to_tables--> TableBatch --encode.encode_tables--> ids
    ids --decode.parse_batch--> TableBatch --render.tables_to_scores--> Score
"""
from __future__ import annotations

import dataclasses

import numpy as np
import symusic

from pertok.errors import EmptyScoreError, InvalidScoreError
from pertok.timing import BarMap
from pertok.vocab import Vocabulary

TEMPO, PEDAL, NOTE = 0, 1, 2  # event kinds, in their order at one grid position
MAX_QPM = 2000.0  # tempos above this (or below MIN_QPM) are treated as corrupt files
MIN_QPM = 1.0


@dataclasses.dataclass
class EventTable:
    """Quantized events of a piece, sorted in token order.

    Columns (one row per event): kind (TEMPO/PEDAL/NOTE), bar, position (ticks after the bar
    line, on the union grid), microtiming (signed bin), program (MIDI program or
    DRUM_PROGRAM; tempo rows -2), pitch, velocity (index of the Velocity token),
    duration (ticks, a sum of Duration token values), tempo (index of the Tempo token).
    """

    bars: BarMap
    kind: np.ndarray
    bar: np.ndarray
    position: np.ndarray
    microtiming: np.ndarray
    program: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    duration: np.ndarray
    tempo: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "bars"}


@dataclasses.dataclass
class TableBatch:
    """EventTables of several pieces, concatenated.

    `table.bar` indexes the concatenated bars; piece i owns bars
    `bar_offsets[i]:bar_offsets[i + 1]` and rows `event_offsets[i]:event_offsets[i + 1]`.
    """

    table: EventTable
    bar_offsets: np.ndarray  # int64 [num_pieces + 1]
    event_offsets: np.ndarray  # int64 [num_pieces + 1]
    # Each event's Duration tokens when the builder already has them (`timing.split_durations`
    # of table.duration: number of largest tokens, index of the last or -1), else None.
    duration_tokens: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.bar_offsets) - 1

    @classmethod
    def of(cls, table: EventTable) -> "TableBatch":
        """A batch of one piece: the per-file calls are the batched ones on this."""
        return cls(table, np.array([0, len(table.bars.starts)], np.int64), np.array([0, len(table)], np.int64))

    def meter_starts(self) -> np.ndarray:
        """[num bars] Bars that begin a meter: each piece's first bar and each change of TimeSig."""
        signature, first_bars = self.table.bars.time_signature, self.bar_offsets[:-1]
        starts = np.ones(len(signature), bool)
        starts[1:] = signature[1:] != signature[:-1]
        starts[first_bars[first_bars < len(signature)]] = True
        return starts

    def item(self, index: int) -> EventTable:
        """Piece `index` as a plain EventTable (bars counted from its first bar)."""
        bars, rows = slice(*self.bar_offsets[index:index + 2]), slice(*self.event_offsets[index:index + 2])
        table = self.table
        columns = {name: column[rows] for name, column in table.columns().items()}
        columns["bar"] = columns["bar"] - self.bar_offsets[index]
        return EventTable(bars=BarMap(table.bars.starts[bars], table.bars.lengths[bars],
                                      table.bars.time_signature[bars]), **columns)


def four_four_index(vocab: Vocabulary) -> int:
    """TimeSig index of 4/4 (-1 when TimeSig tokens are off or 4/4 has none)."""
    return vocab.time_signatures.index((4, 4)) if (4, 4) in vocab.time_signatures else -1


def check_score(score: symusic.Score) -> None:
    """Refuse scores with absurd resolution or tempo, and scores without notes."""
    if not 1 <= score.ticks_per_quarter <= 32767:
        raise InvalidScoreError(f"ticks per quarter {score.ticks_per_quarter} outside 1..32767")
    mspq = score.tempos.numpy()["mspq"].astype(np.float64)
    if len(mspq) and (mspq.min() <= 0 or not MIN_QPM <= (6e7 / mspq).min() <= (6e7 / mspq).max() <= MAX_QPM):
        raise InvalidScoreError(
            f"tempo outside {MIN_QPM:g}..{MAX_QPM:g} quarter notes per minute")
    if score.note_num() == 0:
        raise EmptyScoreError("the score has no notes")
