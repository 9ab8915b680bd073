"""Bad files give one clear PerTokError subclass naming the file."""
from __future__ import annotations

import pytest

from pertok import (EmptyScoreError, InvalidScoreError, MidiFileNotFoundError, MidiParseError, PerTok)
from tests.pertok.scores import make_score

TOKENIZER = PerTok()


def write_score(path, score):
    score.dump_midi(str(path))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(MidiFileNotFoundError, match="nope.mid"):
        TOKENIZER.encode(tmp_path / "nope.mid")


def test_not_midi_and_truncated(tmp_path):
    garbage = tmp_path / "garbage.mid"
    garbage.write_bytes(b"this is not a MIDI file at all")
    with pytest.raises(MidiParseError, match="garbage.mid"):
        TOKENIZER.encode(garbage)
    good = write_score(tmp_path / "good.mid", make_score(480, [(0, False, [(i * 120, 100, 60, 80) for i in range(50)])]))
    truncated = tmp_path / "truncated.mid"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(MidiParseError, match="truncated.mid"):
        TOKENIZER.encode(truncated)


def test_no_notes(tmp_path):
    empty = write_score(tmp_path / "empty.mid", make_score(480, [(0, False, [])]))
    with pytest.raises(EmptyScoreError, match="empty.mid"):
        TOKENIZER.encode(empty)


def test_absurd_resolution_and_tempo(tmp_path):
    good = write_score(tmp_path / "good.mid", make_score(480, [(0, False, [(0, 100, 60, 80)])]))
    data = bytearray(good.read_bytes())
    data[12:14] = (0).to_bytes(2, "big")  # division field of the header: 0 ticks per quarter
    zero_tpq = tmp_path / "zero_tpq.mid"
    zero_tpq.write_bytes(bytes(data))
    with pytest.raises(InvalidScoreError, match="zero_tpq.mid.*ticks per quarter"):
        TOKENIZER.encode(zero_tpq)
    fast = write_score(tmp_path / "fast.mid", make_score(480, [(0, False, [(0, 100, 60, 80)])], tempos=((0, 50000.0),)))
    with pytest.raises(InvalidScoreError, match="fast.mid.*tempo"):
        TOKENIZER.encode(fast)
