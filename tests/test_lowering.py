"""Every model lowers for GPU ("cuda") and TPU ("tpu") on a CPU machine, with the right kernel.

`jax.jit(f).trace(*abstract).lower(lowering_platforms=(p,))` runs JAX's whole lowering for
platform p without the device (compiling would need it). The train steps are the harness's
(`training.step.make_train_step`: forward, backward, AdamW) at each config's `base` shapes in
bfloat16, on abstract parameters (`jax.eval_shape`: nothing of base size is allocated), with
one layer per stack instead of base's 6-12 (every layer of a stack is the same program; a full
base stack takes 15-20 s per model to trace here, one layer 3-7 s). What each module must hold:
  cuda  the Triton custom call of `layers.pallas_attention` (forward, dq and dkv kernels) and
        no Mosaic call;
  tpu   the Mosaic custom call of `layers.splash` (forward, dq, dkv) and no Triton call;
and `lm` (the baseline's own dense flax attention) neither. So a change that breaks an
accelerator's kernel or its choice fails CI on a CPU.
"""
import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config_file
from experiments.tasks import build_task
from layers import attention
from layers.platforms import PlatformError
from pertok import PerTok
from training.optim import make_optimizer
from training.state import abstract_state
from training.step import make_train_step

TRITON, MOSAIC = "__gpu$xla.gpu.triton", "tpu_custom_call"
KERNELS = {"cuda": ("attention_forward", "attention_dq", "attention_dkv"),
           "tpu": ("splash_mha_fwd", "splash_mha_dq", "splash_mha_dkv")}
LAYER_FIELDS = {"lm": ("num_layers",), "performer": ("num_layers",),
                "composer": ("encoder_layers", "decoder_layers"), "perceivers": ("num_layers",)}
MODELS = tuple(LAYER_FIELDS)
KERNEL_HOME = {"pallas": "cuda", "splash": "tpu"}
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "experiments", "configs")


@functools.cache
def _tokenizer() -> PerTok:
    return PerTok()


def _base_config(name: str):
    config = config_file.load_config(f"{CONFIGS}/{name}.py:base")
    assert config.model.dtype == "bfloat16", f"{name}:base should train in bfloat16"
    with config.unlocked():
        for field in LAYER_FIELDS[name]:
            config.model[field] = 1
    return config


def _example(task, name: str) -> dict[str, np.ndarray]:
    if hasattr(task, "example_batch"):
        return {k: v[0] for k, v in task.example_batch(1).items()}
    from training.data import MemoryPieces  # the baseline has no example_batch: cut one
    piece = MemoryPieces([np.arange(4, 64, dtype=np.int32)], [f"{name}.mid"])
    return task.sampler(piece).example(0, np.random.default_rng(0))


@functools.cache
def _traced_train_step(name: str):
    config = _base_config(name)
    task = build_task(config, _tokenizer())
    example = _example(task, name)
    tx, schedule = make_optimizer(config.train)
    state = abstract_state(task, tx, {k: v[None] for k, v in example.items()}, config.seed)
    batch = {k: jax.ShapeDtypeStruct((1, config.train.batch_size) + v.shape, v.dtype)
             for k, v in example.items()}
    step = jax.jit(make_train_step(task, tx, schedule, config.seed), donate_argnums=0)
    return step.trace(state, batch)


def _assert_kernels(text: str, platform: str | None) -> None:
    """The module holds the kernels of `platform`, forward and backward (`None`: no kernel)."""
    has_triton, has_mosaic = TRITON in text, MOSAIC in text
    if platform is None:
        assert not has_triton and not has_mosaic
        return
    assert (has_triton, has_mosaic) == (platform == "cuda", platform == "tpu")
    for kernel in KERNELS[platform]:
        assert re.search(kernel, text), f"{platform}: no {kernel} kernel in the module"


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("name", MODELS)
def test_train_step_lowers_with_the_platform_kernel(name, platform):
    text = _traced_train_step(name).lower(lowering_platforms=(platform,)).as_text()
    _assert_kernels(text, None if name == "lm" else platform)


@functools.cache
def _traced_decoding():
    """PerceiverS base: the latent reset (a full pass with reset_fill latents) and one step."""
    from perceivers import Decoder

    task = build_task(_base_config("perceivers"), _tokenizer())
    decoder = Decoder(task.model, task.context_length)
    ids = jnp.zeros((1, decoder.window_length), jnp.int32)
    params = jax.eval_shape(lambda ids: task.model.init(jax.random.key(0), ids)["params"], ids)
    ids = jax.ShapeDtypeStruct(ids.shape, ids.dtype)
    mask = jax.ShapeDtypeStruct(ids.shape, jnp.bool_)
    prefill = jax.jit(decoder._prefill_fn).trace(params, ids, mask)
    _, cache = jax.eval_shape(decoder._prefill_fn, params, ids, mask)
    token = jax.ShapeDtypeStruct((1,), jnp.int32)
    return prefill, jax.jit(decoder._step_fn, donate_argnums=2).trace(params, token, cache)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_perceivers_decoding_lowers(platform):
    """Both read the caches through `KVCache.attend`, dense XLA attention at a traced offset
    (the cache length), so neither holds a kernel: they must lower all the same."""
    for traced in _traced_decoding():
        _assert_kernels(traced.lower(lowering_platforms=(platform,)).as_text(), None)


def _attention_loss(impl: str):
    def loss(q, k, v, kv_mask):
        out = attention(q, k, v, q_offset=k.shape[1] - q.shape[1], scale_window=64,
                        kv_mask=kv_mask, impl=impl)
        return out.astype(jnp.float32).sum()

    q = jax.ShapeDtypeStruct((2, 128, 4, 64), jnp.bfloat16)
    k = jax.ShapeDtypeStruct((2, 1024, 4, 64), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((2, 1024), jnp.bool_)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, k, k, mask)


@pytest.mark.parametrize("platform", ["cpu", "cuda", "tpu"])
def test_auto_follows_the_lowering_platform_not_the_host(platform):
    text = _attention_loss("auto").lower(lowering_platforms=(platform,)).as_text()
    _assert_kernels(text, None if platform == "cpu" else platform)


@pytest.mark.parametrize("impl, platform", [("pallas", "tpu"), ("splash", "cuda")])
def test_a_kernel_on_the_wrong_accelerator_is_one_clear_error(impl, platform):
    with pytest.raises(PlatformError, match=f"impl='{impl}'.*lowering for {platform}"):
        _attention_loss(impl).lower(lowering_platforms=(platform,))


@pytest.mark.parametrize("impl", ["pallas", "splash"])
def test_kernels_lower_for_their_platform_and_run_interpreted_on_cpu(impl):
    traced = _attention_loss(impl)
    _assert_kernels(traced.lower(lowering_platforms=(KERNEL_HOME[impl],)).as_text(),
                    KERNEL_HOME[impl])
    # For cpu the interpreter's plain XLA ops: no custom call at all.
    _assert_kernels(traced.lower(lowering_platforms=("cpu",)).as_text(), None)



@pytest.mark.slow
def test_accelerator_benchmark_runs_at_tiny_sizes(tmp_path):
    """benchmarks/accelerator.py on CPU: the same code at tiny sizes, one row per section."""
    from benchmarks import accelerator

    out = tmp_path / "accelerator.json"
    result = accelerator.main(["--tiny", "--impls=splash", "--seq_lens=256", "--buckets=1",
                               f"--out={out}"])
    assert json.loads(out.read_text())["backend"] == result["backend"]
    assert [(r["impl"], r["branch"]) for r in result["attention"]] == [("splash", "causal"),
                                                                      ("splash", "window")]
    times = [r[k] for r in result["attention"] for k in ("fwd_ms", "fwd_bwd_ms")]
    times += [r["step_s"] for r in result["train_step"]]
    assert len(result["train_step"]) == 1 and all(np.isfinite(t) and t > 0 for t in times)
    assert result["sampling"]["cached_tokens_per_s"] > 0
