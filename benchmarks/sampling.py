"""Tokens per second of PerceiverS sampling: cached decoding against recomputing the full
forward pass over the last L tokens for every new token.

    python benchmarks/sampling.py [--variant=base] [--context_lengths=2048,8192] [--rounds=2]
        [--recompute_tokens=3] [--dtype=float32]

The model is the config variant's (`experiments/configs/perceivers.py`, random weights) at
each context length L; batch 1. The cached path is timed over whole rounds (one latent reset,
a full forward pass with `reset_fill` latents, then N - reset_fill cached steps), so resets
are included at their steady-state rate. Compilation is excluded from both. Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import config_file  # noqa: E402
from perceivers import Decoder, SampleSettings, build_model, sample_tokens  # noqa: E402
from pertok import PerTok  # noqa: E402


def random_params(model, context_length: int, seed: int = 0):
    ids = jax.ShapeDtypeStruct((1, context_length), jnp.int32)
    init = jax.jit(lambda key, ids: model.init(key, ids)["params"])
    return init(jax.random.key(seed), jnp.zeros(ids.shape, ids.dtype))


def cached_tokens_per_s(model, params, context_length: int, rounds: int, prompt) -> float:
    """Steady-state tokens/s of `Decoder.generate` over `rounds` reset-and-step rounds."""
    decoder = Decoder(model, context_length)
    per_round = decoder.steps_per_reset + 1
    settings, key = SampleSettings(temperature=1.0, top_p=0.95), jax.random.key(0)
    decoder.generate(params, prompt, per_round, key, settings)  # compile
    start = time.perf_counter()
    decoder.generate(params, prompt, rounds * per_round, key, settings)
    return rounds * per_round / (time.perf_counter() - start)


def recompute_tokens_per_s(model, params, context_length: int, num_tokens: int, prompt) -> float:
    """Tokens/s when every token runs the full forward pass over the last L tokens."""
    @jax.jit
    def next_token(params, window_1xL, mask_1xL, key):
        logits_1xNxV = model.apply({"params": params}, window_1xL, mask_1xL)
        return sample_tokens(key, logits_1xNxV[:, -1], temperature=1.0, top_p=0.95)

    tokens = list(np.asarray(prompt)[0])

    def step(index: int) -> None:
        window = np.zeros((1, context_length), np.int32)
        recent = np.asarray(tokens[-context_length:], np.int32)
        window[0, context_length - len(recent):] = recent
        mask = np.arange(context_length)[None] >= context_length - len(recent)
        tokens.append(int(next_token(params, window, mask, jax.random.key(index))[0]))

    step(0)  # compile
    start = time.perf_counter()
    for index in range(1, num_tokens + 1):
        step(index)
    return num_tokens / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="base", help="of experiments/configs/perceivers.py")
    parser.add_argument("--context_lengths", default="2048,8192")
    parser.add_argument("--rounds", type=int, default=2, help="cached reset rounds timed")
    parser.add_argument("--recompute_tokens", type=int, default=3, help="recomputed tokens timed")
    parser.add_argument("--dtype", default="float32", help="compute dtype (CPU: float32)")
    args = parser.parse_args(argv)
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    print(f"device: {device} ({backend}, {jax.device_count()} device(s))"
          + ("; no GPU in this session: CPU numbers only" if backend == "cpu" else ""), flush=True)
    vocab_size = PerTok().vocab_size
    results = []
    for context_length in (int(v) for v in args.context_lengths.split(",")):
        config = config_file.load_config(
            f"{os.path.dirname(__file__)}/../experiments/configs/perceivers.py:{args.variant}")
        config.model.context_length = context_length
        config.model.dtype = args.dtype
        model = build_model(config.model, vocab_size)
        params = random_params(model, context_length)
        rng = np.random.default_rng(0)
        prompt = rng.integers(4, vocab_size, (1, context_length)).astype(np.int32)
        cached = cached_tokens_per_s(model, params, context_length, args.rounds, prompt)
        recompute = recompute_tokens_per_s(model, params, context_length,
                                           args.recompute_tokens, prompt)
        row = dict(context_length=context_length, query_length=model.query_length,
                   scale_window=model.scale_window, d_model=model.d_model,
                   num_layers=model.num_layers, dtype=args.dtype, cached_tokens_per_s=cached,
                   recompute_tokens_per_s=recompute, speedup=cached / recompute)
        results.append(row)
        print(f"L={context_length:6d} N={model.query_length} W={model.scale_window}: cached "
              f"{cached:9.1f} tokens/s, recompute {recompute:8.2f} tokens/s, "
              f"speedup {cached / recompute:7.1f}x", flush=True)
    print(json.dumps(dict(device=device, backend=backend, variant=args.variant, results=results)))


if __name__ == "__main__":
    main(sys.argv[1:])
