"""Tokens per second of PerceiverS sampling, against recomputing the full forward pass for
every new token and against the rate at which real music is played.

    python benchmarks/sampling.py [--variants=tiny,base] [--context_lengths=2048,8192]
        [--music_dir=../shared/midi/asap/performances] [--rounds=2] [--repeats=3]
        [--recompute_tokens=3] [--dtype=float32] [--no_grammar] [--results PATH]

Each variant's model is the config's (`experiments/configs/perceivers.py`, random weights) at
each context length L (default: the variant's own); batch 1. Sampling follows PerTok's grammar,
as every user samples (`--no_grammar` times unconstrained decoding), after a grammatical prompt
of up to L tokens (built-in pieces, encoded one after another, cut after a whole note). The
recompute baseline samples without the grammar: its cost is the forward pass. The cached path is timed over
whole rounds (one latent reset, a full forward pass with `reset_fill` latents, then
N - reset_fill cached steps), so resets are included at their steady-state rate; best of
`--repeats`. Compilation is excluded. With `--music_dir`, the music's rate is the median over
the files of PerTok tokens per second of performance, and the real-time factor of a variant
is its sampling rate at its own L over that median (>= 1: generation keeps up with the music).
Last line: JSON, with `realtime_factor_<variant>`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.results import add_argument, recorded  # noqa: E402
from experiments import config_file  # noqa: E402
from perceivers import Decoder, SampleSettings, build_model, sample_tokens  # noqa: E402
from pertok import PerTok  # noqa: E402
from pertok.grammar import Grammar  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments",
                      "configs", "perceivers.py")
MIN_TIMED_TOKENS = 1024  # small variants run more rounds, so that the timing is not noise


def music_tokens_per_s(music_dir: str, tokenizer: PerTok) -> dict:
    """PerTok tokens per second of performance of every MIDI file under `music_dir`."""
    import symusic

    from pertok.store import find_midi_files
    files = find_midi_files(music_dir)
    rates, skipped = [], 0
    for path in files:
        try:
            seconds = symusic.Score(str(path), ttype="second").end()
            tokens = len(tokenizer.encode(path))
        except Exception:  # a file symusic or PerTok refuses is left out and counted
            skipped += 1
            continue
        if seconds > 0 and tokens > 0:
            rates.append(tokens / seconds)
        else:
            skipped += 1
    if not rates:
        raise SystemExit(f"sampling.py: error: no readable MIDI file under {music_dir}")
    p10, median, p90 = np.percentile(rates, [10, 50, 90])
    return dict(music_dir=music_dir, music_files=len(rates), music_files_skipped=skipped,
                music_tokens_per_s_median=float(median), music_tokens_per_s_p10=float(p10),
                music_tokens_per_s_p90=float(p90))


def grammatical_prompt(tokenizer: PerTok, length: int) -> np.ndarray:
    """int32 [1, P <= length]: built-in pieces encoded back to back, cut before a group head (so
    after a whole note), checked by strict decoding."""
    from pertok import TokenType
    from pertok.synthetic import generate_score

    parts, total, seed = [], 0, 0
    while total <= length:
        ids = tokenizer.encode(generate_score(seed))
        parts.append(ids)
        total, seed = total + len(ids), seed + 1
    tokens = np.concatenate(parts)[:length + 1]
    heads = (TokenType.BAR, TokenType.TIME_SHIFT, TokenType.PROGRAM, TokenType.PITCH, TokenType.DRUM_PITCH)
    cut = int(np.flatnonzero(np.isin(tokenizer.token_types(tokens), heads))[-1])
    tokenizer.decode(tokens[:cut])  # strict: raises if the prompt is not grammatical
    return tokens[None, :cut].astype(np.int32)


def random_params(model, context_length: int, seed: int = 0):
    init = jax.jit(lambda key, ids: model.init(key, ids)["params"])
    return init(jax.random.key(seed), jnp.zeros((1, context_length), jnp.int32))


def cached_tokens_per_s(model, params, context_length: int, rounds: int, repeats: int,
                        prompt, grammar=None) -> tuple[float, float]:
    """Steady-state (tokens per wall second, tokens per CPU second of this process) of
    `Decoder.generate` over whole reset-and-step rounds, best of `repeats`.

    On a machine shared with other jobs the wall rate drops with their load; the CPU rate
    does not, and bounds the rate on an idle machine from below (XLA's threads only add).
    """
    decoder = Decoder(model, context_length, grammar=grammar)
    per_round = decoder.steps_per_reset + 1
    rounds = max(rounds, math.ceil(MIN_TIMED_TOKENS / per_round))
    settings, key = SampleSettings(temperature=1.0, top_p=0.95), jax.random.key(0)
    decoder.generate(params, prompt, per_round, key, settings)  # compile
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        decoder.generate(params, prompt, rounds * per_round, key, settings)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return rounds * per_round / best, rounds * per_round / best_cpu


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


def measure(variant: str, context_length: int, args, tokenizer: PerTok) -> dict:
    """One row: cached (and recomputed) tokens/s of `variant` at `context_length`."""
    config = config_file.load_config(f"{CONFIG}:{variant}")
    own_length = context_length == config.model.context_length
    config.model.context_length = context_length
    config.model.dtype = args.dtype
    model = build_model(config.model, tokenizer.vocab_size)
    params = random_params(model, context_length)
    prompt = grammatical_prompt(tokenizer, context_length)
    grammar = None if args.no_grammar else Grammar(tokenizer, "full")
    cached, cached_cpu = cached_tokens_per_s(model, params, context_length, args.rounds,
                                             args.repeats, prompt, grammar)
    row = dict(variant=variant, context_length=context_length, own_context_length=own_length,
               query_length=model.query_length, scale_window=model.scale_window,
               scale_mask=model.scale_mask, d_model=model.d_model, num_layers=model.num_layers,
               dtype=args.dtype, grammar=grammar is not None, prompt_tokens=int(prompt.shape[1]),
               cached_tokens_per_s=cached,
               cached_tokens_per_cpu_s=cached_cpu, load_average=os.getloadavg()[0])
    line = f"{variant:5s} L={context_length:6d} N={model.query_length} W={model.scale_window}: " \
           f"cached{' under the grammar' if grammar is not None else ''} {cached:9.1f} tokens/s ({cached_cpu:.1f} per CPU second)"
    if args.recompute_tokens > 0:
        recompute = recompute_tokens_per_s(model, params, context_length,
                                           args.recompute_tokens, prompt)
        row.update(recompute_tokens_per_s=recompute, speedup=cached / recompute)
        line += f", recompute {recompute:8.2f} tokens/s, speedup {cached / recompute:7.1f}x"
    print(line, flush=True)
    return row


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="tiny,base", help="of experiments/configs/perceivers.py")
    parser.add_argument("--context_lengths", default="",
                        help="comma-separated L besides each variant's own")
    parser.add_argument("--music_dir", default="", help="MIDI folder for the real-time factor")
    parser.add_argument("--rounds", type=int, default=2, help="cached reset rounds timed (at "
                        f"least {MIN_TIMED_TOKENS} tokens)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--recompute_tokens", type=int, default=3,
                        help="recomputed tokens timed; 0 skips the recompute baseline")
    parser.add_argument("--dtype", default="float32", help="compute dtype (CPU: float32)")
    parser.add_argument("--no_grammar", action="store_true", help="time unconstrained decoding instead")
    add_argument(parser)
    args = parser.parse_args(argv)
    with recorded(args.results, 'PerceiverS sampling speed and the real-time factor'):
        run(args)


def run(args: argparse.Namespace) -> None:
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"device: {device} ({backend}, {jax.device_count()} device(s), {cores} CPU cores)"
          + ("; no GPU in this session: CPU numbers only" if backend == "cpu" else ""), flush=True)
    tokenizer = PerTok()
    summary = dict(device=device, backend=backend, cpu_cores=cores)
    if args.music_dir:
        summary.update(music_tokens_per_s(args.music_dir, tokenizer))
        print(f"music: median {summary['music_tokens_per_s_median']:.1f} PerTok tokens/s over "
              f"{summary['music_files']} files (10th-90th percentile "
              f"{summary['music_tokens_per_s_p10']:.1f}-{summary['music_tokens_per_s_p90']:.1f})",
              flush=True)
    given = [int(v) for v in args.context_lengths.split(",") if v]
    results = []
    for variant in args.variants.split(","):
        own = config_file.load_config(f"{CONFIG}:{variant}").model.context_length
        for length in [own] + [v for v in given if v != own]:  # its own L always, first
            results.append(measure(variant, length, args, tokenizer))
    for row in results:
        if args.music_dir and row["own_context_length"]:
            music = summary["music_tokens_per_s_median"]
            factor, cpu_factor = (row["cached_tokens_per_s"] / music,
                                  row["cached_tokens_per_cpu_s"] / music)
            summary[f"realtime_factor_{row['variant']}"] = factor
            summary[f"realtime_factor_{row['variant']}_per_cpu_s"] = cpu_factor
            print(f"{row['variant']}: {factor:.2f}x real time at L={row['context_length']} "
                  f"(per CPU second: {cpu_factor:.2f}x; 1-minute load {os.getloadavg()[0]:.1f})")
    print(json.dumps(dict(summary, results=results)))


if __name__ == "__main__":
    main(sys.argv[1:])
