"""Masks as pure functions, checked against literal 0/1 matrices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layers import masks


def _np(mask):
    return np.asarray(mask).astype(int)


def test_causal_with_offset_t_ne_s():
    # T=3 queries at key positions 2, 3, 4 of S=5 (Perceiver AR: q_offset = S - T).
    expected = [[1, 1, 1, 0, 0],
                [1, 1, 1, 1, 0],
                [1, 1, 1, 1, 1]]
    np.testing.assert_array_equal(_np(masks.causal_mask(3, 5, q_offset=2)), expected)


def test_causal_square_is_lower_triangular():
    expected = [[1, 0, 0, 0],
                [1, 1, 0, 0],
                [1, 1, 1, 0],
                [1, 1, 1, 1]]
    np.testing.assert_array_equal(_np(masks.causal_mask(4, 4)), expected)


def test_dot_product_attention_is_causal_would_be_wrong_here():
    # jax.nn's is_causal aligns query 0 with key 0; ours puts it at q_offset = S - T.
    assert not np.array_equal(_np(masks.causal_mask(3, 5, q_offset=2)), np.tril(np.ones((3, 5))))


def test_scale_window_with_offset():
    # W=2: query t sees keys q_offset + t - 1 and q_offset + t.
    expected = [[0, 1, 1, 0, 0, 0],
                [0, 0, 1, 1, 0, 0],
                [0, 0, 0, 1, 1, 0],
                [0, 0, 0, 0, 1, 1]]
    np.testing.assert_array_equal(_np(masks.scale_window_mask(4, 6, 2, q_offset=2)), expected)


def test_scale_window_square():
    expected = [[1, 0, 0, 0, 0],
                [1, 1, 0, 0, 0],
                [1, 1, 1, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 0, 1, 1, 1]]
    np.testing.assert_array_equal(_np(masks.scale_window_mask(5, 5, 3)), expected)


def test_window_one_is_the_diagonal_at_the_offset():
    expected = [[0, 0, 1, 0, 0],
                [0, 0, 0, 1, 0],
                [0, 0, 0, 0, 1]]
    np.testing.assert_array_equal(_np(masks.scale_window_mask(3, 5, 1, q_offset=2)), expected)


@pytest.mark.parametrize("window", [5, 6, 100])
def test_window_at_least_s_equals_causal(window):
    np.testing.assert_array_equal(_np(masks.scale_window_mask(3, 5, window, q_offset=2)),
                                  _np(masks.causal_mask(3, 5, q_offset=2)))


def test_last_window_mask_with_w_equal_t_is_causal_over_the_queries_own_positions():
    # T = W = 3 queries at key positions 3, 4, 5 of S = 6: keys 3.. only, causally.
    expected = [[0, 0, 0, 1, 0, 0],
                [0, 0, 0, 1, 1, 0],
                [0, 0, 0, 1, 1, 1]]
    np.testing.assert_array_equal(_np(masks.last_window_mask(3, 6, 3, q_offset=3)), expected)


def test_last_window_mask_differs_from_the_sliding_window():
    # W = 4, T = 4 at positions 2..5 of S = 6: "last" sees keys 2.. (fixed), "sliding" the 4
    # keys ending at each query.
    last = [[0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 1]]
    sliding = [[1, 1, 1, 0, 0, 0],
               [1, 1, 1, 1, 0, 0],
               [0, 1, 1, 1, 1, 0],
               [0, 0, 1, 1, 1, 1]]
    np.testing.assert_array_equal(_np(masks.last_window_mask(4, 6, 4, q_offset=2)), last)
    np.testing.assert_array_equal(_np(masks.scale_window_mask(4, 6, 4, q_offset=2)), sliding)


def test_last_window_shorter_than_the_queries_leaves_early_queries_blind():
    # W = 2 < T = 4: keys 4 and 5 only; queries at 2 and 3 see nothing.
    expected = [[0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 1, 0],
                [0, 0, 0, 0, 1, 1]]
    np.testing.assert_array_equal(_np(masks.last_window_mask(4, 6, 2, q_offset=2)), expected)


def test_scale_mask_keys_per_reading():
    assert masks.scale_mask_keys("sliding", 4, 10) == (4, None)
    assert masks.scale_mask_keys("last", 4, 10) == (None, 6)
    assert masks.scale_mask_keys("last", None, 10) == (None, None)
    via_keys = masks.attention_mask(4, 6, q_offset=2, first_key=2)[0, 0]
    np.testing.assert_array_equal(_np(via_keys), _np(masks.last_window_mask(4, 6, 4, q_offset=2)))
    with pytest.raises(ValueError, match="scale_mask='fixed'"):
        masks.scale_mask_keys("fixed", 4, 10)


def test_left_padding_mask():
    expected = [[0, 0, 1, 1],
                [1, 1, 1, 1],
                [0, 0, 0, 0]]
    np.testing.assert_array_equal(_np(masks.left_padding_mask(jnp.array([2, 4, 0]), 4)),
                                  expected)


def test_bidirectional_and_padding():
    np.testing.assert_array_equal(_np(masks.bidirectional_mask(2, 3)), np.ones((2, 3)))
    kv = jnp.array([[True, True, False]])
    q = jnp.array([[True, False]])
    np.testing.assert_array_equal(_np(masks.padding_mask(kv)), [[[[1, 1, 0]]]])
    np.testing.assert_array_equal(_np(masks.padding_mask(kv, q)), [[[[1, 1, 0], [0, 0, 0]]]])


def test_attention_mask_combines_structure_and_padding():
    kv_mask = masks.left_padding_mask(jnp.array([3, 5]), 5)
    mask = masks.attention_mask(3, 5, q_offset=2, scale_window=2, kv_mask=kv_mask)
    assert mask.shape == (2, 1, 3, 5)
    expected_b0 = [[0, 0, 1, 0, 0],  # key 1 is in the window but is padding
                   [0, 0, 1, 1, 0],
                   [0, 0, 0, 1, 1]]
    expected_b1 = [[0, 1, 1, 0, 0],
                   [0, 0, 1, 1, 0],
                   [0, 0, 0, 1, 1]]
    np.testing.assert_array_equal(_np(mask[:, 0]), [expected_b0, expected_b1])
    bidirectional = masks.attention_mask(2, 5, causal=False, kv_mask=kv_mask)
    np.testing.assert_array_equal(_np(bidirectional[0, 0]), [[0, 0, 1, 1, 1]] * 2)


def test_traced_offset_matches_static():
    traced = jax.jit(lambda off: masks.causal_mask(3, 6, q_offset=off))(jnp.int32(2))
    np.testing.assert_array_equal(_np(traced), _np(masks.causal_mask(3, 6, q_offset=2)))


def test_bad_windows_raise():
    with pytest.raises(ValueError, match="causal"):
        masks.attention_mask(2, 2, causal=False, scale_window=2)
    with pytest.raises(ValueError, match=">= 1"):
        masks.scale_window_mask(2, 2, 0)


@settings(max_examples=200, deadline=None)
@given(T=st.integers(1, 12), S=st.integers(1, 20), q_offset=st.integers(0, 30),
       causal=st.booleans(), window=st.one_of(st.none(), st.integers(1, 25)),
       first_key=st.one_of(st.none(), st.integers(0, 25)))
def test_visible_key_span_is_tight(T, S, q_offset, causal, window, first_key):
    window = window if causal else None
    q_pos, k_pos = q_offset + np.arange(T)[:, None], np.arange(S)  # the definition
    mask = np.ones((T, S), bool)
    if causal:
        mask &= k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    if first_key is not None:
        mask &= k_pos >= first_key
    span = masks.visible_key_span(T, S, q_offset=q_offset, causal=causal, scale_window=window,
                                  first_key=first_key)
    seen_keys = np.flatnonzero(mask.any(axis=0))
    if span is None:
        assert seen_keys.size == 0
    else:
        assert (seen_keys.min(), seen_keys.max() + 1) == span
