"""Incremental decoding: attending over a growing KVCache equals full masked attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layers import masks
from layers.attention import attention
from layers.cache import KVCache
from tests.layers.layers_testing import normal

B, S, H, D = 2, 24, 2, 16


@jax.jit
def _append(cache, k, v, kv_mask):
    return cache.append(k, v, kv_mask)


def _decode(q, k, v, kv_mask, *, chunk, causal, scale_window):
    """Feed keys/values `chunk` at a time; the last `chunk` queries attend after each append."""
    cache = KVCache.init(B, S, H, D)
    attend = jax.jit(lambda c, q_new: c.attend(q_new, causal=causal, scale_window=scale_window))
    outs = []
    for start in range(0, S, chunk):
        part = slice(start, start + chunk)
        cache = _append(cache, k[:, part], v[:, part], kv_mask[:, part])
        outs.append(attend(cache, q[:, part]))
    assert int(cache.length) == S
    return jnp.concatenate(outs, axis=1)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("scale_window", [None, 5])
def test_cached_decoding_equals_full_attention(chunk, scale_window):
    q, k, v = normal(0, (B, S, H, D)), normal(1, (B, S, H, D)), normal(2, (B, S, H, D))
    kv_mask = masks.left_padding_mask(jnp.array([S, S - 6]), S)  # row 1: left-padded prompt
    full = jax.jit(lambda: attention(q, k, v, scale_window=scale_window, kv_mask=kv_mask,
                                     impl="xla"))()
    cached = _decode(q, k, v, kv_mask, chunk=chunk, causal=True, scale_window=scale_window)
    np.testing.assert_allclose(cached, full, atol=1e-5, rtol=1e-5)


def test_window_reads_only_the_window():
    # Keys older than the window are garbage in the cache: the output must not change.
    q, k, v = normal(3, (B, 1, H, D)), normal(4, (B, S, H, D)), normal(5, (B, S, H, D))
    cache = _append(KVCache.init(B, S, H, D), k, v, jnp.ones((B, S), bool))
    poisoned = cache.replace(k_BxSxHxD=cache.k_BxSxHxD.at[:, :S - 4].set(jnp.nan))
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
    assert int(cache.length) == 6 and cache.k_BxSxHxD.dtype == jnp.bfloat16
    np.testing.assert_array_equal(cache.kv_mask_BxS[0], np.arange(S) < 6)
