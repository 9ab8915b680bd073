"""One tiny Composer task and its parameters for the composer tests (compiled once)."""
import jax
import numpy as np
import pytest

from experiments import config_file
from experiments.tasks import build_task
from pertok import PerTok
from pertok.synthetic import write_corpus
from training import MemoryPieces

LATENT = 4


@pytest.fixture(scope="session")
def tiny_composer(tmp_path_factory):
    """(task, params, batch of 4 ideas): d_model 16, one encoder and two decoder layers."""
    config = config_file.load_config("experiments/configs/composer.py:tiny")
    with config.unlocked():
        config.model.update(d_model=16, encoder_layers=1, decoder_layers=2, num_heads=2, mlp_dim=32,
                            latent_dim=LATENT, context_length=64)
        config.kl.update(warmup_steps=10, cycles=1, ramp_fraction=0.5, beta_max=1.0)
        config.train.steps = 110  # one 100-step beta cycle after the warm-up
    tokenizer = PerTok()
    task = build_task(config, tokenizer)
    task.validate()
    paths = write_corpus(tmp_path_factory.mktemp("corpus"), 2, seed=1)
    sampler = task.sampler(MemoryPieces([tokenizer.encode(p) for p in paths], [p.name for p in paths]))
    batch = {k: np.stack([sampler.example(i, None)[k] for i in range(4)]) for k in sampler.example(0, None)}
    return task, jax.jit(task.init)(jax.random.key(0), batch), batch
