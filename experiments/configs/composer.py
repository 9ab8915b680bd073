"""The Composer VAE over musical ideas (composition-only PerTok, a few bars each).

    python -m experiments.main --config=experiments/configs/composer.py:tiny --workdir=runs/composer-tiny
    python -m experiments.main --config=experiments/configs/composer.py:small --workdir=runs/composer-small
    python -m experiments.sweep experiments/configs/composer.py:tiny --workdir_root=runs/composer-sweep
"""
import ml_collections

from experiments.configs.harness import add_harness, new_config

VARIANTS = ("tiny", "small", "base")
# Runs saved before a key existed (`experiments.config_history`): the value that reproduces them.
ADDED = {"model.latents_per_bar": 0,  # before it: one latent per idea
         "model.onset_embedding": False}
# Keys the code no longer reads: how a saved value maps onto today's keys.
RENAMED = {"model.bar_latents": lambda on: {"model.latents_per_bar": 1 if on else 0}}  # per bar, or per idea


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two), `small` (2-core CPU, at
    most 45 minutes: the size the Cadenza results are measured at) and `base` (default, one GPU)."""
    c, variant = new_config("composer", "composer.py", arg, VARIANTS)  # task, seed, model block
    size = lambda tiny, small, base: {"tiny": tiny, "small": small, "base": base}[variant]  # noqa: E731
    c.model.context_length = size(128, 192, 512)  # encoder/decoder length: BOS + idea (+ EOS)
    c.model.d_model = size(64, 128, 512)  # residual stream width of both halves
    c.model.encoder_layers = size(2, 2, 6)  # bidirectional blocks (MuseMorphose: 12)
    c.model.decoder_layers = size(2, 3, 6)  # causal in-attention blocks (MuseMorphose: 12)
    c.model.num_heads = size(4, 4, 8)  # attention heads; must divide d_model
    c.model.mlp_dim = size(128, 256, 2048)  # hidden width of each block's MLP
    c.model.latent_dim = size(16, 64, 128)  # dimensions of each latent
    c.model.latents_per_bar = 4  # one latent per quarter of each bar; 1 = per bar; 0 = per idea
    # On `small`, embedding onsets lowered held-out cross-entropy but moved greedy F1 both ways on
    # the selection sets (one measured run each; the numbers were not written by a command).
    c.model.onset_embedding = False  # add an embedding of each token's onset in its bar (a sweep point)
    c.model.max_programs = 6  # Programs the decoder's prefix names (more in one idea: first ones)
    c.model.dropout = size(0.0, 0.0, 0.1)  # on attention outputs and residual branches
    c.model.rotary_fraction = 0.5  # share of each head's channels rotated by position
    c.model.dtype = "bfloat16" if variant == "base" else "float32"  # compute; parameters float32

    c.idea = ml_collections.ConfigDict()
    c.idea.num_bars = size(2, 2, 4)  # bars per idea (fewer where they exceed the context)
    c.idea.condition_dropout = 0.1  # chance each prefix field (meter, programs, bars) is left open

    c.kl = ml_collections.ConfigDict()
    c.kl.beta_max = size(0.5, 0.1, 0.5)  # KL weight per target token at the top of each cycle (<= 1)
    c.kl.free_bits = 0.25  # nats per latent dimension that cost nothing (MuseMorphose: 0.25)
    c.kl.warmup_steps = size(40, 200, 5000)  # zero-KL warm-up: pure autoencoding first
    c.kl.cycles = 4  # beta cycles filling the run after the warm-up (Fu et al. 2019: 4); 0 = flat
    c.kl.ramp_fraction = 0.5  # share of each cycle in which beta rises linearly from 0

    add_harness(c, "tiny" if variant == "small" else variant)  # data, train, eval, checkpoint, ...
    c.data.velocity_shift = 0  # ideas hold no Velocity tokens
    c.data.pitch_shift = 3  # transpose ideas by up to this many semitones (drums untouched)
    c.data.builtin_pieces = size(64, 400, 2000)  # pieces of the built-in corpus
    c.train.steps = size(400, 4800, 100_000)  # optimizer updates
    c.train.learning_rate = size(2e-3, 1e-3, 2e-4)  # peak AdamW learning rate
    c.train.warmup_steps = size(50, 200, 2000)  # linear learning-rate warmup from 0 to the peak
    c.train.b2 = 0.98  # Adam second-moment decay
    c.train.weight_decay = 0.01  # AdamW decay on weight matrices only
    c.train.log_every = size(10, 50, 100)  # steps between metrics lines: several per beta cycle
    c.eval.every = size(200, 1200, 2000)  # steps between validation passes (held-out latent gap)
    c.eval.batches = size(2, 4, 50)  # fixed validation batches per pass
    c.checkpoint.every = size(200, 1200, 2000)  # steps between checkpoints
    c.checkpoint.keep = 2  # most recent checkpoints kept

    c.lock()
    return c


def sweep(add) -> None:
    """The KL balance (beta against free bits and the beta cycles), then the latent layout (one
    per idea, per bar, per half and per quarter bar) and the onset embedding at the defaults;
    each `add(**overrides)` is one run. (The default, a latent per quarter bar, was chosen on the
    held-out ASAP folders, where it reconstructed ideas far better than one per idea or per bar.)"""
    for beta_max in (0.25, 0.5, 1.0):
        for free_bits in (0.0, 0.25):
            for cycles in (0, 4):
                add(**{"kl.beta_max": beta_max, "kl.free_bits": free_bits, "kl.cycles": cycles})
    for latents_per_bar in (0, 1, 2):  # 4 is the default, already a point above
        add(**{"model.latents_per_bar": latents_per_bar})
    add(**{"model.onset_embedding": True})
