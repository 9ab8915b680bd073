"""The Composer VAE over musical ideas (composition-only PerTok, a few bars each).

    python -m experiments.main --config=experiments/configs/composer.py:tiny --workdir=runs/composer-tiny
    python -m experiments.sweep experiments/configs/composer.py:tiny --workdir_root=runs/composer-sweep
"""
import ml_collections

from experiments.configs.harness import add_harness, new_config

VARIANTS = ("tiny", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two) and `base` (default, one GPU)."""
    c, variant = new_config("composer", "composer.py", arg, VARIANTS)  # task, seed, model block
    tiny = variant == "tiny"
    c.model.context_length = 128 if tiny else 512  # encoder/decoder length: BOS + idea (+ EOS)
    c.model.d_model = 64 if tiny else 512  # residual stream width of both halves
    c.model.encoder_layers = 2 if tiny else 6  # bidirectional blocks (MuseMorphose: 12)
    c.model.decoder_layers = 2 if tiny else 6  # causal in-attention blocks (MuseMorphose: 12)
    c.model.num_heads = 4 if tiny else 8  # attention heads; must divide d_model
    c.model.mlp_dim = 128 if tiny else 2048  # hidden width of each block's MLP
    c.model.latent_dim = 16 if tiny else 128  # dimensions of z
    c.model.dropout = 0.0 if tiny else 0.1  # on attention outputs and residual branches
    c.model.rotary_fraction = 0.5  # share of each head's channels rotated by position
    c.model.dtype = "float32" if tiny else "bfloat16"  # compute dtype; parameters stay float32

    c.idea = ml_collections.ConfigDict()
    c.idea.num_bars = 2 if tiny else 4  # bars per idea (fewer where they exceed the context)

    c.kl = ml_collections.ConfigDict()
    c.kl.beta_max = 1.0  # KL weight at the top of each cycle (MuseMorphose: 1)
    c.kl.free_bits = 0.25  # nats per latent dimension that cost nothing (MuseMorphose: 0.25)
    c.kl.warmup_steps = 50 if tiny else 5000  # zero-KL warm-up: pure autoencoding first
    c.kl.cycle_steps = 100 if tiny else 20000  # steps per beta cycle after the warm-up; 0 = flat
    c.kl.ramp_fraction = 0.5  # share of each cycle in which beta rises linearly from 0
    c.kl.active_threshold = 0.01  # a dimension is active when Var over the batch of mu exceeds it

    add_harness(c, variant)  # data, train, eval, checkpoint, mesh, distributed: harness.py
    c.data.velocity_shift = 0  # ideas hold no Velocity tokens
    c.data.pitch_shift = 3  # transpose ideas by up to this many semitones (drums untouched)
    c.train.steps = 400 if tiny else 100_000  # optimizer updates
    c.train.learning_rate = 2e-3 if tiny else 2e-4  # peak AdamW learning rate
    c.train.b2 = 0.98  # Adam second-moment decay
    c.train.weight_decay = 0.01  # AdamW decay on weight matrices only
    c.eval.batches = 2 if tiny else 50  # fixed validation batches per pass
    c.checkpoint.keep = 2  # most recent checkpoints kept

    c.lock()
    return c


def sweep(add) -> None:
    """Latent size against free bits and the beta cycle; each `add(**overrides)` is one run."""
    for latent_dim in (64, 128):
        for free_bits in (0.0, 0.25, 1.0):
            for cycle_steps in (0, 20_000):
                add(**{"model.latent_dim": latent_dim, "kl.free_bits": free_bits,
                       "kl.cycle_steps": cycle_steps})
