"""Every attention implementation against the dense "xla" reference: values and gradients.

Tolerances, max abs difference against "xla" run on the same inputs:
  float32:  values 1e-5 + 1e-5 x |ref|;  gradients 1e-5 x max|ref grad| + 5e-6.
  bfloat16: values 2e-2 + 2e-2 x |ref|;  gradients 3e-2 x max|ref grad| + 1e-2.
A query row that sees no key must give exactly zero output and zero dq in every implementation.
Pallas runs in interpret mode on CPU, so shapes stay tiny. Test programs are compiled at LLVM
optimisation level 0 (`fast_jit`): same HLO, same semantics, a third of the CPU compile time.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layers import masks
from layers.attention import attention, choose_implementation
from tests.layers.layers_testing import fast_jit, normal

F32_TOL = dict(atol=1e-5, rtol=1e-5, grad=1e-5)
BF16_TOL = dict(atol=2e-2, rtol=2e-2, grad=3e-2)
BLOCKS = dict(block_q=16, block_k=32)  # several blocks, lanes and padding even at tiny sizes
ON_GPU = jax.default_backend() == "gpu"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    T: int
    S: int
    D: int = 32
    q_offset: int | None = None  # None: S - T, the queries are the last T key positions
    causal: bool = True
    scale_window: int | None = None
    left_pad: tuple[int, ...] | None = None  # per batch row: padded keys at the start
    B: int = 2
    H: int = 2

    def kwargs(self):
        kv_mask = None
        if self.left_pad is not None:
            kv_mask = masks.left_padding_mask(self.S - jnp.array(self.left_pad), self.S)
        offset = self.S - self.T if self.q_offset is None else self.q_offset
        return dict(q_offset=offset, causal=self.causal, scale_window=self.scale_window,
                    kv_mask=kv_mask)

    def mask(self):
        kw = self.kwargs()
        return np.broadcast_to(masks.attention_mask(self.T, self.S, **kw)[:, 0],
                               (self.B, self.T, self.S))


CASES = [
    Case("perceiver_offset", T=32, S=96),
    Case("perceiver_window_padded", T=32, S=96, D=64, scale_window=20, left_pad=(0, 40)),
    # Batch row 1: the first 20 queries see only padding, so their rows are fully masked.
    Case("square_causal_padded", T=64, S=64, left_pad=(0, 20)),
    # Odd lengths pad to whole blocks; batch row 1 is all padding.
    Case("bidirectional_odd_lengths", T=40, S=72, causal=False, left_pad=(5, 72)),
    Case("window_1_offset_not_at_end", T=16, S=80, q_offset=30, scale_window=1),
    Case("window_beyond_s_head_dim_128", T=16, S=40, D=128, scale_window=200, B=1, H=1),
]
BF16_CASES = [CASES[1]]


def _inputs(case: Case, dtype):
    shape_q, shape_k = (case.B, case.T, case.H, case.D), (case.B, case.S, case.H, case.D)
    seed = len(case.name) * 7919 + case.T
    return (normal(seed, shape_q, dtype), normal(seed + 1, shape_k, dtype),
            normal(seed + 2, shape_k, dtype),
            normal(seed + 3, shape_q))  # the output cotangent: every gradient nontrivial


@functools.lru_cache(maxsize=None)
def _reference(case: Case, dtype):
    """The "xla" values and gradients, computed once per case and dtype."""
    return _value_and_grads("xla", case, *_inputs(case, dtype))


def _value_and_grads(impl: str, case: Case, q, k, v, cotangent):
    extra = BLOCKS if impl in ("blockwise", "pallas") else {}

    def loss(q, k, v, cotangent):
        out = attention(q, k, v, impl=impl, **case.kwargs(), **extra)
        return (out.astype(jnp.float32) * cotangent).sum(), out

    grad_fn = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
    (_, out), grads = fast_jit(grad_fn)(q, k, v, cotangent)
    return np.asarray(out, np.float32), [np.asarray(g, np.float32) for g in grads]


def _assert_close(case: Case, impl: str, dtype, tol):
    q, k, v, cotangent = _inputs(case, dtype)
    out, grads = _value_and_grads(impl, case, q, k, v, cotangent)
    ref_out, ref_grads = _reference(case, dtype)
    np.testing.assert_allclose(out, ref_out, atol=tol["atol"], rtol=tol["rtol"],
                               err_msg=f"{impl} values")
    for name, g, ref in zip("qkv", grads, ref_grads):
        assert np.isfinite(g).all(), f"{impl} d{name} not finite"
        bound = tol["grad"] * np.abs(ref).max() + tol["atol"] / 2
        err = np.abs(g - ref).max()
        assert err <= bound, f"{impl} d{name}: max error {err:.3g} > {bound:.3g}"
    unseen_BxT = ~case.mask().any(-1)
    assert (out[unseen_BxT] == 0).all() and (grads[0][unseen_BxT] == 0).all()


@pytest.mark.parametrize("impl", ["blockwise", "pallas"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_xla_float32(impl, case):
    _assert_close(case, impl, jnp.float32, F32_TOL)


@pytest.mark.parametrize("impl", ["blockwise", "pallas"])
@pytest.mark.parametrize("case", BF16_CASES, ids=lambda c: c.name)
def test_matches_xla_bfloat16(impl, case):
    _assert_close(case, impl, jnp.bfloat16, BF16_TOL)


@pytest.mark.parametrize("impl", ["xla", "blockwise", "pallas"])
def test_no_gradient_to_hidden_keys(impl):
    """Causality through gradients: query t's output depends on exactly the keys it sees."""
    case = CASES[1]
    q, k, v, _ = _inputs(case, jnp.float32)
    extra = BLOCKS if impl != "xla" else {}

    def query_output(k, v, weight_BxTxHxD):
        return (attention(q, k, v, impl=impl, **case.kwargs(), **extra) * weight_BxTxHxD).sum()

    weight = normal(1, q.shape)
    grad_fn = fast_jit(jax.grad(query_output, argnums=(0, 1)))
    mask_BxTxS = case.mask()
    for t in (0, 13, case.T - 1):
        one_query = weight * (jnp.arange(case.T) == t)[None, :, None, None]
        dk, dv = grad_fn(k, v, one_query)
        for name, g in (("dk", dk), ("dv", dv)):
            touched_BxS = np.abs(np.asarray(g)).sum(axis=(2, 3)) > 0
            np.testing.assert_array_equal(touched_BxS, mask_BxTxS[:, t],
                                          err_msg=f"{impl} {name} query {t}")


@pytest.mark.parametrize("impl", ["xla", "blockwise", "pallas"])
def test_queries_past_every_window_give_zeros(impl):
    # Queries at positions 20..23 with W = 2 look back to 19 at most; the 8 keys end at 7.
    q, k, v = normal(0, (1, 4, 1, 16)), normal(1, (1, 8, 1, 16)), normal(2, (1, 8, 1, 16))
    loss = lambda q, k, v: attention(q, k, v, q_offset=20, scale_window=2, impl=impl).sum()  # noqa
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)
    assert value == 0 and all((np.asarray(g) == 0).all() for g in grads)


def test_auto_choice():
    assert choose_implementation("gpu", 1024, 32768, 64, 1024) == "pallas"
    assert choose_implementation("cpu", 256, 256, 64, None) == "xla"
    assert choose_implementation("cpu", 1024, 32768, 64, 1024) == "blockwise"
    assert choose_implementation("cpu", 1024, 32768, 64, None, static_offset=False) == "xla"
    case = CASES[0]
    q, k, v, _ = _inputs(case, jnp.float32)
    np.testing.assert_allclose(attention(q, k, v, **case.kwargs()),
                               attention(q, k, v, impl="xla", **case.kwargs()), atol=1e-6)


def test_traced_offset_needs_xla():
    q, k, v, _ = _inputs(CASES[0], jnp.float32)
    static = attention(q, k, v, q_offset=64, impl="xla")
    traced = jax.jit(lambda off: attention(q, k, v, q_offset=off, impl="xla"))(jnp.int32(64))
    np.testing.assert_allclose(traced, static, atol=1e-6)
    with pytest.raises(ValueError, match="static int q_offset"):
        jax.jit(lambda off: attention(q, k, v, q_offset=off, impl="blockwise"))(jnp.int32(64))


def test_bad_inputs_raise():
    q, k, v, _ = _inputs(CASES[0], jnp.float32)
    with pytest.raises(ValueError, match="impl="):
        attention(q, k, v, impl="flash")
    with pytest.raises(ValueError, match="kv_mask shape"):
        attention(q, k, v, kv_mask=jnp.ones((2, 5), bool))
    with pytest.raises(ValueError, match="head dim"):
        attention(q, k[..., :16], v[..., :16])
    with pytest.raises(ValueError, match="causal"):
        attention(q, k, v, causal=False, scale_window=4)


@pytest.mark.skipif(ON_GPU, reason="checks the CPU error; the GPU test below runs cuDNN")
def test_cudnn_off_gpu_says_so():
    q, k, v, _ = _inputs(CASES[0], jnp.bfloat16)
    with pytest.raises(ValueError, match="needs a GPU"):
        attention(q, k, v, impl="cudnn")


@pytest.mark.skipif(not ON_GPU, reason="cuDNN and compiled (non-interpret) Triton need a GPU")
@pytest.mark.parametrize("impl", ["cudnn", "pallas"])
def test_gpu_implementations_match_xla(impl):
    for case in BF16_CASES:
        _assert_close(case, impl, jnp.bfloat16, BF16_TOL)


def test_blockwise_memory_does_not_grow_as_t_by_s():
    """Doubling S adds T x S float32 logits to dense attention, ~nothing to blockwise."""
    T, D = 256, 16

    def temp_bytes(impl, S):
        q, k = jnp.ones((1, T, 1, D)), jnp.ones((1, S, 1, D))
        loss = lambda q, k, v: attention(q, k, v, impl=impl, q_offset=S - T,  # noqa: E731
                                         block_q=64, block_k=64).sum()
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, k).compile(
            {"xla_backend_optimization_level": 0})  # buffer assignment does not depend on it
        return compiled.memory_analysis().temp_size_in_bytes

    added_logits_bytes = T * 2048 * 4
    assert temp_bytes("xla", 4096) - temp_bytes("xla", 2048) >= added_logits_bytes
    # What blockwise adds is O(S x D): its float32 dk, dv accumulators.
    assert temp_bytes("blockwise", 4096) - temp_bytes("blockwise", 2048) < added_logits_bytes / 4
