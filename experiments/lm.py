"""`--mode=generate` for the baseline LM: sample pieces, write them as MIDI.

    python -m experiments.main --config=experiments/configs/lm.py:tiny --workdir=runs/lm-tiny \
        --mode=generate [--config.sample.prompt=IN.mid --config.sample.num_tokens=512]

The model comes from the workdir's latest checkpoint; the `sample` block from the command
line. Each token is drawn from a full forward pass over the last `model.context_length`
tokens, under PerTok's grammar unless `sample.grammar=False`; files, lines and piano rolls as
for PerceiverS (`experiments.samples`).
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from absl import logging

from experiments import samples
from experiments.restore import restore_latest
from pertok import PerTok
from pertok.grammar import Grammar
from training.validate import ConfigError


def generate(config, workdir: str) -> list[str]:
    """Write `sample.num_samples` MIDI files to WORKDIR/samples; returns their paths."""
    sample, tokenizer = config.sample, PerTok()
    samples.check_sample(sample)
    task, params, _, step = restore_latest(workdir, tokenizer, "lm")
    use_grammar = bool(sample.grammar)
    decoder = task.decoder(Grammar(tokenizer, "full") if use_grammar else None)
    prompt = samples.prompt_tokens(sample, tokenizer)
    logging.info("generating %d x %d tokens after a %d-token prompt (step %d of %s)",
                 sample.num_samples, sample.num_tokens, len(prompt), step, workdir)
    progress = samples.Progress(sample.num_tokens, sample.num_samples)
    try:
        generated = decoder.generate(
            params, np.repeat(prompt[None], sample.num_samples, axis=0), sample.num_tokens,
            jax.random.key(sample.seed), sample.temperature, sample.top_k, sample.top_p,
            eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, progress=progress)
    except ValueError as error:  # the prompt cannot be continued under the grammar
        raise ConfigError(f"sample.prompt={sample.prompt!r}: {error}") from None
    written = samples.write_samples(Path(workdir) / "samples", tokenizer, prompt, generated, step,
                                    sample, use_grammar)
    return [str(result.path) for result in written]
