"""The baseline decoder-only transformer LM on PerTok tokens: the plain autoregressive model
that PerceiverS (long context, two cross-attentions) is measured against.

    python -m experiments.main --config=experiments/configs/lm.py:tiny --workdir=runs/lm-tiny
    python -m experiments.sweep experiments/configs/lm.py:tiny --workdir_root=runs/lm-sweep
"""
import ml_collections

from experiments.configs.harness import add_harness, add_heldout, add_sample, new_config

VARIANTS = ("tiny", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two) and `base` (default)."""
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
    # --mode=eval's held-out protocol, as perceivers.py's of the same variant (stride = its N), so
    # the two score the same targets
    add_heldout(c, stride=64 if tiny else 1024, buckets="64,128" if tiny else "1024,2048,4096",
                max_tokens=0 if tiny else 200_000)

    c.lock()
    return c


def sweep(add) -> None:
    """Learning rate against depth; each `add(**overrides)` is one run."""
    for learning_rate in (1e-3, 3e-3):
        for num_layers in (1, 2):
            add(**{"train.learning_rate": learning_rate, "model.num_layers": num_layers})
