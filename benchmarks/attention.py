"""Attention benchmark: forward and forward+backward time and temp memory per implementation.

Two branches of a Perceiver AR / PerceiverS layer, T latents at the end of S keys:
  causal  q_offset = S - T, causal mask (the full cross-attention branch);
  window  the same plus the scale window W (PerceiverS's local branch).
Memory is XLA's compiled temp allocation (`memory_analysis().temp_size_in_bytes`), which
works on every backend. Prints a table, the curve checks, and a final JSON line.

  python benchmarks/attention.py                 # S in 1k..32k, T = W = 1024
  python benchmarks/attention.py --quick         # S in 1k..4k, one repeat
  python benchmarks/attention.py --impls blockwise --seq_lens 2048,32768
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.results import add_argument, recorded
from layers.attention import attention

ALL_IMPLS = ("xla", "blockwise", "pallas", "cudnn")
BRANCHES = ("causal", "window")
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--seq_lens", type=ints, default=[1024, 2048, 4096, 8192, 16384, 32768],
                        help="key lengths S, comma-separated")
    parser.add_argument("--query_length", type=int, default=1024, help="T, latents at the end")
    parser.add_argument("--window", type=int, default=1024, help="scale window W")
    parser.add_argument("--impls", type=lambda t: t.split(","), default=list(ALL_IMPLS))
    parser.add_argument("--branches", type=lambda t: t.split(","), default=list(BRANCHES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, else float32")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs after a warm-up; the best counts (robust to load)")
    parser.add_argument("--xla_max_seq", type=int, default=None,
                        help="skip dense xla above this S (default: 32768 on CPU, none on GPU)")
    parser.add_argument("--pallas_max_seq", type=int, default=None,
                        help="skip pallas's causal branch above this S (default off GPU: "
                             "4096, interpret mode is slow; the window branch always runs)")
    parser.add_argument("--quick", action="store_true", help="S in 1k..4k, one repeat")
    add_argument(parser)
    args = parser.parse_args(argv)
    bad = sorted(set(args.impls) - set(ALL_IMPLS)) + sorted(set(args.branches) - set(BRANCHES))
    if bad:
        parser.error(f"unknown --impls/--branches {bad}; expected {ALL_IMPLS} and {BRANCHES}")
    if args.quick:
        args.seq_lens, args.repeats = [s for s in args.seq_lens if s <= 4096], 1
    return args


def skip_reason(impl: str, branch: str, S: int, args: argparse.Namespace,
                backend: str) -> str | None:
    """Why a measurement is not taken here, or None."""
    if impl == "cudnn" and backend != "gpu":
        return "cuDNN needs a GPU"
    if impl == "cudnn" and args.dtype == "float32":
        return "cuDNN takes bfloat16/float16"
    if impl == "xla" and args.xla_max_seq is not None and S > args.xla_max_seq:
        return f"dense T x S above --xla_max_seq={args.xla_max_seq}"
    if (impl == "pallas" and branch == "causal" and args.pallas_max_seq is not None
            and S > args.pallas_max_seq):
        return (f"interpret mode off GPU is no speed measurement; causal branch above "
                f"--pallas_max_seq={args.pallas_max_seq}")
    return None


def _inputs(S: int, args: argparse.Namespace):
    rng = np.random.default_rng(0)
    dtype = jnp.dtype(args.dtype)
    q_shape = (args.batch, args.query_length, args.heads, args.head_dim)
    kv_shape = (args.batch, S, args.heads, args.head_dim)
    return tuple(jnp.asarray(rng.standard_normal(shape), dtype)
                 for shape in (q_shape, kv_shape, kv_shape, q_shape))


@dataclasses.dataclass
class _Timer:
    """One compiled program to time; rounds interleave all timers so load hits them alike."""

    row: dict[str, Any]
    key: str
    fn: Any
    inputs: tuple
    slow: bool = False

    def run(self) -> None:
        start = time.perf_counter()
        jax.block_until_ready(self.fn(*self.inputs))
        ms = 1000 * (time.perf_counter() - start)
        self.row[self.key] = round(min(ms, self.row.get(self.key, ms)), 2)


def compile_row(impl: str, branch: str, S: int, args: argparse.Namespace):
    """Compile forward and forward+backward for one implementation and shape: (row, timers)."""
    q, k, v, cotangent = _inputs(S, args)
    settings = dict(impl=impl, q_offset=S - args.query_length, causal=True,
                    scale_window=args.window if branch == "window" else None)

    def forward(q, k, v, cotangent):
        return attention(q, k, v, **settings)

    def loss(q, k, v, cotangent):
        return (forward(q, k, v, cotangent).astype(jnp.float32) * cotangent).sum()

    row: dict[str, Any] = dict(impl=impl, branch=branch, S=S)
    timers = []
    for name, fn in (("fwd", forward), ("fwd_bwd", jax.value_and_grad(loss, argnums=(0, 1, 2)))):
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(q, k, v, cotangent).compile()
        row[f"{name}_compile_s"] = round(time.perf_counter() - start, 2)
        memory = compiled.memory_analysis()
        row[f"{name}_temp_mib"] = None if memory is None else round(
            memory.temp_size_in_bytes / MIB, 2)
        timer = _Timer(row, f"{name}_ms", compiled, (q, k, v, cotangent))
        start = time.perf_counter()
        jax.block_until_ready(compiled(q, k, v, cotangent))  # warm-up, not timed
        timer.slow = time.perf_counter() - start > 2.0  # dense at 32k: one run shows the curve
        timers.append(timer)
    return row, timers


def time_rounds(timers: list[_Timer], repeats: int) -> None:
    """Best of `repeats` runs each, taken in interleaved rounds (a busy machine hits all)."""
    for round_index in range(repeats):
        for timer in timers:
            if round_index == 0 or not timer.slow:
                timer.run()


def curve_checks(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's acceptance ratios, computed from whatever rows were measured."""
    def find(impl, branch, S):
        return next((r for r in rows if (r["impl"], r["branch"], r["S"]) == (impl, branch, S)
                     and "fwd_ms" in r), None)

    checks: dict[str, Any] = {}
    S_max = max(args.seq_lens)
    for impl in ("blockwise", "pallas"):
        base, top = find(impl, "window", 2048), find(impl, "window", S_max)
        if base and top and S_max > 2048:
            ratio = top["fwd_bwd_ms"] / base["fwd_bwd_ms"]
            checks[f"{impl}_window_time_S{S_max}_over_S2048"] = round(ratio, 2)
            checks[f"{impl}_window_flat_ok"] = ratio <= 1.5
    base, top = find("blockwise", "causal", 2048), find("blockwise", "causal", S_max)
    if base and top and S_max > 2048:
        added_logits_mib = args.batch * args.heads * args.query_length * (S_max - 2048) * 4 / MIB
        added = top["fwd_bwd_temp_mib"] - base["fwd_bwd_temp_mib"]
        checks[f"blockwise_causal_temp_added_S2048_to_S{S_max}_mib"] = round(added, 2)
        checks["dense_logits_added_mib"] = round(added_logits_mib, 2)
        checks["blockwise_causal_memory_not_TxS_ok"] = added < added_logits_mib / 4
    return checks


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'impl':<10}{'branch':<8}{'S':>7}{'fwd ms':>10}{'f+b ms':>10}"
              f"{'fwd MiB':>10}{'f+b MiB':>10}  note")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "skipped" in r:
            print(f"{r['impl']:<10}{r['branch']:<8}{r['S']:>7}{'-':>10}{'-':>10}{'-':>10}"
                  f"{'-':>10}  skipped: {r['skipped']}")
            continue
        note = r.get("note", "")
        print(f"{r['impl']:<10}{r['branch']:<8}{r['S']:>7}{r['fwd_ms']:>10.1f}"
              f"{r['fwd_bwd_ms']:>10.1f}{r['fwd_temp_mib']:>10.1f}{r['fwd_bwd_temp_mib']:>10.1f}"
              f"  {note}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with recorded(args.results, "Attention kernels: time and memory against the key length"):
        run(args)


def run(args: argparse.Namespace) -> None:
    backend = jax.default_backend()
    args.dtype = args.dtype or ("bfloat16" if backend == "gpu" else "float32")
    if args.xla_max_seq is None and backend != "gpu":
        args.xla_max_seq = 32768
    if args.pallas_max_seq is None and backend != "gpu":
        args.pallas_max_seq = 4096
    device = jax.devices()[0].device_kind
    print(f"backend={backend} device={device} B={args.batch} T={args.query_length} "
          f"H={args.heads} D={args.head_dim} W={args.window} dtype={args.dtype} "
          f"repeats={args.repeats} (best of, interleaved)", flush=True)
    if backend != "gpu":
        print("pallas off GPU runs in interpret mode: its times are not kernel speed.")
    rows, timers = [], []
    for branch in args.branches:
        for impl in args.impls:
            for S in args.seq_lens:
                reason = skip_reason(impl, branch, S, args, backend)
                if reason:
                    rows.append(dict(impl=impl, branch=branch, S=S, skipped=reason))
                    continue
                row, row_timers = compile_row(impl, branch, S, args)
                if impl == "pallas" and backend != "gpu":
                    row["note"] = "interpret mode"
                rows.append(row)
                timers += row_timers
                print(f"  compiled {impl} {branch} S={S}", flush=True)
    time_rounds(timers, args.repeats)
    print()
    print_table(rows)
    checks = curve_checks(rows, args)
    for name, value in checks.items():
        print(f"check {name}: {value}")
    print(json.dumps(dict(backend=backend, device=device, config=dict(
        batch=args.batch, query_length=args.query_length, heads=args.heads,
        head_dim=args.head_dim, window=args.window, dtype=args.dtype, repeats=args.repeats),
        results=rows, checks=checks)))


if __name__ == "__main__":
    main()
