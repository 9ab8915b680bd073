"""The head-level decoding path (`decode_fast`) against the full rule checks of `decode.py`.

Both paths run on the same batches: encoder output in both views, mixed-view batches, and
sequences with one small edit. The fast path may decline a batch (then the full checks decode
it), but what it decodes must be exactly what the full checks decode, and it must take every
grammatical batch.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pertok import PerTok, PerTokConfig, TokenType
from pertok import decode, decode_fast
from pertok.render import tables_to_scores
from tests.pertok.reference import reference_table_to_score
from tests.pertok.scores import random_scores
from tests.pertok.test_batch import assert_same_score, corrupt, single_edit

FULL = PerTok(PerTokConfig(use_tempos=True, use_sustain_pedal=True))
DEFAULT = PerTok()
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def full_checks(sequences: list, tokenizer: PerTok, view: str):
    """parse_batch with the fast path turned off: (TableBatch, reports, errors)."""
    real = decode.parse_grammatical
    decode.parse_grammatical = lambda *args: None
    try:
        return decode.parse_batch(sequences, tokenizer.vocab, strict=False, view=view)
    finally:
        decode.parse_grammatical = real


def assert_same_tables(fast, full) -> None:
    np.testing.assert_array_equal(fast.bar_offsets, full.bar_offsets)
    np.testing.assert_array_equal(fast.event_offsets, full.event_offsets)
    for name in ("starts", "lengths", "time_signature"):
        np.testing.assert_array_equal(getattr(fast.table.bars, name), getattr(full.table.bars, name), err_msg=name)
    for name, column in fast.table.columns().items():
        np.testing.assert_array_equal(column, full.table.columns()[name], err_msg=name)


def check_batch(sequences: list, tokenizer: PerTok, view: str) -> bool:
    """Both paths on one batch; True when the fast path took it."""
    fast = decode_fast.parse_grammatical(sequences, tokenizer.vocab, view)
    table, reports, errors = full_checks(sequences, tokenizer, view)
    clean = all(error is None and report.num_dropped == 0 for error, report in zip(errors, reports))
    if fast is None:  # declining is safe, but only a broken (or empty) batch may be declined
        assert not clean or sum(report.num_tokens for report in reports) == 0
        return False
    assert clean, [str(error) for error in errors]
    assert_same_tables(fast[0], table)
    assert fast[1].tolist() == [report.num_tokens for report in reports]
    return True


@SETTINGS
@given(st.lists(random_scores(max_notes=20), min_size=1, max_size=3), st.integers(0, 1000))
def test_fast_path_decodes_exactly_what_the_full_checks_decode(scores, seed):
    for tokenizer in (FULL, DEFAULT):
        full = tokenizer.encode_batch(scores)
        composition = tokenizer.encode_batch(scores, view="composition")
        for view, batch in (("auto", full), ("full", full), ("composition", composition),
                            ("auto", full + composition), ("auto", composition[::-1] + full)):
            assert check_batch(batch, tokenizer, view), view
        wrapped = [np.concatenate([[tokenizer.bos_id], ids, [tokenizer.eos_id, 0]]) for ids in full]
        assert check_batch(wrapped + [np.zeros(0, np.int32)], tokenizer, "auto")
        for index in range(10):
            edited = single_edit(full[index % len(full)], seed + index, tokenizer)
            check_batch([edited], tokenizer, "auto")
            check_batch(full + [edited], tokenizer, "auto")


def test_fast_path_declines_performance_tokens_out_of_place():
    """The view and tail checks are counts: a MicroTiming or Velocity anywhere but right after
    its note makes the batch take the full checks."""
    ids = DEFAULT.encode(_two_bars())
    composition = DEFAULT.split(ids)[0]
    types = DEFAULT.token_types(composition)
    duration = int(np.flatnonzero(types == TokenType.DURATION)[0])
    microtiming = DEFAULT.type_ranges["MicroTiming"].start
    velocity = DEFAULT.type_ranges["Velocity"].start
    for extra in (microtiming, velocity):
        broken = np.insert(composition, duration + 1, extra)  # after a note's Duration
        assert decode_fast.parse_grammatical([ids, broken], DEFAULT.vocab, "auto") is None
        assert not check_batch([ids, broken], DEFAULT, "auto")
    full_types = DEFAULT.token_types(ids)
    first_velocity = int(np.flatnonzero(full_types == TokenType.VELOCITY)[0])
    swapped = ids.copy()
    swapped[[first_velocity - 1, first_velocity]] = ids[[first_velocity, first_velocity - 1]]
    assert not check_batch([swapped], DEFAULT, "auto")
    assert check_batch([ids, composition], DEFAULT, "auto")


def _two_bars():
    from tests.pertok.scores import make_score
    return make_score(480, [(0, False, [(0, 480, 60, 80), (500, 4000, 64, 60), (2400, 100, 67, 90)])])


@pytest.mark.parametrize("view", ["full", "composition", "auto"])
def test_grammatical_wrapper_matches_prove(view):
    """`grammatical` (decode's columns) and `parse_grammatical` (ids) take the same decisions."""
    ids = DEFAULT.encode(_two_bars(), view="composition" if view == "composition" else "full")
    for sequence in (ids, ids[:-1], np.insert(ids, 3, ids[3])):
        tokens = decode.content_of([sequence], DEFAULT.vocab, view)
        wrapped = decode_fast.grammatical(tokens.types, tokens.content, tokens.sequence, tokens.first, tokens.full,
                                          tokens.num_sequences, DEFAULT.vocab.value_of)
        direct = decode_fast.parse_grammatical([sequence], DEFAULT.vocab, view) is not None
        assert wrapped == direct


def test_a_dropped_special_token_does_not_shift_a_tail_into_place():
    """Regression: `Pitch MicroTiming MASK Duration Duration` was taken for a whole note (the
    MASK's gap put the first Duration where the Velocity goes), and its Duration id was read
    as a Velocity index, which crashed score building. Now the note is dropped."""
    score = _two_bars()
    ids = DEFAULT.encode(score)
    velocity = int(np.flatnonzero(DEFAULT.token_types(ids) == TokenType.VELOCITY)[0])
    duration = DEFAULT.type_ranges["Duration"].start + 3
    broken = np.concatenate([ids[:velocity], [DEFAULT.mask_id, duration], ids[velocity + 1:]])
    score, report = DEFAULT.decode(broken, strict=False, report=True)
    assert report.first_error.position == velocity  # the MASK
    assert report.num_dropped == 5  # the MASK and the four tokens of the note around it
    assert score.note_num() == DEFAULT.decode(ids).note_num() - 1


@SETTINGS
@given(st.lists(random_scores(max_notes=20), min_size=1, max_size=4), st.integers(0, 1000))
def test_batched_scores_keep_the_track_order_of_table_to_score(scores, seed):
    """Tracks in the order their program first appears, with the same names, programs and kits
    (`test_batch` compares notes by program, whatever the order)."""
    ids = FULL.encode_batch(scores)
    sequences = ids + [corrupt(sequence, seed + i, FULL.vocab_size) for i, sequence in enumerate(ids)]
    batch, _, _ = decode.parse_batch(sequences[::-1] + [np.zeros(0, np.int32)], FULL.vocab, strict=False)
    for index, score in enumerate(tables_to_scores(batch, FULL.vocab)):
        reference = reference_table_to_score(batch.item(index), FULL.vocab)
        assert [(t.name, t.program, t.is_drum) for t in score.tracks] == [
            (t.name, t.program, t.is_drum) for t in reference.tracks]
        assert_same_score(score, reference)
