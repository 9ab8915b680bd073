"""Splash attention (the TPU kernel) against the dense "xla" reference, values and gradients.

On CPU `impl="splash"` runs in the Pallas TPU interpreter (the branch `layers.platforms` keeps
when lowering for cpu), so these tests check the very kernel that Mosaic compiles on a TPU;
tests/test_lowering.py checks that it lowers to a Mosaic custom call for "tpu". Tolerances as
in test_layers_attention.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layers.attention import attention
from layers.platforms import PlatformError
from layers.splash import rows_with_keys
from tests.layers.test_layers_attention import (BF16_CASES, BF16_TOL, CASES, F32_TOL, Case,
                                                _assert_close)

# Several 128-wide blocks, so that splash skips hidden block pairs: the window leaves the first
# key blocks of the later query blocks out, and row 1's padding covers whole key blocks and
# leaves its first queries without any key.
MULTI_BLOCK = Case("window_multi_block_padded", T=256, S=640, D=64, scale_window=100,
                   left_pad=(0, 450), B=2, H=1)
# The interpreter is slow on CPU: fully masked rows (causal), the non-causal mask with an
# all-padding row, and the multi-block window; bfloat16 below takes the small padded window.
SPLASH_CASES = [CASES[2], CASES[3], MULTI_BLOCK]


@pytest.mark.parametrize("case", SPLASH_CASES, ids=lambda c: c.name)
def test_splash_matches_xla_float32(case):
    _assert_close(case, "splash", jnp.float32, F32_TOL)


@pytest.mark.parametrize("case", BF16_CASES, ids=lambda c: c.name)
def test_splash_matches_xla_bfloat16(case):
    _assert_close(case, "splash", jnp.bfloat16, BF16_TOL)


@pytest.mark.parametrize("case", CASES + [MULTI_BLOCK], ids=lambda c: c.name)
def test_rows_with_keys_equals_the_dense_mask(case):
    kw = case.kwargs()
    kv_mask = jnp.ones((case.B, case.S), bool) if kw["kv_mask"] is None else kw["kv_mask"]
    seen = rows_with_keys(case.T, case.S, q_offset=kw["q_offset"], causal=case.causal,
                          scale_window=case.scale_window, kv_mask_BxS=kv_mask)
    np.testing.assert_array_equal(np.asarray(seen), case.mask().any(-1))


def test_splash_with_a_known_platform_refuses_gpu():
    q = jnp.zeros((1, 8, 1, 16))
    with pytest.raises(PlatformError, match="splash"):
        attention(q, q, q, impl="splash", platform="cuda")
    with pytest.raises(PlatformError, match="pallas"):
        attention(q, q, q, impl="pallas", platform="tpu")


def test_splash_interpret_on_request_equals_xla():
    """interpret=True is the same kernel in the interpreter whatever the platform."""
    case = CASES[1]
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((case.B, case.T, case.H, case.D)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((case.B, case.S, case.H, case.D)), jnp.float32)
    kw = case.kwargs()
    out = jax.jit(lambda q, k: attention(q, k, k, impl="splash", interpret=True, **kw))(q, k)
    ref = attention(q, k, k, impl="xla", **kw)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=1e-5)
