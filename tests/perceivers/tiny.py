"""Tiny PerceiverS models shared by the perceivers tests, each initialised (and compiled) once."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from perceivers import Decoder, PerceiverS

VOCAB, L, N = 40, 32, 8  # vocabulary, context length, query length
BATCH = 6  # rows of every full forward pass the tests compile
VARIANTS = {  # name -> (scale_window, combination, num_layers)
    "perceiver_ar": (None, "cascade", 2),
    "cascade": (6, "cascade", 2),
    "sum": (6, "sum", 1),
    "concat": (6, "concat", 1),
}


def make_model(name: str) -> PerceiverS:
    scale_window, combination, num_layers = VARIANTS[name]
    return PerceiverS(vocab_size=VOCAB, query_length=N, d_model=32, num_heads=2,
                      num_layers=num_layers, mlp_dim=64, scale_window=scale_window,
                      combination=combination, rotary_fraction=0.5)


def fast_compile(fn, *args):
    """`jax.jit(fn)` compiled at XLA optimisation level 0: the same program, a fraction of the
    CPU compile time (as in tests/layers)."""
    return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


@functools.cache
def model_and_params(name: str):
    model = make_model(name)
    ids = jnp.zeros((1, L), jnp.int32)
    key = jax.random.key(1)
    params = fast_compile(lambda key: model.init(key, ids)["params"], key)(key)
    return model, params


@functools.cache
def _full_forward(name: str):
    model, params = model_and_params(name)
    ids, mask = jnp.zeros((BATCH, L), jnp.int32), jnp.ones((BATCH, L), bool)
    return fast_compile(lambda params, ids, mask: model.apply({"params": params}, ids, mask),
                        params, ids, mask)


def full_forward(name: str, params, ids_BxL, mask_BxL):
    """Logits [B, N, V] of the model `name`; one compiled program (batch padded to BATCH)."""
    B = ids_BxL.shape[0]
    if B > BATCH:
        raise ValueError(f"batch {B} > {BATCH}")
    pad = ((0, BATCH - B), (0, 0))
    logits = _full_forward(name)(params, np.pad(ids_BxL, pad), np.pad(mask_BxL, pad))
    return np.asarray(logits)[:B]


@functools.cache
def decoder(name: str, reset_fill: int = 3) -> Decoder:
    """A Decoder shared by the tests, so its programs compile once."""
    return Decoder(model_and_params(name)[0], L, reset_fill=reset_fill)


def random_tokens(length: int, seed: int = 0, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, VOCAB, (batch, length)).astype(np.int32)
