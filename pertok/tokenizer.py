"""The PerTok tokenizer: scores to ids and back, two views, strict and lenient decoding."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import symusic

from pertok.batch import SCORE_TYPES, decode_batch, encode_batch, load_score
from pertok.config import PerTokConfig
from pertok.decode import DecodeReport, parse
from pertok.errors import PerTokConfigError, PerTokDecodeError, PerTokError, with_source
from pertok.quantize import score_to_table
from pertok.render import table_to_score
from pertok.vocab import TYPE_NAMES, TokenType, Vocabulary

ScoreLike = "str | os.PathLike | symusic.Score"
FORMAT_VERSION = 1


class PerTok:
    """PerTok: `[Bar [TimeSig]] [TimeShift] [Program] Pitch MicroTiming Velocity Duration` per note.

    Ids are deterministic for a config: PAD = 0, BOS = 1, EOS = 2, MASK = 3, then each token
    type in a fixed order (see `type_ranges`).
    """

    pad_id, bos_id, eos_id, mask_id = 0, 1, 2, 3

    def __init__(self, config: PerTokConfig | None = None):
        self.config = config or PerTokConfig()
        self.vocab = Vocabulary(self.config)
        self.type_ranges: dict[str, range] = self.vocab.type_ranges

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def config_hash(self) -> str:
        return self.config.hash

    # Scores -> tokens.
    def _table(self, source: ScoreLike):
        if isinstance(source, SCORE_TYPES):
            score = source if isinstance(source, symusic.core.ScoreTick) else source.to("tick")
            return score_to_table(score, self.vocab)
        score = load_score(source)  # its errors already name the file
        try:
            return score_to_table(score, self.vocab)
        except PerTokError as error:
            raise with_source(error, str(source)) from None

    def encode(self, source: ScoreLike, view: str = "full") -> np.ndarray:
        """Token ids (int32, no BOS/EOS) of a MIDI file or symusic Score.

        Args:
          view: "full" (composition and performance) or "composition" (no MicroTiming, no
            Velocity).
        """
        return self.encode_batch([source], view)[0]

    def encode_batch(self, sources: Sequence[ScoreLike], view: str = "full", errors: str = "raise") -> list:
        """Token ids of many MIDI files or Scores, in one vectorized pass; equal to `encode` of each.

        Args:
          view: as in `encode`.
          errors: "raise": raise the first failing item's PerTokError (a note names its index);
            "collect": a failing item's slot holds its exception and the rest are encoded.
            The vectorized pass runs over chunks of about 16k notes, but every loaded score and
            its ids stay in memory until the call returns: pass a few thousand files at a time.
        """
        if view not in ("full", "composition"):
            raise ValueError(f"view must be 'full' or 'composition', not {view!r}")
        return encode_batch(sources, self.vocab, full=view == "full", errors=errors)

    def quantize(self, source: ScoreLike) -> symusic.Score:
        """The score the tokens hold: `decode(encode(s))` equals `quantize(s)` exactly.

        Onsets snap to the union grid of their bar plus the nearest microtiming bin;
        velocities to the nearest bin centre; durations to the duration grid (longer than
        the largest Duration: whole largest tokens plus the nearest remainder); tracks
        merge by (program, drums); time-signature changes move to the next bar line and to
        a TimeSig the vocabulary has; tempos (when used) to the grid and the nearest bin.
        """
        return table_to_score(self._table(source), self.vocab)

    # Tokens -> scores.
    def decode(self, ids, strict: bool = True, view: str = "auto",
               report: bool = False) -> symusic.Score | tuple[symusic.Score, DecodeReport]:
        """Score of token ids.

        Args:
          strict: raise PerTokDecodeError (position and rule) at the first broken token;
            with False, broken notes are dropped and the rest decoded.
          view: "full", "composition" or "auto".
          report: also return a DecodeReport (tokens, dropped tokens, first error).
        """
        return self.decode_batch([ids], strict=strict, view=view, report=report)[0]

    def decode_batch(self, sequences: Sequence, strict: bool = True, view: str = "auto", report: bool = False,
                     errors: str = "raise") -> list:
        """Scores of many token sequences in one vectorized pass; equal to `decode` of each.

        Args:
          strict, view, report: as in `decode` (with report, each item is (score, report)).
          errors: "raise": strict decoding raises the first broken sequence's PerTokDecodeError
            (a note names its index); "collect": that sequence's slot holds the error instead.
        """
        return decode_batch(sequences, self.vocab, strict=strict, view=view, report=report, errors=errors)

    def token_errors(self, ids, view: str = "auto") -> float:
        """Fraction of tokens that lenient decoding drops (0 for a grammatical sequence)."""
        return parse(np.asarray(ids), self.vocab, strict=False, view=view)[1].error_rate

    # The two views.
    def token_types(self, ids) -> np.ndarray:
        """TokenType of every id."""
        return self.vocab.type_of[np.asarray(ids, dtype=np.int64)]

    def split(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full sequence -> (composition ids, MicroTiming ids, Velocity ids).

        MicroTiming ids are one per note and pedal, Velocity ids one per note, in order.
        """
        ids = np.asarray(ids, dtype=np.int64)
        parse(ids, self.vocab, strict=True, view="full")
        types = self.token_types(ids)
        performance = (types == TokenType.MICROTIMING) | (types == TokenType.VELOCITY)
        return (ids[~performance].astype(np.int32), ids[types == TokenType.MICROTIMING].astype(np.int32),
                ids[types == TokenType.VELOCITY].astype(np.int32))

    def merge(self, composition, microtiming, velocity) -> np.ndarray:
        """Inverse of `split`: put one MicroTiming after each note and pedal head, one Velocity after each note's."""
        composition = np.asarray(composition, dtype=np.int64)
        types = self.token_types(composition)
        is_note = np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH))
        is_timed = is_note | (types == TokenType.PEDAL)
        microtiming, velocity = np.asarray(microtiming, np.int64), np.asarray(velocity, np.int64)
        if len(microtiming) != is_timed.sum() or len(velocity) != is_note.sum():
            raise PerTokDecodeError(0, f"merge needs {is_timed.sum()} MicroTiming and {is_note.sum()} "
                                       f"Velocity ids, got {len(microtiming)} and {len(velocity)}")
        width = 1 + is_timed + is_note
        start = np.concatenate([[0], np.cumsum(width)[:-1]])
        out = np.empty(int(width.sum()), np.int64)
        out[start] = composition
        out[start[is_timed] + 1] = microtiming
        out[start[is_note] + 2] = velocity
        return out.astype(np.int32)

    def add_performance_slots(self, composition) -> np.ndarray:
        """Full-view ids of a composition with MASK in every MicroTiming and Velocity slot."""
        types = self.token_types(composition)
        num_notes = int(np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH)).sum())
        num_timed = num_notes + int((types == TokenType.PEDAL).sum())
        return self.merge(composition, np.full(num_timed, self.mask_id), np.full(num_notes, self.mask_id))

    # Inspection and persistence.
    def names(self, ids) -> list[str]:
        return [self.vocab.names[i] for i in np.asarray(ids, dtype=np.int64)]

    def describe(self) -> str:
        """Vocabulary size per token type, one line each."""
        lines = [f"{name:12s} {size:5d}" for name, size in self.vocab.sizes().items()]
        return "\n".join(lines + [f"{'total':12s} {self.vocab_size:5d}"])

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "config": self.config.to_dict(),
                "config_hash": self.config_hash, "vocabulary": self.vocab.names}

    def save(self, path: str | os.PathLike) -> None:
        """Write config and vocabulary as one JSON file."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def from_json(cls, data: dict) -> "PerTok":
        tokenizer = cls(PerTokConfig.from_dict(data["config"]))
        if "vocabulary" in data and data["vocabulary"] != tokenizer.vocab.names:
            raise PerTokConfigError("saved vocabulary differs from the one its config builds "
                                    "(saved by an incompatible PerTok version)")
        return tokenizer

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PerTok":
        """Read a tokenizer saved with `save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise PerTokConfigError(f"{path}: cannot read tokenizer JSON ({error})") from None
        return cls.from_json(data)

    def __repr__(self) -> str:
        return f"PerTok(vocab_size={self.vocab_size}, config_hash={self.config_hash})"


__all__ = ["PerTok", "load_score", "TYPE_NAMES"]
