"""Batched encode and decode give exactly what the per-file calls give, and keep going past bad items."""
from __future__ import annotations

import numpy as np
import pytest
import symusic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pertok import (EmptyScoreError, MidiFileNotFoundError, MidiParseError, PerTok, PerTokConfig, PerTokDecodeError,
                    PerTokError, TokenType)
from pertok import batch as batch_module
from pertok import decode, quantize, segments, timing
from pertok.decode_fast import grammatical
from pertok.encode import encode_table
from pertok.render import tables_to_scores
from tests.pertok.reference import reference_score_to_table, reference_table_to_score
from tests.pertok.scores import make_score, random_scores, score_arrays

FULL = PerTok(PerTokConfig(use_tempos=True, use_sustain_pedal=True))
DEFAULT = PerTok()
# Narrow pitch ranges (rows dropped), no TimeSig tokens, one grid: the encoder's other branches.
NARROW = PerTok(PerTokConfig(pitch_range=(30, 90), drum_pitch_range=(35, 60), use_time_signatures=False,
                             time_grids=(4,), microtiming_bins=49, microtiming_range_beats=0.25))
# The chunk-size fixture only sets two module constants, the same for every example.
SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# Tiny chunks, so a batch of a few random scores crosses chunk boundaries too.
CHUNK_SIZES = [(1 << 14, 1 << 16), (40, 120)]


@pytest.fixture(params=CHUNK_SIZES, ids=["one-chunk", "many-chunks"])
def chunk_size(request, monkeypatch):
    monkeypatch.setattr(batch_module, "CHUNK_NOTES", request.param[0])
    monkeypatch.setattr(batch_module, "CHUNK_TOKENS", request.param[1])


def assert_same_score(a: symusic.Score, b: symusic.Score) -> None:
    arrays_a, arrays_b = score_arrays(a), score_arrays(b)
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


def corrupt(ids: np.ndarray, seed: int, vocab_size: int) -> np.ndarray:
    """A few random ids replaced, and sometimes a cut, so lenient decoding has work to do."""
    rng = np.random.default_rng(seed)
    ids = ids.copy()
    where = rng.integers(0, len(ids), 3)
    ids[where] = rng.integers(0, vocab_size, 3)
    return ids[rng.integers(0, len(ids) // 2):] if seed % 2 else ids


@SETTINGS
@given(st.lists(random_scores(max_notes=30), min_size=1, max_size=4))
def test_encode_batch_equals_encode(chunk_size, scores):
    for tokenizer in (FULL, DEFAULT):
        for view in ("full", "composition"):
            batched = tokenizer.encode_batch(scores, view=view)
            for score, ids in zip(scores, batched):
                single = tokenizer.encode(score, view=view)
                assert ids.dtype == single.dtype == np.int32
                np.testing.assert_array_equal(ids, single)


@SETTINGS
@given(st.lists(random_scores(max_notes=30), min_size=1, max_size=4))
def test_encode_batch_equals_the_per_file_reference(chunk_size, scores):
    """The batched pass (integer onsets, snapping tables, packed sort key) against the plain
    per-file float projection `tests.pertok.reference` written out by `encode_table`."""
    for tokenizer in (FULL, DEFAULT, NARROW):
        for view in ("full", "composition"):
            batched = tokenizer.encode_batch(scores, view=view, errors="collect")
            for score, ids in zip(scores, batched):
                try:
                    reference = encode_table(reference_score_to_table(score, tokenizer.vocab), tokenizer.vocab, view == "full")
                except Exception as error:  # noqa: BLE001 - the same refusal either way
                    assert type(ids) is type(error) and str(ids) == str(error)
                    continue
                np.testing.assert_array_equal(ids, reference)


def test_long_and_negative_durations_in_mixed_resolutions():
    """Durations past the lookup tables (several largest tokens) and below zero, in a batch of
    two resolutions (one table per piece), against the per-file reference."""
    notes = [(0, -5, 60, 80), (10, 0, 61, 80), (20, 40 * 480, 62, 80), (30, 100 * 480 + 7, 63, 80),
             (40, 8 * 480, 64, 80)]
    scores = [make_score(480, [(0, False, notes)]), make_score(384, [(3, False, [(0, 33 * 384, 50, 90)] + notes)])]
    for tokenizer in (DEFAULT, FULL):
        for batch in (scores, scores[:1], scores[1:]):  # two resolutions, then one (a single table)
            for score, ids in zip(batch, tokenizer.encode_batch(batch)):
                reference = encode_table(reference_score_to_table(score, tokenizer.vocab), tokenizer.vocab)
                np.testing.assert_array_equal(ids, reference)

def test_integer_onsets_are_the_float_onsets():
    """Onsets stay exact integers in 1/D ticks for power-of-two D (in int64 when int32 would
    overflow); other resolutions are flagged."""
    config = PerTokConfig()
    time = np.array([0, 1, 7, 383, 2_000_000_000, 5, 77, 12_345], np.int32)
    tpq = [384, 1024, 220]  # D = 2, D = 16, and 220 (D = 11: float snapping)
    u, denominator, inexact, onset = timing.onset_lattice(time, tpq, np.array([2, 3, 3]), config)
    assert denominator == 16
    np.testing.assert_array_equal(inexact, [5, 6, 7])
    np.testing.assert_array_equal(onset, time[5:] * (960 / 220))
    exact = time[:5] * np.repeat(960 / np.array([384, 1024]), [2, 3])
    np.testing.assert_array_equal(u[:5] / denominator, exact)
    np.testing.assert_array_equal(u[5:], np.floor(onset + timing._EPS) * denominator)


def test_lexsort_fallback_gives_the_same_order():
    """When global bar numbers would not fit the packed key, a lexsort gives the same order."""
    rng = np.random.default_rng(0)
    vocab = DEFAULT.vocab
    bar = np.sort(rng.integers(0, 50, 200))
    packed = quantize._pack(rng.integers(0, 3840, 200) // 80 * 80, rng.integers(-12, 13, 200),
                               rng.random(200) < 0.1, vocab)
    static = quantize._static_key({"pitch": rng.integers(0, 128, 200).astype(np.int8)},
                                     np.array([[0, 2, 5, 120], [0, 2, -1, 80]]), vocab)
    fast = quantize._sorted_columns(bar, packed.copy(), static, None, 51, vocab)
    slow = quantize._sorted_columns(bar, packed.copy(), static, None, 1 << 62, vocab)
    np.testing.assert_array_equal(fast[0], slow[0])
    for name in fast[1]:
        np.testing.assert_array_equal(fast[1][name], slow[1][name], err_msg=name)


@SETTINGS
@given(st.lists(random_scores(max_notes=30), min_size=1, max_size=3), st.integers(0, 1000))
def test_decode_batch_equals_decode(chunk_size, scores, seed):
    for tokenizer in (FULL, DEFAULT):
        good = tokenizer.encode_batch(scores) + tokenizer.encode_batch(scores, view="composition")
        sequences = good + [corrupt(ids, seed + i, tokenizer.vocab_size) for i, ids in enumerate(good)]
        lenient = tokenizer.decode_batch(sequences, strict=False, report=True)
        strict = tokenizer.decode_batch(sequences, errors="collect")
        for ids, (score, report), strict_result in zip(sequences, lenient, strict):
            single, single_report = tokenizer.decode(ids, strict=False, report=True)
            assert_same_score(score, single)
            assert (report.num_tokens, report.num_dropped) == (single_report.num_tokens, single_report.num_dropped)
            assert str(report.first_error) == str(single_report.first_error)
            if single_report.first_error is None:
                assert_same_score(strict_result, single)
            else:  # strict decoding fails on exactly the sequences with a first error, with that error
                assert isinstance(strict_result, PerTokDecodeError)
                assert (strict_result.position, strict_result.rule) == (
                    single_report.first_error.position, single_report.first_error.rule)


def piano(pitch: int) -> symusic.Score:
    return make_score(480, [(0, False, [(0, 480, pitch, 80), (500, 200, pitch + 4, 60)])])


def test_bad_items_do_not_lose_the_rest(tmp_path):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd not really a MIDI file")
    good = tmp_path / "good.mid"
    piano(60).dump_midi(str(good))
    empty = make_score(480, [(0, False, [])])
    sources = [piano(50), broken, str(good), tmp_path / "missing.mid", empty, piano(70)]
    results = DEFAULT.encode_batch(sources, errors="collect")
    assert isinstance(results[1], MidiParseError) and "broken.mid" in str(results[1])
    assert isinstance(results[3], MidiFileNotFoundError) and "missing.mid" in str(results[3])
    assert isinstance(results[4], EmptyScoreError)
    for index in (0, 2, 5):
        np.testing.assert_array_equal(results[index], DEFAULT.encode(sources[index]))
    with pytest.raises(MidiParseError, match="broken.mid") as raised:
        DEFAULT.encode_batch(sources)
    assert "item 1 of a batch of 6" in "".join(raised.value.__notes__)


def test_decode_batch_errors_and_modes():
    good = DEFAULT.encode(piano(60))
    broken = good[:-1]  # the last note loses its Duration: its Pitch, MicroTiming, Velocity are dropped
    with pytest.raises(PerTokDecodeError) as raised:
        DEFAULT.decode_batch([good, broken])
    assert (raised.value.position, raised.value.rule) == (len(broken),
                                                         "note or pedal ends before its MicroTiming/Velocity/Duration")
    assert "item 1 of a batch of 2" in "".join(raised.value.__notes__)
    collected = DEFAULT.decode_batch([broken, good], errors="collect")
    assert isinstance(collected[0], PerTokDecodeError)
    assert_same_score(collected[1], DEFAULT.decode(good))
    (_, report), = DEFAULT.decode_batch([broken], strict=False, report=True)
    assert report.num_dropped == 3 and report.first_error.position == len(broken)
    between_notes = int(np.flatnonzero(DEFAULT.token_types(good) == TokenType.TIME_SHIFT)[0])
    outside = np.insert(good, between_notes, [10 ** 6, -5])  # ids no vocabulary has
    (score, report), = DEFAULT.decode_batch([outside], strict=False, report=True)
    assert report.num_dropped == 2 and report.first_error.position == between_notes
    assert_same_score(score, DEFAULT.decode(good))
    with pytest.raises(ValueError, match="errors must be"):
        DEFAULT.decode_batch([good], errors="ignore")
    assert DEFAULT.decode_batch([]) == [] and DEFAULT.encode_batch([]) == []


def test_chunks_split_by_budget():
    assert batch_module.chunks([5, 5, 5, 20, 1], budget=10) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert batch_module.chunks([], budget=10) == []


def test_segment_helpers_restart_at_each_piece():
    piece = np.array([0, 0, 0, 1, 1, 3])
    first = segments.first_of_segment(piece, 4)
    np.testing.assert_array_equal(first, [0, 0, 0, 3, 3, 5])
    np.testing.assert_array_equal(segments.cumsum(np.array([1, 2, 3, 4, 5, 6]), first), [1, 3, 6, 4, 9, 6])
    mask = np.array([False, True, False, False, True, False])
    np.testing.assert_array_equal(segments.last_true(mask, first), [-1, 1, 1, -1, 4, -1])
    np.testing.assert_array_equal(segments.offsets(piece, 4), [0, 3, 5, 5, 6])


def single_edit(ids: np.ndarray, seed: int, tokenizer: PerTok) -> np.ndarray:
    """One small edit (most break one rule): delete, duplicate, swap neighbours, or replace a
    token by a random id or by another id of a neighbouring type (Pitch <-> DrumPitch...)."""
    rng = np.random.default_rng(seed)
    at = int(rng.integers(0, len(ids) - 1))
    kind = seed % 5
    if kind == 0:
        return np.delete(ids, at)
    if kind == 1:
        return np.insert(ids, at, ids[at])
    edited = ids.copy()
    if kind == 2:
        edited[at], edited[at + 1] = ids[at + 1], ids[at]
    elif kind == 3:
        edited[at] = rng.integers(0, tokenizer.vocab_size)
    else:  # the same value range one token type over: 4 = Bar ... 14 = Duration
        kind_of = int(tokenizer.vocab.type_of[ids[at]])
        other = list(tokenizer.type_ranges.values())[min(max(kind_of + int(rng.choice([-1, 1])), 4), 14)]
        edited[at] = other.start + int(rng.integers(0, len(other))) if len(other) else ids[at]
    return edited


@SETTINGS
@given(random_scores(max_notes=30), st.integers(0, 1000))
def test_fast_grammar_check_agrees_with_the_rules(score, seed):
    """The one-lookup-per-token check accepts exactly the sequences the full rule checks pass."""
    for tokenizer in (FULL, DEFAULT):
        ids = tokenizer.encode(score)
        candidates = [ids, tokenizer.encode(score, view="composition")]
        candidates += [single_edit(ids, seed + i, tokenizer) for i in range(12)]
        for index, sequence in enumerate(candidates):
            tokens = decode.content_of([sequence], tokenizer.vocab, "auto")
            fast = grammatical(tokens.types, tokens.content, tokens.sequence, tokens.first, tokens.full,
                               tokens.num_sequences, tokenizer.vocab.value_of)
            errors = decode._Errors(1)
            decode._check_rules(tokens, tokenizer.vocab, errors)
            assert fast == (errors.rule[0] is None), (index, errors.rule[0])
            assert fast or index >= 2  # the encoder's own sequences take the fast path


def test_a_crash_stays_with_its_item(monkeypatch):
    """In collect mode an unexpected exception in the vectorized pass is traced to its item."""
    real = batch_module.scores_to_tables

    def crash_on_odd_resolution(scores, vocab):
        if any(score.ticks_per_quarter == 123 for score in scores):
            raise RuntimeError("boom")
        return real(scores, vocab)

    monkeypatch.setattr(batch_module, "scores_to_tables", crash_on_odd_resolution)
    odd = make_score(123, [(0, False, [(0, 123, 60, 80)])])
    results = DEFAULT.encode_batch([piano(50), odd, piano(70)], errors="collect")
    assert isinstance(results[1], RuntimeError)
    np.testing.assert_array_equal(results[2], DEFAULT.encode(piano(70)))
    with pytest.raises(RuntimeError):
        DEFAULT.encode_batch([piano(50), odd])


@SETTINGS
@given(st.lists(random_scores(max_notes=30), min_size=1, max_size=3), st.integers(0, 1000))
def test_batched_score_building_equals_table_to_score(scores, seed):
    """tables_to_scores against its per-piece reference, tests.pertok.reference."""
    ids = FULL.encode_batch(scores)
    sequences = ids + [corrupt(sequence, seed + i, FULL.vocab_size) for i, sequence in enumerate(ids)]
    batch, _, _ = decode.parse_batch(sequences, FULL.vocab, strict=False)
    for index, score in enumerate(tables_to_scores(batch, FULL.vocab)):
        assert_same_score(score, reference_table_to_score(batch.item(index), FULL.vocab))


@SETTINGS
@given(random_scores(max_notes=30))
def test_quantize_equals_the_per_file_reference(score):
    """PerTok.quantize runs the batched path on one score; the plain per-note projection and
    score building must give the same Score."""
    for tokenizer in (FULL, DEFAULT, NARROW):
        try:
            table = reference_score_to_table(score, tokenizer.vocab)
        except PerTokError as error:  # e.g. no note inside NARROW's pitch ranges: the same refusal
            with pytest.raises(type(error), match=str(error)):
                tokenizer.quantize(score)
            continue
        assert_same_score(tokenizer.quantize(score), reference_table_to_score(table, tokenizer.vocab))
