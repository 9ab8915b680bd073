"""PerTok: expressive MIDI tokenization (composition and performance kept apart).

    from pertok import PerTok, PerTokConfig
    tok = PerTok(PerTokConfig())
    ids = tok.encode("song.mid")
    score = tok.decode(ids)
"""
from pertok.config import PerTokConfig
from pertok.decode import DecodeReport
from pertok.errors import (EmptyScoreError, InvalidScoreError, MidiFileNotFoundError, MidiParseError,
                           PerTokConfigError, PerTokDecodeError, PerTokError)
from pertok.tokenizer import PerTok, load_score
from pertok.vocab import TokenType

__all__ = [
    "PerTok", "PerTokConfig", "DecodeReport", "TokenType", "load_score", "PerTokError",
    "PerTokConfigError", "PerTokDecodeError", "MidiFileNotFoundError", "MidiParseError",
    "EmptyScoreError", "InvalidScoreError",
]
