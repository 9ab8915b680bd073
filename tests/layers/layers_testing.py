"""Helpers shared by the layers tests: cheap inputs and cheap compiles on CPU."""
import jax
import jax.numpy as jnp
import numpy as np


def normal(seed: int, shape, dtype=jnp.float32) -> jax.Array:
    """Standard normal test input; numpy, because threefry compiles anew for every shape."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def fast_jit(fn, **jit_kwargs):
    """`jax.jit`, compiled at LLVM optimisation level 0: the same HLO and semantics, about a
    third of the CPU compile time, which dominates these tiny tests."""
    jitted, compiled = jax.jit(fn, **jit_kwargs), {}
    static = jit_kwargs.get("static_argnames", ())
    static = {static} if isinstance(static, str) else set(static)

    def call(*args, **kwargs):
        dynamic = {k: v for k, v in kwargs.items() if k not in static}
        signature = (jax.tree.structure((args, dynamic)),
                     tuple((np.shape(x), str(getattr(x, "dtype", type(x))))
                           for x in jax.tree.leaves((args, dynamic))),
                     tuple(sorted((k, kwargs[k]) for k in static if k in kwargs)))
        if signature not in compiled:
            compiled[signature] = jitted.lower(*args, **kwargs).compile(
                {"xla_backend_optimization_level": 0})
        return compiled[signature](*args, **dynamic)

    return call
