"""Strict decoding names the first broken token and its rule; lenient decoding repairs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pertok import PerTok, PerTokConfig, PerTokDecodeError
from tests.pertok.scores import make_score

TOKENIZER = PerTok(PerTokConfig(use_sustain_pedal=True, use_tempos=True))
SCORE = make_score(480, [(0, False, [(0, 480, 60, 80), (480, 480, 64, 90), (960, 480, 67, 100)]),
                         (0, True, [(0, 60, 36, 100)])])


def ids_of(*names: str) -> np.ndarray:
    return np.array([TOKENIZER.vocab.ids[n] for n in names])


def good_ids() -> np.ndarray:
    return TOKENIZER.encode(SCORE)


@pytest.mark.parametrize("names, position, rule", [
    (("Bar", "Program_0", "Pitch_60", "MicroTiming_0", "Duration_480"), 4, "out of place"),
    (("Bar", "Duration_480"), 1, "without a note"),
    (("Bar", "Program_0", "TimeSig_4/4", "Pitch_60"), 2, "TimeSig must come right after Bar"),
    (("Program_0", "Pitch_60", "MicroTiming_0", "Velocity_62", "Duration_480"), 0, "start with Bar"),
    (("Bar", "TimeShift_3840", "Program_0", "Pitch_60", "MicroTiming_0", "Velocity_62", "Duration_480"),
     1, "passes the next bar line"),
    (("Bar", "Program_drums", "Pitch_60", "MicroTiming_0", "Velocity_62", "Duration_480"), 2, "drum track"),
    (("Bar", "Pitch_60", "MicroTiming_0", "Velocity_62", "Duration_480"), 1, "before any Program"),
    (("Bar", "Program_0", "Bar"), 2, "Program must be followed"),
    (("Bar", "Program_0", "Pitch_60", "MicroTiming_0", "Velocity_62"), 5, "ends before"),
    (("Bar", "MASK"), 1, "MASK"),
])
def test_strict_names_position_and_rule(names, position, rule):
    with pytest.raises(PerTokDecodeError) as raised:
        TOKENIZER.decode(ids_of(*names))
    assert raised.value.position == position
    assert rule in raised.value.rule


def test_lenient_drops_only_the_broken_note():
    ids = good_ids()
    names = TOKENIZER.names(ids)
    velocity_at = names.index("Velocity_90")
    broken = np.delete(ids, velocity_at)  # the E's velocity is missing
    with pytest.raises(PerTokDecodeError):
        TOKENIZER.decode(broken)
    score, report = TOKENIZER.decode(broken, strict=False, report=True)
    assert report.num_dropped == 3  # Pitch, MicroTiming, Duration of the broken note
    assert sorted(n.pitch for t in score.tracks for n in t.notes) == [36, 60, 67]
    assert TOKENIZER.token_errors(broken) == pytest.approx(3 / len(broken))
    assert TOKENIZER.token_errors(ids) == 0.0


def test_special_tokens_around_a_sequence_are_fine():
    ids = good_ids()
    wrapped = np.concatenate([[TOKENIZER.pad_id, TOKENIZER.bos_id], ids, [TOKENIZER.eos_id, 0, 0, 57]])
    assert TOKENIZER.decode(wrapped).note_num() == 4


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, TOKENIZER.vocab_size - 1), max_size=120), st.booleans())
def test_random_sequences_never_crash_lenient_decoding(ids, splice):
    ids = np.array(ids, dtype=np.int64)
    if splice:  # corrupt a real sequence rather than starting from noise
        ids = np.concatenate([good_ids()[:20], ids, good_ids()[20:]])
    score, report = TOKENIZER.decode(ids, strict=False, report=True)
    assert 0 <= report.num_dropped <= len(ids)
    assert report.num_dropped == 0 or report.first_error is not None
    if report.first_error is None:
        TOKENIZER.decode(ids)  # no error found: strict agrees
    else:
        with pytest.raises(PerTokDecodeError):
            TOKENIZER.decode(ids)
    # What lenient decoding keeps is itself a valid piece: encoding it again decodes strictly.
    if score.note_num():
        TOKENIZER.decode(TOKENIZER.encode(score))


def test_composition_view_grammar():
    composition = TOKENIZER.encode(SCORE, view="composition")
    assert TOKENIZER.decode(composition).note_num() == 4
    with pytest.raises(PerTokDecodeError):  # a composition note asked to be a full one
        TOKENIZER.decode(composition, view="full")


def test_negative_microtiming_on_the_first_beat_starts_at_zero():
    ids = ids_of("Bar", "Program_0", "Pitch_60", "MicroTiming_-12", "Velocity_62", "Duration_480")
    score = TOKENIZER.decode(ids)
    assert [n.time for n in score.tracks[0].notes] == [0]
