"""Tokens per second and MFU of one PerceiverS training step (`base` by default).

    python benchmarks/train_step.py [--variant=base] [--batch_size=N] [--steps=3] [--dtype=...]
        [--set model.context_length=4096 ...]

The step is the harness's (`training.step.make_train_step`: forward, backward, AdamW), jitted
with donation on one device, on random tokens shaped like the config's examples. Throughput
counts target tokens (N latents per example) as the trainer does, and context tokens (L per
example) too. MFU = FLOPs per target token x target tokens/s / peak; the peak is unknown on
CPU, so MFU is printed there as unknown. Compilation is excluded. Last line: JSON.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.results import add_argument, recorded  # noqa: E402
from experiments import config_file  # noqa: E402
from perceivers import PerceiverSTask  # noqa: E402
from pertok import PerTok  # noqa: E402
from training import metrics  # noqa: E402
from training.optim import make_optimizer  # noqa: E402
from training.state import TrainState, root_keys  # noqa: E402
from training.step import make_train_step  # noqa: E402


def random_batch(task: PerceiverSTask, batch_size: int, vocab_size: int, seed: int = 0) -> dict:
    """One microbatch [1, B, ...] of random tokens with every target weighted."""
    rng = np.random.default_rng(seed)
    shape_l, shape_n = (1, batch_size, task.context_length), (1, batch_size, task.query_length)
    return {"inputs": rng.integers(4, vocab_size, shape_l).astype(np.int32),
            "targets": rng.integers(4, vocab_size, shape_n).astype(np.int32),
            "weights": np.ones(shape_n, np.float32)}


def time_steps(task: PerceiverSTask, config, batch: dict, steps: int) -> float:
    """Seconds per training step, after one compiling step."""
    tx, schedule = make_optimizer(config.train)
    init_key, _ = root_keys(config.seed)

    def init():
        params = task.init(init_key, {k: v[0] for k, v in batch.items()})
        return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                          opt_state=tx.init(params))

    state = jax.jit(init)()
    step = jax.jit(make_train_step(task, tx, schedule, config.seed), donate_argnums=0)
    state, step_metrics = step(state, batch)
    jax.block_until_ready(step_metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, step_metrics = step(state, batch)
    jax.block_until_ready(step_metrics)
    if not np.isfinite(float(step_metrics["loss"])):
        raise FloatingPointError("the benchmarked step's loss is not finite")
    return (time.perf_counter() - start) / steps


def _parse_value(text: str):
    """A Python literal ('4096', 'True', 'None'), else the text itself ('sum')."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="base", help="of experiments/configs/perceivers.py")
    parser.add_argument("--batch_size", type=int, default=0, help="0 = the config's (1 on CPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the compiling one")
    parser.add_argument("--dtype", default="", help="'' = the config's (float32 on CPU)")
    parser.add_argument("--set", action="append", default=[], help="key=value (model.remat=True)")
    add_argument(parser)
    args = parser.parse_args(argv)
    with recorded(args.results, 'PerceiverS train step time and MFU'):
        run(args)


def run(args: argparse.Namespace) -> None:
    backend, device = jax.default_backend(), jax.devices()[0].device_kind
    config = config_file.load_config(
        f"{os.path.dirname(__file__)}/../experiments/configs/perceivers.py:{args.variant}")
    for key, text in (item.split("=", 1) for item in args.set):
        block, field = key.split(".")
        config[block][field] = _parse_value(text)
    config.model.dtype = args.dtype or ("float32" if backend == "cpu" else config.model.dtype)
    batch_size = args.batch_size or (1 if backend == "cpu" else config.train.batch_size)
    vocab_size = PerTok().vocab_size
    task = PerceiverSTask(config.model, vocab_size, config.data.segmentation)
    task.validate()
    print(f"device: {device} ({backend})" + ("; no GPU in this session: CPU numbers only, MFU "
                                             "unknown" if backend == "cpu" else ""), flush=True)
    seconds = time_steps(task, config, random_batch(task, batch_size, vocab_size), args.steps)
    targets_per_s = batch_size * task.tokens_per_example() / seconds
    mfu = metrics.mfu(task.flops_per_token(), targets_per_s, 1, metrics.peak_flops_per_device())
    row = dict(device=device, backend=backend, variant=args.variant, dtype=config.model.dtype,
               batch_size=batch_size, context_length=task.context_length,
               query_length=task.query_length, step_s=seconds, target_tokens_per_s=targets_per_s,
               context_tokens_per_s=batch_size * task.context_length / seconds,
               flops_per_target_token=task.flops_per_token(), mfu=mfu)
    print(f"{args.variant} L={task.context_length} N={task.query_length} B={batch_size} "
          f"{config.model.dtype}: {seconds:.3f} s/step, {targets_per_s:,.0f} target tokens/s "
          f"({row['context_tokens_per_s']:,.0f} context tokens/s), "
          f"MFU {'unknown' if mfu is None else f'{100 * mfu:.1f}%'}", flush=True)
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
