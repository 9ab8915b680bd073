"""Transformer blocks at a tiny size: dtypes, causality, offsets, remat, dropout, decoding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layers import masks
from layers.blocks import CrossAttentionBlock, SelfAttentionBlock, TransformerBlock
from layers.cache import KVCache
from tests.layers.layers_testing import fast_jit, normal

B, T, WIDTH, HEADS, HEAD_DIM = 2, 8, 32, 2, 16
BLOCK = functools.partial(TransformerBlock, num_heads=HEADS, head_dim=HEAD_DIM, mlp_dim=64,
                          rotary_fraction=0.5)


def init(module, *args, **kwargs):
    # "rbg" keys compile far faster than threefry on CPU; the test needs any parameters.
    key = jax.random.key(0, impl="rbg")
    return fast_jit(functools.partial(module.init, **kwargs))(key, *args)


def test_compute_dtype_and_float32_params():
    x = normal(0, (B, T, WIDTH), jnp.bfloat16)
    block = BLOCK(dtype=jnp.bfloat16, param_dtype=jnp.float32, scale_window=4)
    params = init(block, x)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y = fast_jit(block.apply)(params, x)
    assert y.shape == x.shape and y.dtype == jnp.bfloat16 and np.isfinite(y).all()


def _input_gradient_support(apply_fn, x, positions):
    """Per output position t: [B, S] bool, which input positions reach it through gradients."""
    grad_fn = fast_jit(lambda x, weight: jax.grad(lambda x: (apply_fn(x) * weight).sum())(x))
    out_shape = jax.eval_shape(apply_fn, x).shape
    for t in positions:
        weight = jnp.zeros(out_shape).at[:, t].set(1.0)
        yield t, np.abs(np.asarray(grad_fn(x, weight))).sum(-1) > 0


@pytest.mark.parametrize("scale_window", [None, 3])
def test_self_attention_block_is_causal(scale_window):
    x = normal(1, (B, T, WIDTH))
    block = BLOCK(scale_window=scale_window)
    params = init(block, x)
    expected = np.asarray(masks.attention_mask(T, T, scale_window=scale_window))[0, 0]
    for t, support in _input_gradient_support(lambda x: block.apply(params, x), x, (0, 4, T - 1)):
        np.testing.assert_array_equal(support, np.broadcast_to(expected[t], (B, T)))


def test_encoder_block_sees_the_future():
    x = normal(2, (B, T, WIDTH))
    block = BLOCK(causal=False)
    params = init(block, x)
    [(_, support)] = _input_gradient_support(lambda x: block.apply(params, x), x, [0])
    assert support.all()


@pytest.mark.parametrize("scale_window, scale_mask", [(None, "sliding"), (3, "sliding"),
                                                      (3, "last"), (6, "last")])
def test_cross_attention_latents_sit_at_the_end(scale_window, scale_mask):
    S, latents = 12, 4
    context, x = normal(3, (B, S, WIDTH)), normal(4, (B, latents, WIDTH))
    block = CrossAttentionBlock(HEADS, HEAD_DIM, scale_window=scale_window, scale_mask=scale_mask,
                                rotary_fraction=1.0)
    params = init(block, x, context)
    if scale_mask == "last":  # W = 3 < 4 latents: the first latent sees nothing
        expected = np.asarray(masks.last_window_mask(latents, S, scale_window, S - latents))
    else:
        expected = np.asarray(masks.attention_mask(latents, S, q_offset=S - latents,
                                                   scale_window=scale_window))[0, 0]
    support = _input_gradient_support(lambda c: block.apply(params, x, c), context, range(latents))
    for t, touched in support:
        np.testing.assert_array_equal(touched, np.broadcast_to(expected[t], (B, S)))


def test_implementations_agree_inside_a_block():
    x = normal(5, (B, T, WIDTH))
    kv_mask = masks.left_padding_mask(jnp.array([T, T - 3]), T)
    blocks = {impl: BLOCK(attention_impl=impl, scale_window=5) for impl in ("xla", "blockwise")}
    params = init(blocks["xla"], x, kv_mask)
    outs = {impl: fast_jit(b.apply)(params, x, None, kv_mask) for impl, b in blocks.items()}
    np.testing.assert_allclose(outs["blockwise"], outs["xla"], atol=1e-5, rtol=1e-5)


def test_left_padding_content_is_invisible():
    x = normal(6, (B, T, WIDTH))
    kv_mask = masks.left_padding_mask(jnp.array([T - 3, T - 3]), T)
    block = BLOCK()
    params = init(block, x, None, kv_mask)
    apply_fn = fast_jit(lambda x: block.apply(params, x, None, kv_mask))
    changed = x.at[:, :3].set(normal(7, (B, 3, WIDTH)))
    np.testing.assert_allclose(apply_fn(changed)[:, 3:], apply_fn(x)[:, 3:], atol=1e-5)


def test_remat_changes_neither_values_nor_gradients():
    x = normal(8, (B, T, WIDTH))
    plain, remat = BLOCK(), BLOCK(remat=True)
    params = init(plain, x)
    assert jax.tree.structure(params) == jax.tree.structure(init(remat, x))

    def value_and_grads(block):
        loss = lambda params: (block.apply(params, x) ** 2).sum()  # noqa: E731
        return jax.tree.leaves(fast_jit(jax.value_and_grad(loss))(params))

    for a, b in zip(value_and_grads(plain), value_and_grads(remat)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_dropout_only_when_not_deterministic():
    x = normal(10, (B, T, WIDTH))
    block, no_dropout = BLOCK(dropout_rate=0.5), BLOCK()
    params = init(block, x)
    apply_fn = fast_jit(block.apply, static_argnames="deterministic")
    np.testing.assert_array_equal(apply_fn(params, x), fast_jit(no_dropout.apply)(params, x))
    rngs = {"dropout": jax.random.key(1, impl="rbg")}
    dropped = apply_fn(params, x, deterministic=False, rngs=rngs)
    assert not np.allclose(dropped, apply_fn(params, x))


def test_cached_decoding_equals_full_forward():
    x = normal(11, (B, T, WIDTH))
    kv_mask = masks.left_padding_mask(jnp.array([T, T - 2]), T)
    block = BLOCK(scale_window=3)
    params = init(block, x, None, kv_mask)
    full = fast_jit(block.apply)(params, x, None, kv_mask)
    step = fast_jit(lambda x_t, m_t, cache: block.apply(params, x_t, None, m_t, cache=cache))
    cache, outs = KVCache.init(B, T, HEADS, HEAD_DIM), []
    for t in range(T):
        y_t, cache = step(x[:, t:t + 1], kv_mask[:, t:t + 1], cache)
        outs.append(y_t)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale_mask", ["sliding", "last"])
def test_window_branch_projects_only_the_keys_some_query_sees(scale_mask):
    """Of S = 40 context positions, 4 latents and W = 6: keys and values are projected for
    4 + 6 - 1 = 9 positions ("sliding") or the last 6 ("last"), never for all 40."""
    S, latents, W = 40, 4, 6
    context, x = normal(14, (B, S, WIDTH)), normal(15, (B, latents, WIDTH))
    block = CrossAttentionBlock(HEADS, HEAD_DIM, scale_window=W, scale_mask=scale_mask)
    params = init(block, x, context)
    jaxpr = jax.make_jaxpr(lambda c: block.apply(params, x, c))(context)
    projected = {eqn.invars[0].aval.shape[1] for eqn in jaxpr.eqns
                 if eqn.primitive.name == "dot_general" and eqn.invars[0].aval.ndim == 3}
    assert max(projected) == {"sliding": latents + W - 1, "last": W}[scale_mask], projected


@pytest.mark.parametrize("scale_mask", ["sliding", "last"])
def test_cross_attention_cache_grows_with_the_context(scale_mask):
    # Perceiver-AR decoding: each new token joins the context; its latent is the newest query.
    x = normal(12, (B, T, WIDTH))
    block = CrossAttentionBlock(HEADS, HEAD_DIM, scale_window=4, scale_mask=scale_mask,
                                rotary_fraction=0.5)
    params = init(block, x, x)
    full = fast_jit(block.apply)(params, x, x)
    step = fast_jit(lambda x_t, cache: block.apply(params, x_t, x_t, cache=cache))
    cache, outs = KVCache.init(B, T, HEADS, HEAD_DIM), []
    for t in range(T):
        y_t, cache = step(x[:, t:t + 1], cache)
        outs.append(y_t)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_block_configuration_errors():
    x = normal(13, (B, T, WIDTH))
    with pytest.raises(ValueError, match="needs context"):
        init(BLOCK(cross_attention=True), x)
    with pytest.raises(ValueError, match="self_attention or cross_attention"):
        init(BLOCK(self_attention=False), x)
    assert SelfAttentionBlock(HEADS, HEAD_DIM).causal  # the decoder default
