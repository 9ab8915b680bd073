"""Ideas cut at bar lines decode on their own; the sampler's examples; repairing samples."""
import numpy as np
import pytest

from composer import IdeaSampler, cut_ideas, finish_idea, idea_example, select_bars, standalone
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
    np.testing.assert_array_equal(example["encoder_ids"][:n + 2], [1, *tokens, 0])
    np.testing.assert_array_equal(example["targets"][:n + 2], [*tokens, 2, 0])
    np.testing.assert_array_equal(example["weights"], np.arange(96) <= n)
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
