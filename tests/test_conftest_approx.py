"""The suite-wide guard: a JAX array never reaches pytest.approx unnoticed."""
import jax.numpy as jnp
import numpy as np
import pytest


def test_approx_refuses_jax_arrays_on_either_side():
    with pytest.raises(TypeError, match="JAX array as its expected value"):
        pytest.approx(jnp.array(1.0))
    with pytest.raises(TypeError, match="JAX array as its compared value"):
        assert jnp.array(1.0) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="JAX array"):
        pytest.approx([1.0, jnp.array(2.0)])


def test_approx_still_compares_floats_lists_and_numpy():
    assert 0.1 + 0.2 == pytest.approx(0.3) and 0.31 != pytest.approx(0.3)
    assert [1.0, 2.0] == pytest.approx([1.0, 2.0 + 1e-9])
    assert np.float32(0.5) == pytest.approx(0.5) and np.array([1.0, 2.0]) == pytest.approx([1.0, 2.0])
    assert pytest.approx(2.0, abs=0.5) == 2.4
