"""The baseline decoder-only transformer LM on PerTok tokens: the plain autoregressive model
that PerceiverS (long context, two cross-attentions) is measured against.

    python -m experiments.main --config=experiments/configs/lm.py:tiny --workdir=runs/lm-tiny
    python -m experiments.sweep experiments/configs/lm.py:tiny --workdir_root=runs/lm-sweep
"""
import ml_collections

from experiments.configs.harness import add_harness, add_heldout, add_sample, new_config

VARIANTS = ("tiny", "small", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two), `small` (PerceiverS
    `small`'s control: its data, held-out pieces, parameter count and training tokens) and
    `base` (default)."""
    c, variant = new_config("lm", "lm.py", arg, VARIANTS)  # task, seed, model block
    tiny = variant == "tiny"
    c.model.context_length = 64 if tiny else 1024  # tokens per training window
    c.model.d_model = 32 if tiny else 512  # residual stream width
    c.model.num_layers = 2 if tiny else 8  # transformer blocks
    c.model.num_heads = 4 if tiny else 8  # attention heads; must divide d_model
    c.model.mlp_dim = 128 if tiny else 2048  # hidden width of each block's MLP
    c.model.dropout = 0.0 if tiny else 0.1  # on attention weights and residual branches
    c.model.dtype = "float32" if tiny else "bfloat16"  # compute dtype; parameters stay float32

    add_harness(c, variant)  # data, train, eval, checkpoint, mesh, distributed: harness.py

    add_sample(c, num_tokens=512 if tiny else 2048)  # --mode=generate (experiments/lm.py)
    # --mode=eval's held-out protocol, as perceivers.py's of the same variant: the stride (0 = the
    # context length) equals PerceiverS's N (64, 1024), so the two score the same targets
    add_heldout(c, stride=0, buckets="64,128" if tiny else "1024,2048,4096", max_tokens=0 if tiny else 200_000)

    if variant == "small":
        _small(c)
    c.lock()
    return c


def _small(c: ml_collections.ConfigDict) -> None:
    """PerceiverS `small`'s control: the same data and split, a parameter count within 10% of
    its, and the same training target tokens (8 windows of 512 = 16 examples of N = 256 targets
    per step, the same steps); scored at its stride N = 256."""
    from experiments.configs.perceivers import SMALL_DATA

    c.model.context_length = 512  # tokens per training window (>= the held-out stride, 256)
    c.model.d_model = 128  # as PerceiverS small
    c.model.num_layers = 5  # parameters within 10% of PerceiverS small (tests/perceivers/test_task.py)
    c.model.num_heads = 4  # as PerceiverS small
    c.model.mlp_dim = 512  # as PerceiverS small
    c.model.dropout = 0.1  # as PerceiverS small
    c.model.dtype = "float32"  # CPU: float32 is the fast path
    c.data.midi_dir = SMALL_DATA  # PerceiverS small's real piano
    c.data.split = "folder"  # the same held-out pieces
    c.data.store_workers = 2  # tokenizing processes for a new store
    c.train.steps = 600  # as PerceiverS small
    c.train.batch_size = 8  # 8 x 512 targets = PerceiverS small's 16 x 256 per step
    c.train.learning_rate = 1e-3  # as PerceiverS small
    c.train.warmup_steps = 60  # as PerceiverS small
    c.train.log_every = 25  # steps between metrics lines
    c.eval.every = 200  # steps between validation passes
    c.eval.batches = 4  # validation batches per pass (the learning curve; heldout.json is the comparison)
    c.eval.batch_size = 8  # examples per validation batch
    c.checkpoint.every = 200  # steps between checkpoints
    c.eval.heldout_stride = 256  # PerceiverS small's N: the same targets
    c.eval.heldout_buckets = "256,1024,2048"  # as PerceiverS small
    c.sample.num_tokens = 2048  # tokens per sample


def sweep(add) -> None:
    """Learning rate against depth; each `add(**overrides)` is one run."""
    for learning_rate in (1e-3, 3e-3):
        for num_layers in (1, 2):
            add(**{"train.learning_rate": learning_rate, "model.num_layers": num_layers})
