"""Incremental decoding: attending over a growing KVCache, or over the ring of a
WindowKVCache, equals full masked attention."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layers import masks
from layers.attention import attention
from layers.cache import KVCache, WindowKVCache
from tests.layers.layers_testing import normal

B, S, H, D = 2, 24, 2, 16


@functools.partial(jax.jit, static_argnames="skip")
def _append(cache, k, v, kv_mask, skip=0):
    return cache.append(k, v, kv_mask, skip=skip)


def _decode(q, k, v, kv_mask, *, chunk, causal, scale_window, first_key=None):
    """Feed keys/values `chunk` at a time; the last `chunk` queries attend after each append."""
    cache = KVCache.init(B, S, H, D)
    attend = jax.jit(lambda c, q_new: c.attend(q_new, causal=causal, scale_window=scale_window,
                                               first_key=first_key))
    outs = []
    for start in range(0, S, chunk):
        part = slice(start, start + chunk)
        cache = _append(cache, k[:, part], v[:, part], kv_mask[:, part])
        outs.append(attend(cache, q[:, part]))
    assert int(cache.length) == S
    return jnp.concatenate(outs, axis=1)


def _full(q, k, v, kv_mask, scale_window, first_key):
    """The reference: `layers.attention`; keys before `first_key` hidden through the key mask."""
    if first_key is not None:
        kv_mask = kv_mask & (jnp.arange(S) >= first_key)
    return jax.jit(lambda: attention(q, k, v, scale_window=scale_window, kv_mask=kv_mask,
                                     impl="xla"))()


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("scale_window, first_key", [(None, None), (5, None), (None, S - 5)])
def test_cached_decoding_equals_full_attention(chunk, scale_window, first_key):
    q, k, v = normal(0, (B, S, H, D)), normal(1, (B, S, H, D)), normal(2, (B, S, H, D))
    kv_mask = masks.left_padding_mask(jnp.array([S, S - 6]), S)  # row 1: left-padded prompt
    full = _full(q, k, v, kv_mask, scale_window, first_key)
    cached = _decode(q, k, v, kv_mask, chunk=chunk, causal=True, scale_window=scale_window,
                     first_key=first_key)
    np.testing.assert_allclose(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reading, prefill, keep", [("sliding", 10, 3 + 5 - 1), ("last", 20, 5)])
def test_window_ring_equals_full_attention_after_a_prefill_and_steps(reading, prefill, keep):
    """A prefill appends only the `keep` keys its 3 queries (and all later ones) can see,
    skipping the rest; then one key per step wraps around the ring of W + 3 - 1 slots."""
    W, fill = 5, 3
    scale_window, first_key = masks.scale_mask_keys(reading, W, S)
    q, k, v = normal(6, (B, S, H, D)), normal(7, (B, S, H, D)), normal(8, (B, S, H, D))
    kv_mask = masks.left_padding_mask(jnp.array([S, S - 6]), S)
    full = _full(q, k, v, kv_mask, scale_window, first_key)
    ring = WindowKVCache.init(B, W + fill - 1, H, D, context_length=S)
    attend = jax.jit(lambda c, q_new: c.attend(q_new, scale_window=scale_window,
                                               first_key=first_key))
    skip = prefill - keep
    ring = _append(ring, k[:, skip:prefill], v[:, skip:prefill], kv_mask[:, skip:prefill],
                   skip=skip)
    outs = [attend(ring, q[:, prefill - fill:prefill])]
    for t in range(prefill, S):
        ring = _append(ring, k[:, t:t + 1], v[:, t:t + 1], kv_mask[:, t:t + 1])
        outs.append(attend(ring, q[:, t:t + 1]))
    assert int(ring.length) == S and ring.context_length == S
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full[:, prefill - fill:],
                               atol=1e-5, rtol=1e-5)


def test_ring_slots_hold_the_newest_positions_and_skips_are_hidden():
    ring = WindowKVCache.init(1, 4, H, D)
    ones = jnp.ones((1, 6, H, D))
    ring = _append(ring, ones, ones, None, skip=0)  # positions 0..5: slots hold 4, 5, 2, 3
    np.testing.assert_array_equal(ring.slot_positions(), [4, 5, 2, 3])
    ring = _append(ring, ones[:, :1], ones[:, :1], None, skip=2)  # skip 6, 7; write 8
    np.testing.assert_array_equal(ring.slot_positions(), [8, 5, 6, 7])
    np.testing.assert_array_equal(ring.kv_mask_BxR[0], [True, True, False, False])


def test_window_reads_only_the_window():
    # Keys older than the window are garbage in the cache: the output must not change.
    q, k, v = normal(3, (B, 1, H, D)), normal(4, (B, S, H, D)), normal(5, (B, S, H, D))
    cache = _append(KVCache.init(B, S, H, D), k, v, jnp.ones((B, S), bool))
    poisoned = cache.replace(k_BHxSxD=cache.k_BHxSxD.at[:, :S - 4].set(jnp.nan))
    attend = jax.jit(lambda c: c.attend(q, scale_window=4))
    out = attend(poisoned)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, attend(cache), atol=1e-6)
    full = jax.jit(lambda: attention(q, k, v, q_offset=S - 1, scale_window=4, impl="xla"))()
    np.testing.assert_allclose(out, full, atol=1e-5)


def test_cache_is_a_pytree_that_jits():
    cache = KVCache.init(B, S, H, D, dtype=jnp.bfloat16)
    leaves = jax.tree.leaves(cache)
    assert len(leaves) == 4 and cache.max_length == S
    step = jax.jit(lambda c, kv: c.append(kv, kv))
    cache = step(step(cache, jnp.ones((B, 3, H, D))), jnp.ones((B, 3, H, D)))
    assert int(cache.length) == 6 and cache.k_BHxSxD.dtype == jnp.bfloat16
    np.testing.assert_array_equal(cache.kv_mask_BxS[0], np.arange(S) < 6)
