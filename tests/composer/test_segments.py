"""Which latent each token reads: parts of a bar follow the onsets of PerTok's time-shifts and
the TimeSig in force; one token at a time (sampling) gives the same index as the whole
sequence (training), in NumPy and jax.numpy."""
import jax.numpy as jnp
import numpy as np
import pytest

from composer import composition_view
from composer.segments import Segments, used_latents
from pertok import PerTok
from pertok.synthetic import write_corpus


@pytest.fixture(scope="module")
def tokenizer():
    return PerTok()


def _ids(tokenizer, names):
    return np.array([[1] + [tokenizer.vocab.ids[name] for name in names]])


def _one_at_a_time(segments, ids_BxT, xp=np, positions=False):
    state, out = segments.start(ids_BxT.shape[0], xp=xp), []
    read = segments.current_position if positions else segments.current
    for t in range(ids_BxT.shape[1]):
        state = segments.advance(state, xp.asarray(ids_BxT[:, t]), xp=xp)
        out.append(np.asarray(read(state, xp=xp)))
    return np.stack(out, axis=1)


def test_parts_follow_the_onsets_and_the_meter(tokenizer):
    segments = Segments.for_tokenizer(tokenizer, num_bars=2, per_bar=4)
    assert segments.num_latents == 8
    # 3/4 at 960 ticks per quarter: a bar of 2880 ticks, parts of 720.
    ids = _ids(tokenizer, ["Bar", "TimeSig_3/4", "Program_0", "Pitch_60", "Duration_240",
                           "TimeShift_480", "Pitch_62", "Duration_240",  # 480: still the first part
                           "TimeShift_480", "Pitch_64", "Duration_240",  # 960: the second
                           "TimeShift_1440", "Pitch_65", "Duration_240",  # 2400: the last
                           "Bar", "TimeShift_960", "Pitch_67", "Duration_240"])  # bar 2, 960
    expected = [0] * 9 + [1] * 3 + [3] * 3 + [4, 5, 5, 5]
    np.testing.assert_array_equal(segments.index(ids)[0], expected)
    np.testing.assert_array_equal(np.asarray(segments.index(jnp.asarray(ids), xp=jnp))[0], expected)
    np.testing.assert_array_equal(_one_at_a_time(segments, ids)[0], expected)
    np.testing.assert_array_equal(_one_at_a_time(segments, jnp.asarray(ids), xp=jnp)[0], expected)
    # Before any TimeSig a bar is 4/4 (3840 ticks): 960 is its second part.
    no_meter = _ids(tokenizer, ["Bar", "TimeShift_960", "Pitch_60", "Duration_240"])
    np.testing.assert_array_equal(segments.index(no_meter)[0], [0, 0, 1, 1, 1])
    used = used_latents(segments.index(ids), ids != 0, 8)
    np.testing.assert_array_equal(used[0], [1, 1, 0, 1, 1, 1, 0, 0])


def test_per_bar_and_per_idea(tokenizer):
    ids = _ids(tokenizer, ["Bar", "TimeSig_4/4", "TimeShift_1920", "Pitch_60", "Duration_240",
                           "Bar", "Pitch_62", "Duration_240", "Bar", "Pitch_64", "Duration_240"])
    per_bar = Segments.for_tokenizer(tokenizer, num_bars=2, per_bar=1)
    # A third bar past the idea's most bars reads the last latent.
    np.testing.assert_array_equal(per_bar.index(ids)[0], [0] * 6 + [1] * 3 + [1] * 3)
    per_idea = Segments.for_tokenizer(tokenizer, num_bars=2, per_bar=0)
    assert per_idea.num_latents == 1
    np.testing.assert_array_equal(per_idea.index(ids), np.zeros_like(ids))
    np.testing.assert_array_equal(_one_at_a_time(per_idea, ids), np.zeros_like(ids))


def test_real_ideas_give_the_same_index_whole_and_one_token_at_a_time(tokenizer, tmp_path):
    segments = Segments.for_tokenizer(tokenizer, num_bars=64, per_bar=4)
    paths = write_corpus(tmp_path, 3, seed=5)
    for path in paths:
        ids = np.concatenate([[1], composition_view(tokenizer.encode(path), tokenizer)[:400]])[None]
        # Ids past the vocabulary (the prefix's bar counts) are neither shifts nor meters.
        ids = np.concatenate([[[tokenizer.vocab_size + 1]], ids], axis=1)
        whole = segments.index(ids)
        np.testing.assert_array_equal(_one_at_a_time(segments, ids), whole)
        assert whole.max() > 8 and np.all(np.diff(whole[0]) >= 0)  # many parts, in order
        positions = segments.positions(ids)  # onset steps since each Bar
        np.testing.assert_array_equal(_one_at_a_time(segments, ids, positions=True), positions)
        assert positions.max() > 12 and (positions[0][ids[0] == tokenizer.vocab.ids["Bar"]] == 0).all()
