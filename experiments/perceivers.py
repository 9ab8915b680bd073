"""`--mode=generate` for a trained PerceiverS: sample continuations, write them as MIDI.

    python -m experiments.main --config=experiments/configs/perceivers.py:tiny --workdir=runs/ps-tiny \
        --mode=generate [--config.sample.prompt=IN.mid --config.sample.num_tokens=4096]

The model comes from the workdir's latest checkpoint and the config saved with it; the
`sample` block comes from the command line. Sampling follows PerTok's grammar
(`sample.grammar`, on by default), so every sample decodes; each (prompt tokens, then the
generated ones) is written to WORKDIR/samples/*.mid with a piano roll beside it
(`experiments.samples`), and one line tells its notes, seconds and dropped tokens.
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


def load_params(workdir: str, tokenizer: PerTok):
    """(task, params, step) of the latest checkpoint of a `perceivers` run, on one device."""
    task, params, _, step = restore_latest(workdir, tokenizer, "perceivers")
    return task, params, step


def generate(config, workdir: str, out_dir: str | None = None) -> list[str]:
    """Write `sample.num_samples` MIDI files to WORKDIR/samples (or `out_dir`: the model may be a
    shipped `pretrained/` folder, which is never written into); returns their paths."""
    from perceivers import SampleSettings

    sample, tokenizer = config.sample, PerTok()
    samples.check_sample(sample)
    task, params, step = load_params(workdir, tokenizer)
    use_grammar = bool(sample.get("grammar", True))
    try:
        decoder = task.decoder(sample.reset_fill, Grammar(tokenizer, "full") if use_grammar else None)
    except ValueError as error:
        raise ConfigError(f"sample.reset_fill={sample.reset_fill}: {error}") from None
    prompt = samples.prompt_tokens(sample, tokenizer)
    settings = SampleSettings(sample.temperature, sample.top_k, sample.top_p)
    logging.info("generating %d x %d tokens after a %d-token prompt (step %d of %s)",
                 sample.num_samples, sample.num_tokens, len(prompt), step, workdir)
    progress = samples.Progress(sample.num_tokens, sample.num_samples)
    try:
        generated = decoder.generate(params, np.repeat(prompt[None], sample.num_samples, axis=0),
                                     sample.num_tokens, jax.random.key(sample.seed), settings,
                                     eos_id=tokenizer.eos_id, progress=progress)
    except ValueError as error:  # the prompt cannot be continued under the grammar
        raise ConfigError(f"sample.prompt={sample.prompt!r}: {error}") from None
    written = samples.write_samples(Path(out_dir) if out_dir else Path(workdir) / "samples", tokenizer, prompt,
                                    generated, step, sample, use_grammar)
    return [str(result.path) for result in written]
