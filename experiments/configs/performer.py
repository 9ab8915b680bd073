"""The Performer: fills MicroTiming and Velocity of a composition; trained on performances.

    python -m experiments.main --config=experiments/configs/performer.py:tiny --workdir=runs/performer-tiny
    python -m experiments.main --config=experiments/configs/performer.py:base --workdir=runs/performer-asap \
        --config.data.midi_dir=../shared/midi/asap/performances
"""
import ml_collections

from experiments.configs.harness import add_harness, new_config

VARIANTS = ("tiny", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two) and `base` (default, one GPU)."""
    c, variant = new_config("performer", "performer.py", arg, VARIANTS)  # task, seed, model block
    tiny = variant == "tiny"
    c.model.context_length = 256 if tiny else 1024  # tokens per window (whole bars where possible)
    c.model.d_model = 64 if tiny else 512  # residual stream width
    c.model.num_layers = 2 if tiny else 8  # bidirectional transformer blocks
    c.model.num_heads = 4 if tiny else 8  # attention heads; must divide d_model
    c.model.mlp_dim = 128 if tiny else 2048  # hidden width of each block's MLP
    c.model.dropout = 0.0 if tiny else 0.1  # on attention outputs and residual branches
    c.model.rotary_fraction = 0.5  # share of each head's channels rotated by position
    c.model.dtype = "float32" if tiny else "bfloat16"  # compute dtype; parameters stay float32

    add_harness(c, variant)  # data, train, eval, checkpoint, mesh, distributed: harness.py
    c.data.velocity_shift = 2  # shift target velocities by up to this many bins
    c.train.steps = 300 if tiny else 50_000  # optimizer updates
    c.train.batch_size = 16 if tiny else 32  # global windows per update (all processes)
    c.train.learning_rate = 2e-3 if tiny else 3e-4  # peak AdamW learning rate
    c.train.b2 = 0.98  # Adam second-moment decay
    c.train.weight_decay = 0.01  # AdamW decay on weight matrices only
    c.eval.batches = 2 if tiny else 50  # fixed validation batches per pass
    c.eval.batch_size = 16 if tiny else 32  # windows per validation batch (all processes)
    c.checkpoint.keep = 2  # most recent checkpoints kept

    c.lock()
    return c


def sweep(add) -> None:
    """Depth against context length; each `add(**overrides)` is one run."""
    for num_layers in (4, 8):
        for context_length in (512, 1024):
            add(**{"model.num_layers": num_layers, "model.context_length": context_length})
