"""PerTok's errors: one class per way input can be bad, all under PerTokError."""
from __future__ import annotations


class PerTokError(Exception):
    """Base of every error PerTok raises on bad input."""


class PerTokConfigError(PerTokError, ValueError):
    """A PerTokConfig value that the tokens cannot hold."""


class MidiFileNotFoundError(PerTokError, FileNotFoundError):
    """The MIDI path does not exist or is not a file."""


class MidiParseError(PerTokError):
    """The file is not MIDI, or is truncated or corrupt."""


class EmptyScoreError(PerTokError):
    """The score has no notes to tokenize."""


class InvalidScoreError(PerTokError):
    """The score parsed but holds absurd values (resolution, tempo)."""


class PerTokDecodeError(PerTokError, ValueError):
    """A token sequence breaks the PerTok grammar.

    Attributes:
      position: index of the first offending token.
      rule: the grammar rule it breaks.
    """

    def __init__(self, position: int, rule: str):
        self.position = position
        self.rule = rule
        super().__init__(f"token {position}: {rule}")


def with_source(error: PerTokError, source: str) -> PerTokError:
    """Return a copy of `error` whose message names the file it came from."""
    if isinstance(error, PerTokDecodeError):
        return error
    return type(error)(f"{source}: {error}")
