"""One command for a GPU or TPU machine: attention kernels, the PerceiverS train step, sampling.

    python -m benchmarks.accelerator [--out=accelerator.json] [--tiny]

On a GPU or TPU (sized to finish within 8 minutes, compilation included; not yet timed on
one: no accelerator was lent so far) it measures
  1. attention, forward and forward+backward, S = 2k .. 32k, T = W = 1024, H = 8, D = 64,
     bfloat16, both PerceiverS branches (offset causal, scale window): pallas, cudnn and
     blockwise on GPU; splash, blockwise and xla on TPU (`benchmarks/attention.py`'s timer);
  2. the harness's train step of PerceiverS `base` at each length bucket (L/8 .. L, as
     `data.buckets` batches them): target and context tokens/s, all of them real (random
     tokens, no padding), and MFU from the FLOPs of that context length;
  3. cached sampling tokens/s of `base` at L (`benchmarks/sampling.py`'s timer).
It writes one JSON file and prints a markdown table (`--results PATH` writes it as a results page). On a CPU it runs the same code at tiny
sizes (pallas and splash in their interpreters), so that CI keeps it working; those numbers
are no measurement of anything.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import attention as attention_bench  # noqa: E402
from benchmarks.train_step import time_steps  # noqa: E402
from benchmarks.results import add_argument, recorded  # noqa: E402
from experiments import config_file  # noqa: E402
from perceivers import Decoder, PerceiverSTask, SampleSettings, build_model  # noqa: E402
from perceivers.model import flops_per_token  # noqa: E402
from perceivers.segmentation import bucket_lengths  # noqa: E402
from pertok import PerTok  # noqa: E402
from training import metrics  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "experiments", "configs", "perceivers.py")
IMPLS = {"gpu": ("pallas", "cudnn", "blockwise"), "tpu": ("splash", "blockwise", "xla"),
         "cpu": ("blockwise", "pallas", "splash")}


@dataclasses.dataclass(frozen=True)
class Sizes:
    seq_lens: tuple[int, ...]  # attention key lengths S
    query_length: int  # attention T
    window: int  # attention W
    heads: int
    head_dim: int
    repeats: int  # attention timings, best of
    variant: str  # of experiments/configs/perceivers.py
    train_batch: int  # 0 = the config's
    train_steps: int  # timed steps after the compiling one
    buckets: int  # train-step lengths: L / 2^(buckets - 1) .. L
    sample_rounds: int  # cached decoding rounds (a reset and N - reset_fill steps each)
    dtype: str
    num_layers: int = 0  # self-attention layers over the latents; 0 = the config's


ACCELERATOR = Sizes((2048, 4096, 8192, 16384, 32768), 1024, 1024, 8, 64, 3, "base", 0, 5, 4, 2,
                    "bfloat16")
TINY = Sizes((256, 512), 64, 64, 2, 32, 1, "tiny", 2, 1, 2, 1, "float32", num_layers=1)


def attention_rows(sizes: Sizes, impls: tuple[str, ...]) -> list[dict]:
    """Forward and forward+backward times of every impl, branch and S (interleaved timing)."""
    args = argparse.Namespace(query_length=sizes.query_length, window=sizes.window, batch=1,
                              heads=sizes.heads, head_dim=sizes.head_dim, dtype=sizes.dtype)
    rows, timers = [], []
    for branch in attention_bench.BRANCHES:
        for impl in impls:
            for S in sizes.seq_lens:
                row, row_timers = attention_bench.compile_row(impl, branch, S, args)
                rows.append(row)
                timers += row_timers
                print(f"  compiled attention {impl} {branch} S={S}", flush=True)
    attention_bench.time_rounds(timers, sizes.repeats)
    return rows


def _config(sizes: Sizes):
    config = config_file.load_config(f"{CONFIG}:{sizes.variant}")
    config.model.dtype = sizes.dtype
    config.model.num_layers = sizes.num_layers or config.model.num_layers
    return config


def train_rows(sizes: Sizes, vocab_size: int) -> list[dict]:
    """The harness's train step at each bucket length: tokens/s and MFU of that length."""
    config = _config(sizes)
    task = PerceiverSTask(config.model, vocab_size, config.data.segmentation)
    task.validate()
    batch_size = sizes.train_batch or config.train.batch_size
    N, peak = task.query_length, metrics.peak_flops_per_device()
    rows = []
    for length in bucket_lengths(task.context_length, N, sizes.buckets):
        rng = np.random.default_rng(length)
        batch = {"inputs": rng.integers(4, vocab_size, (1, batch_size, length)).astype(np.int32),
                 "targets": rng.integers(4, vocab_size, (1, batch_size, N)).astype(np.int32),
                 "weights": np.ones((1, batch_size, N), np.float32)}
        start = time.perf_counter()
        seconds = time_steps(task, config, batch, sizes.train_steps)
        targets_per_s = batch_size * N / seconds
        useful = flops_per_token(task.model, length)  # per target, this context length
        rows.append(dict(context_length=length, query_length=N, batch_size=batch_size,
                         dtype=sizes.dtype, step_s=seconds, target_tokens_per_s=targets_per_s,
                         real_context_tokens_per_s=batch_size * length / seconds,
                         flops_per_target_token=useful,
                         mfu=metrics.mfu(useful, targets_per_s, 1, peak),
                         wall_s=time.perf_counter() - start))
        print(f"  train step L={length}: {seconds:.3f} s/step", flush=True)
    return rows


def sampling_row(sizes: Sizes, vocab_size: int) -> dict:
    """Cached decoding tokens/s of the variant at its context length L, batch 1."""
    config = _config(sizes)
    model = build_model(config.model, vocab_size)
    L = config.model.context_length
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, L), jnp.int32))["params"]
    prompt = np.random.default_rng(0).integers(4, vocab_size, (1, L)).astype(np.int32)
    decoder, settings = Decoder(model, L), SampleSettings(temperature=1.0, top_p=0.95)
    per_round = decoder.steps_per_reset + 1  # a reset, then cached steps until the next
    decoder.generate(params, prompt, per_round, jax.random.key(0), settings)  # compiles
    start = time.perf_counter()
    decoder.generate(params, prompt, sizes.sample_rounds * per_round, jax.random.key(1), settings)
    tokens_per_s = sizes.sample_rounds * per_round / (time.perf_counter() - start)
    return dict(context_length=L, query_length=model.query_length, dtype=sizes.dtype,
                cached_tokens_per_s=tokens_per_s)


def readme_table(result: dict) -> str:
    """A markdown table of the result: attention, train step and sampling rows."""
    z = result["sizes"]
    lines = [f"Device: {result['device']} ({result['backend']}), jax {result['jax']}.", "",
             f"| attention (B=1, T={z['query_length']}, W={z['window']}, H={z['heads']}, "
             f"D={z['head_dim']}, {z['dtype']}) | S | fwd ms | fwd+bwd ms |", "|---|---|---|---|"]
    for r in result["attention"]:
        lines.append(f"| {r['branch']}, {r['impl']} | {r['S']} | {r['fwd_ms']:.2f} | "
                     f"{r['fwd_bwd_ms']:.2f} |")
    lines += ["", "| train step, PerceiverS | L | s/step | target tokens/s | real context "
              "tokens/s | MFU |", "|---|---|---|---|---|---|"]
    for r in result["train_step"]:
        mfu = "unknown" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        lines.append(f"| batch {r['batch_size']}, {r['dtype']} | {r['context_length']} | "
                     f"{r['step_s']:.3f} | {r['target_tokens_per_s']:,.0f} | "
                     f"{r['real_context_tokens_per_s']:,.0f} | {mfu} |")
    s = result["sampling"]
    lines += ["", f"Cached sampling at L = {s['context_length']}, batch 1: "
                  f"{s['cached_tokens_per_s']:.1f} tokens/s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="accelerator.json", help="the JSON file written")
    parser.add_argument("--tiny", action="store_true", help="CPU sizes (the default on CPU)")
    parser.add_argument("--impls", default="", help="attention impls (default: per platform)")
    parser.add_argument("--seq_lens", default="", help="attention S list (default: per sizes)")
    parser.add_argument("--buckets", type=int, default=0, help="train-step lengths (0: per sizes)")
    add_argument(parser)
    args = parser.parse_args(argv)
    with recorded(args.results, "Accelerator: attention kernels, PerceiverS train step and sampling"):
        return run(args)


def run(args: argparse.Namespace) -> dict:
    backend, device = jax.default_backend(), jax.devices()[0].device_kind
    tiny = args.tiny or backend == "cpu"
    sizes = TINY if tiny else ACCELERATOR
    if args.seq_lens:
        sizes = dataclasses.replace(sizes, seq_lens=tuple(int(s) for s in args.seq_lens.split(",")))
    sizes = dataclasses.replace(sizes, buckets=args.buckets or sizes.buckets)
    impls = tuple(args.impls.split(",")) if args.impls else IMPLS.get(backend, IMPLS["cpu"])
    print(f"device {device} ({backend}); sizes: {'tiny' if tiny else 'accelerator'}"
          + ("; CPU: interpreters, no measurement" if backend == "cpu" else ""), flush=True)
    start, vocab_size = time.perf_counter(), PerTok().vocab_size
    result = dict(device=device, backend=backend, jax=jax.__version__,
                  sizes=dataclasses.asdict(sizes))
    for name, measure in (("attention", lambda: attention_rows(sizes, impls)),
                          ("train_step", lambda: train_rows(sizes, vocab_size)),
                          ("sampling", lambda: sampling_row(sizes, vocab_size))):
        section_start = time.perf_counter()
        result[name] = measure()
        result[f"{name}_wall_s"] = time.perf_counter() - section_start
        print(f"{name}: {result[f'{name}_wall_s']:.0f} s", flush=True)
    result["total_s"] = time.perf_counter() - start
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(readme_table(result))
    print(f"wrote {args.out} in {result['total_s']:.0f} s")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
