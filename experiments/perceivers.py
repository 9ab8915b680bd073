"""`--mode=generate` for a trained PerceiverS: sample continuations, write them as MIDI.

    python -m experiments.main --config=experiments/configs/perceivers.py:tiny --workdir=runs/ps-tiny \
        --mode=generate [--config.sample.prompt=IN.mid --config.sample.num_tokens=4096]

The model comes from the workdir's latest checkpoint and the config saved with it; the
`sample` block comes from the command line. Each sample (prompt tokens, then the generated
ones) is decoded with PerTok in lenient mode and written to WORKDIR/samples/*.mid.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from pertok import PerTok
from experiments.restore import restore_latest
from training.validate import ConfigError


def load_params(workdir: str, tokenizer: PerTok):
    """(task, params, step) of the latest checkpoint of a `perceivers` run, on one device."""
    task, params, _, step = restore_latest(workdir, tokenizer, "perceivers")
    return task, params, step


def prompt_tokens(sample, tokenizer: PerTok) -> np.ndarray:
    """BOS, then the prompt file's tokens (the first `sample.prompt_tokens` if set)."""
    ids = np.zeros(0, np.int32)
    if sample.prompt:
        ids = tokenizer.encode(sample.prompt)  # PerTokError names the file
        if sample.prompt_tokens > 0:
            ids = ids[:sample.prompt_tokens]
    return np.concatenate([[tokenizer.bos_id], ids]).astype(np.int32)


def generate(config, workdir: str) -> list[str]:
    """Write `sample.num_samples` MIDI files to WORKDIR/samples; returns their paths."""
    from perceivers import SampleSettings

    sample, tokenizer = config.sample, PerTok()
    _check_sample(sample)
    task, params, step = load_params(workdir, tokenizer)
    try:
        decoder = task.decoder(sample.reset_fill)
    except ValueError as error:
        raise ConfigError(f"sample.reset_fill={sample.reset_fill}: {error}") from None
    prompt = prompt_tokens(sample, tokenizer)
    settings = SampleSettings(sample.temperature, sample.top_k, sample.top_p)
    logging.info("generating %d x %d tokens after a %d-token prompt (step %d of %s)",
                 sample.num_samples, sample.num_tokens, len(prompt), step, workdir)
    generated = decoder.generate(params, np.repeat(prompt[None], sample.num_samples, axis=0),
                                 sample.num_tokens, jax.random.key(sample.seed), settings,
                                 eos_id=tokenizer.eos_id)
    out_dir = os.path.join(workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for index, row in enumerate(generated):
        ids = np.concatenate([prompt, row])
        score, report = tokenizer.decode(ids, strict=False, report=True)
        path = os.path.join(out_dir, f"step{step}-seed{sample.seed}-{index}.mid")
        score.dump_midi(path)
        paths.append(path)
        print(f"{path}: {len(prompt) - 1} prompt + {int((row != tokenizer.pad_id).sum())} "
              f"generated tokens, {report.num_dropped} dropped by lenient decoding "
              f"(token error rate {report.error_rate:.4f}), {score.note_num()} notes", flush=True)
    return paths


def _check_sample(sample) -> None:
    errors = []
    if sample.num_tokens < 1:
        errors.append(f"sample.num_tokens={sample.num_tokens} must be positive")
    if sample.num_samples < 1:
        errors.append(f"sample.num_samples={sample.num_samples} must be positive")
    if sample.temperature < 0:
        errors.append(f"sample.temperature={sample.temperature} must be >= 0 (0 = greedy)")
    if not 0 < sample.top_p <= 1:
        errors.append(f"sample.top_p={sample.top_p} must lie in (0, 1]")
    if sample.top_k < 0 or sample.reset_fill < 0 or sample.prompt_tokens < 0:
        errors.append("sample.top_k, sample.reset_fill and sample.prompt_tokens must be >= 0")
    if sample.prompt and not os.path.isfile(sample.prompt):
        errors.append(f"sample.prompt={sample.prompt!r} is not a file")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
