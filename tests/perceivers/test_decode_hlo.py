"""The compiled decoding step reads and writes its caches in place.

XLA's optimized HLO of one step (and of the sampling loop around it) must hold no transpose,
copy or concatenate whose result is as large as a key/value cache buffer: with caches stored
[B, S, H, D], every token transposed the whole global cache; with [B, H, S, D], it copied it.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perceivers import init_cache
from tests.perceivers import tiny
from tests.perceivers.tiny import L

MOVES = ("transpose", "copy", "concatenate")
_INSTRUCTION = re.compile(r"= (\w+)\[([\d,]*)\]\S* (" + "|".join(MOVES) + r")\(")


def cache_sized_moves(hlo_text: str, smallest_cache: int) -> list[str]:
    """Lines of `hlo_text` (fused computations included) moving >= `smallest_cache` elements."""
    found = []
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.search(line)
        if match and np.prod([int(d) for d in match.group(2).split(",") if d]) >= smallest_cache:
            found.append(line.strip()[:160])
    return found


def _smallest_cache(cache) -> int:
    return min(leaf.size for leaf in jax.tree.leaves(cache) if leaf.ndim == 3)


def _decoding(name: str):
    """(step, model, params, abstract cache): one token in, next logits out, as sampling runs
    it (batch 1, the cache donated so that its keys can be written in place)."""
    model, params = tiny.model_and_params(name)
    cache = jax.eval_shape(lambda: init_cache(model, 1, L, 3))

    def step(params, token_B, cache):
        logits_Bx1xV, cache = model.apply({"params": params}, token_B[:, None], query_length=1,
                                          cache=cache)
        return logits_Bx1xV[:, 0], cache

    return step, params, cache


@pytest.mark.parametrize("name", ["cascade", "perceiver_ar"])
def test_decode_step_moves_no_cache_sized_buffer(name):
    step, params, cache = _decoding(name)
    token = jax.ShapeDtypeStruct((1,), jnp.int32)
    hlo = jax.jit(step, donate_argnums=2).lower(params, token, cache).compile().as_text()
    assert "dynamic-update-slice" in hlo  # the keys are written, in place
    assert cache_sized_moves(hlo, _smallest_cache(cache)) == []


def test_a_loop_of_decode_steps_moves_no_cache_sized_buffer():
    """The sampler runs its steps in a `lax.scan`, the caches carried from step to step."""
    step, params, cache = _decoding("cascade")

    def loop(params, token_B, cache):
        def body(carry, _):
            token_B, cache = carry
            logits_BxV, cache = step(params, token_B, cache)
            return (jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32), cache), None

        return jax.lax.scan(body, (token_B, cache), None, length=4)[0]

    token = jax.ShapeDtypeStruct((1,), jnp.int32)
    hlo = jax.jit(loop, donate_argnums=2).lower(params, token, cache).compile().as_text()
    assert "while" in hlo
    assert cache_sized_moves(hlo, _smallest_cache(cache)) == []


def test_the_check_finds_the_transpose_of_a_sequence_major_cache():
    """The layout this replaced: a [B, S, H, D] cache attended by one query."""
    B, S, H, D = 1, 64, 2, 16

    def step(cache_BxSxHxD, q_Bx1xHxD, at):
        cache_BxSxHxD = jax.lax.dynamic_update_slice_in_dim(cache_BxSxHxD, q_Bx1xHxD, at, 1)
        return jnp.einsum("bthd,bshd->bhts", q_Bx1xHxD, cache_BxSxHxD), cache_BxSxHxD

    args = (jax.ShapeDtypeStruct((B, S, H, D), jnp.float32),
            jax.ShapeDtypeStruct((B, 1, H, D), jnp.float32), jax.ShapeDtypeStruct((), jnp.int32))
    hlo = jax.jit(step, donate_argnums=0).lower(*args).compile().as_text()
    assert cache_sized_moves(hlo, B * S * H * D)
