"""The Performer: fills MicroTiming and Velocity of a composition; trained on performances.

    python -m experiments.main --config=experiments/configs/performer.py:tiny --workdir=runs/performer-tiny
    python -m experiments.main --config=experiments/configs/performer.py:small --workdir=runs/performer-small \
        --config.data.midi_dir=../shared/midi/asap
    python -m experiments.main --config=experiments/configs/performer.py:base --workdir=runs/performer-asap \
        --config.data.midi_dir=../shared/midi/asap
"""
import ml_collections

from experiments.configs.harness import add_harness, new_config

VARIANTS = ("tiny", "small", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two), `small` (2-core CPU, at
    most 45 minutes: the size the Cadenza results are measured at) and `base` (default, one GPU)."""
    c, variant = new_config("performer", "performer.py", arg, VARIANTS)  # task, seed, model block
    size = lambda tiny, small, base: {"tiny": tiny, "small": small, "base": base}[variant]  # noqa: E731
    c.model.context_length = size(256, 256, 1024)  # tokens per window (level + whole bars)
    c.model.d_model = size(64, 128, 512)  # residual stream width
    c.model.num_layers = size(2, 3, 8)  # bidirectional transformer blocks
    c.model.num_heads = size(4, 4, 8)  # attention heads; must divide d_model
    c.model.mlp_dim = size(128, 256, 2048)  # hidden width of each block's MLP
    c.model.dropout = size(0.0, 0.0, 0.1)  # on attention outputs and residual branches
    c.model.rotary_fraction = 0.5  # share of each head's channels rotated by position
    c.model.dtype = "bfloat16" if variant == "base" else "float32"  # compute; parameters float32
    c.model.level_dropout = 0.2  # chance a window is not told its piece's dynamic level (MASK)
    c.model.continuation = 0.25  # chance a window's first slots are all given, as in a carried window

    add_harness(c, "tiny" if variant == "small" else variant)  # data, train, eval, checkpoint, ...
    # No velocity shift: one that moved the targets but not a MASKed input would be label noise;
    # the dynamic level now in front of every window is how the Performer learns loud and soft.
    c.data.velocity_shift = 0  # velocity bins to shift inputs and targets by (0 = off)
    c.train.steps = size(300, 3000, 50_000)  # optimizer updates
    c.train.batch_size = size(16, 16, 32)  # global windows per update (all processes)
    c.train.learning_rate = size(2e-3, 1e-3, 3e-4)  # peak AdamW learning rate
    c.train.warmup_steps = size(50, 150, 2000)  # linear learning-rate warmup from 0 to the peak
    c.train.b2 = 0.98  # Adam second-moment decay
    c.train.weight_decay = 0.01  # AdamW decay on weight matrices only
    c.train.log_every = size(20, 50, 100)  # steps between metrics lines and progress lines
    c.eval.every = size(200, 500, 2000)  # steps between validation passes
    c.eval.batches = size(2, 4, 50)  # fixed validation batches per pass
    c.eval.batch_size = size(16, 16, 32)  # windows per validation batch (all processes)
    c.checkpoint.every = size(200, 500, 2000)  # steps between checkpoints
    c.checkpoint.keep = 2  # most recent checkpoints kept

    c.lock()
    return c


def sweep(add) -> None:
    """Depth against context length; each `add(**overrides)` is one run."""
    for num_layers in (4, 8):
        for context_length in (512, 1024):
            add(**{"model.num_layers": num_layers, "model.context_length": context_length})
