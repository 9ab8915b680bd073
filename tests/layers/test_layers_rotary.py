"""Rotary embeddings: relative positions, partial rotation, explicit positions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layers.rotary import apply_rotary, rotary_dim
from tests.layers.layers_testing import normal

# Jitted once per shape: eager op-by-op dispatch would dominate these tests' time.
rotate = jax.jit(apply_rotary, static_argnames=("fraction", "base"))


def _vectors(D=16):
    q, k = normal(0, (2, 1, 1, 1, D))
    return q, k


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 5000), n=st.integers(0, 5000), shift=st.integers(0, 3000))
def test_dot_products_depend_only_on_position_difference(m, n, shift):
    # Python floats: pytest >= 9.2's approx reads `.flat`, which JAX arrays do not have.
    assert float(_rotated_dot(m, n)) == pytest.approx(float(_rotated_dot(m + shift, n + shift)),
                                                      abs=2e-3, rel=1e-3)


@jax.jit
def _rotated_dot(m, n):
    q, k = _vectors()
    return jnp.sum(apply_rotary(q, jnp.reshape(m, (1, 1)))
                   * apply_rotary(k, jnp.reshape(n, (1, 1))))


def test_rotation_is_not_trivial():
    q, k = _vectors()
    same, apart = float(_rotated_dot(3, 3)), float(_rotated_dot(3, 9))
    assert same == pytest.approx(float(jnp.sum(q * k)), abs=1e-5)
    assert abs(same - apart) > 1e-3


def test_half_fraction_rotates_only_the_first_half():
    x = normal(1, (2, 5, 3, 32))
    y = rotate(x, jnp.arange(5), fraction=0.5)
    np.testing.assert_array_equal(y[..., 16:], x[..., 16:])
    assert not np.allclose(y[:, 1:, :, :16], x[:, 1:, :, :16])
    # Rotation keeps each pair's norm; position 0 is the identity.
    np.testing.assert_allclose(jnp.linalg.norm(y[..., :16], axis=-1),
                               jnp.linalg.norm(x[..., :16], axis=-1), rtol=1e-5)
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-6)


def test_positions_forms_agree_and_offsets_shift():
    x = normal(2, (2, 6, 2, 8))
    by_length = jax.jit(apply_rotary, static_argnums=1)(x, 6)
    np.testing.assert_allclose(rotate(x, jnp.arange(6)), by_length, atol=1e-6)
    np.testing.assert_allclose(rotate(x, jnp.tile(jnp.arange(6), (2, 1))), by_length, atol=1e-6)
    # A cache-style call for the last 2 positions equals the tail of the full call.
    np.testing.assert_allclose(rotate(x[:, 4:], jnp.array([4, 5])), by_length[:, 4:], atol=1e-6)


def test_dtype_kept_and_zero_fraction_is_identity():
    x = jnp.ones((1, 3, 1, 8), jnp.bfloat16)
    assert rotate(x, jnp.arange(3)).dtype == jnp.bfloat16
    assert apply_rotary(x, 3, fraction=0.0) is x


def test_odd_rotary_channels_raise():
    assert rotary_dim(64, 0.25) == 16
    with pytest.raises(ValueError, match="even"):
        rotary_dim(10, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rotary_dim(8, 1.5)
