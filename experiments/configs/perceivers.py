"""PerceiverS (multi-scale Perceiver AR, effective segmentation) on PerTok tokens.

    python -m experiments.main --config=experiments/configs/perceivers.py:tiny --workdir=runs/ps-tiny
    python -m experiments.main --config=experiments/configs/perceivers.py:tiny --workdir=runs/ps-tiny \
        --mode=generate [--config.sample.prompt=IN.mid] [--config.sample.num_tokens=4096]
    python -m experiments.sweep experiments/configs/perceivers.py:base --workdir_root=runs/ps-sweep

`model.scale_window = 0` is plain Perceiver AR (the model's `scale_window=None`): a command-line
override cannot set an int field to None.
"""
import ml_collections

from experiments.configs.harness import add_harness, add_heldout, add_sample, new_config

VARIANTS = ("tiny", "small", "base", "paper")
# Runs saved before a key existed (`experiments.config_history`): the value that reproduces them.
ADDED = {"model.scale_mask": "sliding",  # the only reading before the key
         "data.buckets": 1}  # every batch at the full context


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, minutes), `small` (2-core CPU, real piano,
    at most 12 minutes: the size the ablations run at), `base` (one GPU, default) and `paper`
    (context 32768, query 1024)."""
    c, variant = new_config("perceivers", "perceivers.py", arg, VARIANTS)  # task, seed, model block
    tiny, paper = variant == "tiny", variant == "paper"
    c.model.context_length = 256 if tiny else 32768 if paper else 8192  # L: tokens of context
    c.model.query_length = 64 if tiny else 1024  # N: latents, the positions trained per example
    c.model.scale_window = 64 if tiny else 1024  # W of the second cross-attention; 0 = none
    c.model.combination = "cascade"  # how the two cross-attentions combine: cascade, sum, concat
    # Reading of "limited to the last W tokens": "sliding" (each latent sees the W tokens up to
    # its own position) or "last" (the context's last W positions, causally; W = N makes it a
    # causal self-attention over the latents' own positions).
    c.model.scale_mask = "sliding"
    c.model.d_model = 64 if tiny else 1024 if paper else 512  # residual stream width
    c.model.num_layers = 2 if tiny else 12 if paper else 8  # self-attention blocks over latents
    c.model.num_heads = 4 if tiny else 16 if paper else 8  # attention heads; must divide d_model
    c.model.mlp_dim = 256 if tiny else 4 * (1024 if paper else 512)  # hidden width of each MLP
    c.model.rotary_fraction = 0.5  # share of each head's channels rotated (Perceiver AR: 0.5)
    c.model.dropout = 0.0 if tiny else 0.1  # on residual branches
    c.model.context_dropout = 0.0 if tiny else 0.15  # drop prefix keys of the cross-attention
    c.model.attention_impl = "auto"  # layers.attention implementation: auto, xla, blockwise...
    c.model.remat = paper  # recompute attention and MLPs on the backward pass to save memory
    c.model.dtype = "float32" if tiny else "bfloat16"  # compute dtype; parameters stay float32

    add_harness(c, variant)  # data, train, eval, checkpoint, mesh, distributed: harness.py
    c.data.segmentation = "effective"  # examples per piece: effective, fixed, random_crop
    # Context-length buckets L/2^(b-1) .. L: each batch one length, its own compiled step, so
    # short contexts are not padded to L (effective/fixed; training.data.BucketedStepSampler).
    c.data.buckets = 1 if tiny else 4  # 1 = every batch at L
    c.train.batch_size = 16 if tiny else 32  # global examples per update (all processes)
    c.train.learning_rate = 2e-3 if tiny else 3e-4  # peak AdamW learning rate
    c.train.warmup_steps = 30 if tiny else 2000  # linear warmup from 0 to the peak
    c.train.log_every = 25 if tiny else 100  # steps between metrics lines and progress lines
    c.eval.batches = 8 if tiny else 50  # fixed validation batches per pass
    c.eval.batch_size = 16 if tiny else 32  # examples per validation batch (all processes)

    add_sample(c, num_tokens=1024 if tiny else 4096)  # --mode=generate (experiments/perceivers.py)
    c.sample.reset_fill = 0  # latents kept when the latent cache resets; 0 = query_length // 2
    # --mode=eval's held-out protocol: stride N, so the windows are effective segmentation's
    add_heldout(c, stride=0, buckets="64,128" if tiny else "1024,2048,4096", max_tokens=0 if tiny else 200_000)

    if variant == "small":
        _small(c)
    c.lock()
    return c


# Real expressive piano: ASAP's performances (beat-aligned by their annotations), ten MAESTRO
# performances and the GiantMIDI subset. `lm.py:small` trains on the same.
SMALL_DATA = "../shared/midi/asap/performances,../shared/midi/maestro10,../shared/midi/giantmidi"


def _small(c: ml_collections.ConfigDict) -> None:
    """`small`: L, N and W where the two cross-attentions differ (W = N = L / 8), on real music."""
    c.model.context_length = 2048  # L
    c.model.query_length = 256  # N
    c.model.scale_window = 256  # W: the scale branch sees an eighth of the context
    c.model.d_model = 128  # residual stream width
    c.model.num_layers = 4  # self-attention blocks over latents
    c.model.num_heads = 4  # attention heads
    c.model.mlp_dim = 512  # hidden width of each MLP
    c.model.dropout = 0.1  # on residual branches
    c.model.context_dropout = 0.0  # no prefix-key dropout at this size
    c.model.dtype = "float32"  # CPU: float32 is the fast path
    c.data.midi_dir = SMALL_DATA  # real expressive piano (above)
    c.data.split = "folder"  # no held-out piece trained on through another performance
    c.data.store_workers = 2  # tokenizing processes for a new store
    c.train.steps = 600  # about 12 minutes on 2 CPU cores
    c.train.batch_size = 16  # examples (N targets each) per update
    c.train.learning_rate = 1e-3  # peak AdamW learning rate
    c.train.warmup_steps = 60  # linear warmup
    c.train.log_every = 25  # steps between metrics lines
    c.eval.every = 200  # steps between validation passes
    c.eval.batches = 4  # validation batches per pass (the learning curve; heldout.json is the comparison)
    c.eval.batch_size = 16  # examples per validation batch
    c.checkpoint.every = 200  # steps between checkpoints
    c.eval.heldout_buckets = "256,1024,2048"  # the first N positions; up to L; beyond L
    c.sample.num_tokens = 2048  # tokens per sample


def sweep(add, variant: str = "base") -> None:
    """The paper's ablations around `variant`, one axis at a time (run them with the same variant).

    Scale window {W/2, W, 2W, none (0)} (those <= L), combination {cascade, sum, concat}, scale
    mask {sliding, last}, segmentation {effective, fixed, random_crop}, context length {L/2, L,
    2L, 4L}: the point equal to the variant once, then every other value alone.
    """
    base = get_config(variant)
    L, W = base.model.context_length, base.model.scale_window
    axes = {
        "model.scale_window": tuple(w for w in (W // 2, W, 2 * W, 0) if w <= L),
        "model.combination": ("cascade", "sum", "concat"),
        "model.scale_mask": ("sliding", "last"),
        "data.segmentation": ("effective", "fixed", "random_crop"),
        "model.context_length": (L // 2, L, 2 * L, 4 * L),
    }
    add()
    for key, values in axes.items():
        block, field = key.split(".")
        for value in values:
            if value != base[block][field]:
                add(**{key: value})


def ablations(add, variant: str = "small") -> None:
    """The ablation table of `python -m experiments.ablate` (issue: the paper's claims at `small`).

    `add(name, config_file, overrides, seeds)`: PerceiverS, plain Perceiver AR (no scale window)
    and the LM baseline with 3 seeds; then, around PerceiverS, each other reading with 2 seeds:
    segmentation fixed and random crop, the combinations sum and concat, half and twice the scale
    window, and the `last` scale mask.
    """
    W = get_config(variant).model.scale_window
    add("PerceiverS", "perceivers.py", {}, 3)
    add("Perceiver AR", "perceivers.py", {"model.scale_window": 0}, 3)
    add("LM", "lm.py", {}, 3)
    add("segmentation fixed", "perceivers.py", {"data.segmentation": "fixed"}, 2)
    add("segmentation random_crop", "perceivers.py", {"data.segmentation": "random_crop"}, 2)
    add("combination sum", "perceivers.py", {"model.combination": "sum"}, 2)
    add("combination concat", "perceivers.py", {"model.combination": "concat"}, 2)
    add(f"scale window {W // 2}", "perceivers.py", {"model.scale_window": W // 2}, 2)
    add(f"scale window {2 * W}", "perceivers.py", {"model.scale_window": 2 * W}, 2)
    add("scale mask last", "perceivers.py", {"model.scale_mask": "last"}, 2)
