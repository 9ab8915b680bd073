"""Ideas cut at bar lines decode on their own; their conditions and the decoder's prefix; the
sampler's examples; repairing samples."""
import numpy as np
import pytest

from composer import (Conditions, IdeaSampler, conditions_of, cut_ideas, finish_idea, idea_example,
                      named_conditions, prefix_ids, select_bars, standalone)
from composer.ideas import composition_view
from pertok import PerTok, TokenType
from pertok.synthetic import write_corpus
from training import MemoryPieces


@pytest.fixture(scope="module")
def tokenizer():
    return PerTok()


@pytest.fixture(scope="module")
def corpus(tokenizer, tmp_path_factory):
    """Full-view ids of six built-in pieces (piano, drums, band: meters and programs change)."""
    paths = write_corpus(tmp_path_factory.mktemp("corpus"), 6, seed=3)
    return MemoryPieces([tokenizer.encode(p) for p in paths], [p.name for p in paths])


def test_every_idea_decodes_strictly_fits_and_the_bars_are_covered_once(tokenizer, corpus):
    for index in range(len(corpus)):
        ids = composition_view(corpus.piece(index), tokenizer)
        types = tokenizer.token_types(ids)
        ideas = cut_ideas(ids, types, num_bars=2, max_tokens=90)
        assert ideas[0].start == 0 and all(a.end <= b.start for a, b in zip(ideas, ideas[1:]))
        assert sum(idea.num_bars for idea in ideas) == (types == TokenType.BAR).sum()
        for idea in ideas:
            tokens = standalone(ids, types, idea)
            assert len(tokens) <= 90 and 1 <= idea.num_bars <= 2
            tokenizer.decode(tokens, strict=True)  # raises on any broken rule


def test_standalone_puts_back_the_time_signature_and_program_in_force(tokenizer):
    r = tokenizer.type_ranges
    bar, sig_3_4, sig_4_4 = r["Bar"].start, r["TimeSig"].start + 2, r["TimeSig"].start + 3
    program, pitch = r["Program"].start, r["Pitch"].start + 60
    duration, shift = r["Duration"].start + 7, r["TimeShift"].start + 3
    ids = np.array([bar, sig_3_4, program, pitch, duration, bar, shift, pitch, duration])
    types = tokenizer.token_types(ids)
    second = cut_ideas(ids, types, num_bars=1, max_tokens=50)[1]
    np.testing.assert_array_equal(standalone(ids, types, second),
                                  [bar, sig_3_4, shift, program, pitch, duration])
    ids[5:7] = [bar, sig_4_4]  # a bar with its own meter keeps it
    tokens = standalone(ids, tokenizer.token_types(ids), cut_ideas(ids, tokenizer.token_types(ids), 1, 50)[1])
    np.testing.assert_array_equal(tokens, [bar, sig_4_4, program, pitch, duration])


def test_select_bars_takes_fewer_bars_or_cuts_the_bar_to_fit(tokenizer, corpus):
    full = corpus.piece(0)
    idea, taken, truncated = select_bars(full, tokenizer, 1, 4, max_tokens=10_000)
    assert taken == 4 and not truncated
    tokenizer.decode(idea, strict=True)
    idea, taken, truncated = select_bars(full, tokenizer, 1, 4, max_tokens=20)
    assert taken == 1 and truncated and len(composition_view(idea, tokenizer)) <= 20
    tokenizer.decode(idea, strict=True)
    with pytest.raises(ValueError, match="past the"):
        select_bars(full, tokenizer, 10_000, 4)


def test_sampler_examples_shift_targets_by_one(tokenizer, corpus):
    sampler = IdeaSampler(corpus, tokenizer, num_bars=2, context_length=96)
    example = sampler.example(3, None)
    tokens = sampler.tokens(3)
    n = len(tokens)
    np.testing.assert_array_equal(example["decoder_inputs"][:n + 2], [1, *tokens, 0])
    np.testing.assert_array_equal(example["targets"][:n + 2], [*tokens, 2, 0])
    np.testing.assert_array_equal(example["weights"], np.arange(96) <= n)
    # The encoder also sees where the idea ends, unless the idea fills the context.
    np.testing.assert_array_equal(example["encoder_ids"][:n + 3], [1, *tokens, 2, 0])
    full = idea_example(np.full(95, 7, np.int32), 96)
    np.testing.assert_array_equal(full["encoder_ids"], full["decoder_inputs"])
    assert full["targets"][-1] == 2
    with pytest.raises(ValueError, match="does not fit"):
        idea_example(np.ones(96, np.int32), 96)


def test_finish_idea_repairs_a_broken_sample(tokenizer, corpus):
    ids = composition_view(corpus.piece(0), tokenizer)
    types = tokenizer.token_types(ids)
    tokens = standalone(ids, types, cut_ideas(ids, types, 2, 200)[0])
    second_bar = np.flatnonzero(tokenizer.token_types(tokens) == TokenType.BAR)[1]
    lone_pitch = tokenizer.type_ranges["Pitch"].start + 60  # a note without its Duration
    broken = np.concatenate([tokens[:second_bar], [lone_pitch], tokens[second_bar:], [2, 0, 0]])
    repaired, error_rate = finish_idea(broken, tokenizer, num_bars=1)
    assert 0 < error_rate < 0.2
    tokenizer.decode(repaired, strict=True)
    assert (tokenizer.token_types(repaired) == TokenType.BAR).sum() == 1
    nothing, error_rate = finish_idea(np.array([tokenizer.type_ranges["Duration"].start, 2]), tokenizer, 1)
    assert len(nothing) == 0 and error_rate == 1.0


def test_conditions_of_an_idea_and_its_prefix(tokenizer):
    r, ids = tokenizer.type_ranges, tokenizer.vocab.ids
    bar, sig_3_4 = r["Bar"].start, ids["TimeSig_3/4"]
    piano, drums, bass = ids["Program_0"], ids["Program_drums"], ids["Program_33"]
    pitch, kick, duration = r["Pitch"].start + 60, r["DrumPitch"].start + 36, r["Duration"].start + 7
    idea = np.array([bar, sig_3_4, drums, kick, duration, piano, pitch, duration,
                     bar, drums, kick, duration, bass, pitch, duration])
    conditions = conditions_of(idea, tokenizer)
    assert conditions == Conditions(sig_3_4, (drums, piano, bass), 2)
    prefix = prefix_ids(conditions, vocab_size=603, max_programs=2, max_bars=4)
    np.testing.assert_array_equal(prefix, [sig_3_4, piano, drums, 603 + 1])  # first two programs, sorted
    no_meter = conditions_of(np.array([bar, piano, pitch, duration]), tokenizer)
    assert no_meter.time_signature == ids["TimeSig_4/4"]  # PerTok's default meter
    with pytest.raises(ValueError, match="5 bars"):
        prefix_ids(Conditions(sig_3_4, (), 5), vocab_size=603, max_programs=2, max_bars=4)


def test_named_conditions_read_a_users_words_or_name_the_bad_value(tokenizer):
    ids = tokenizer.vocab.ids
    assert named_conditions(tokenizer, "3/4", "0", 2) == Conditions(ids["TimeSig_3/4"], (ids["Program_0"],), 2)
    assert named_conditions(tokenizer, "", "drums, 33", 0) == Conditions(
        0, (ids["Program_drums"], ids["Program_33"]), 0)
    for args, named in ((("3/5", "0", 1), "'3/5'"), (("4/4", "piano", 1), "'piano'"),
                        (("4/4", "0", -1), "num_bars=-1")):
        with pytest.raises(ValueError, match=named):
            named_conditions(tokenizer, *args)


def test_sampler_prefixes_are_the_ideas_conditions_some_left_open(tokenizer, corpus):
    prefix_of = lambda c: prefix_ids(c, vocab_size=603, max_programs=3, max_bars=2)  # noqa: E731
    sampler = IdeaSampler(corpus, tokenizer, num_bars=2, context_length=96, prefix_of=prefix_of,
                          condition_dropout=0.5)
    np.testing.assert_array_equal(sampler.example(3, None)["decoder_prefix"],
                                  prefix_of(conditions_of(sampler.tokens(3), tokenizer)))
    rng = np.random.default_rng(0)
    prefixes = np.stack([sampler.example(3, rng)["decoder_prefix"] for _ in range(200)])
    open_meter, open_bars = (prefixes[:, 0] == 0).mean(), (prefixes[:, -1] == 0).mean()
    assert 0.35 < open_meter < 0.65 and 0.35 < open_bars < 0.65
