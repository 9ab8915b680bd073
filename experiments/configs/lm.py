"""The baseline decoder-only transformer LM on PerTok tokens.

    python -m experiments.main --config=experiments/configs/lm.py:tiny --workdir=runs/lm-tiny
    python -m experiments.sweep experiments/configs/lm.py:tiny --workdir_root=runs/lm-sweep
"""
import ml_collections

VARIANTS = ("tiny", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny` (2-core CPU, built-in corpus, a minute or two) and `base` (default)."""
    variant = arg or "base"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of lm.py; choose one of {VARIANTS}")
    tiny = variant == "tiny"
    c = ml_collections.ConfigDict()
    c.task = "lm"  # which model package experiments/tasks.py wires in
    c.seed = 0  # parameters, dropout, example order and augmentation all derive from it

    c.model = ml_collections.ConfigDict()
    c.model.context_length = 64 if tiny else 1024  # tokens per training window
    c.model.d_model = 32 if tiny else 512  # residual stream width
    c.model.num_layers = 2 if tiny else 8  # transformer blocks
    c.model.num_heads = 4 if tiny else 8  # attention heads; must divide d_model
    c.model.mlp_dim = 128 if tiny else 2048  # hidden width of each block's MLP
    c.model.dropout = 0.0 if tiny else 0.1  # on attention weights and residual branches
    c.model.dtype = "float32" if tiny else "bfloat16"  # compute dtype; parameters stay float32

    c.data = ml_collections.ConfigDict()
    c.data.midi_dir = ""  # MIDI files to tokenize; "" = the built-in synthetic corpus
    c.data.builtin_pieces = 64 if tiny else 2000  # pieces of the built-in corpus
    c.data.cache_dir = "runs/cache"  # where the built-in corpus and token stores are kept
    c.data.store_dir = ""  # token store path; "" = a cache entry named after midi_dir
    c.data.store_workers = 1 if tiny else 0  # processes tokenizing a new store; 0 = per core
    c.data.valid_fraction = 0.1  # share of pieces (by a hash of their path) held out
    c.data.pitch_shift = 3  # transpose by up to this many semitones (drums untouched)
    c.data.velocity_shift = 2  # shift velocities by up to this many bins
    c.data.prefetch = 2  # batches built ahead on a background thread

    c.train = ml_collections.ConfigDict()
    c.train.steps = 600 if tiny else 100_000  # optimizer updates
    c.train.batch_size = 16 if tiny else 64  # global examples per update (all processes)
    c.train.accum_steps = 1  # microbatches per update (gradient accumulation)
    c.train.learning_rate = 3e-3 if tiny else 3e-4  # peak AdamW learning rate
    c.train.warmup_steps = 50 if tiny else 2000  # linear warmup from 0 to the peak
    c.train.end_lr_fraction = 0.1  # cosine decay ends at this fraction of the peak
    c.train.weight_decay = 0.01 if tiny else 0.1  # AdamW decay on weight matrices only
    c.train.b1 = 0.9  # Adam first-moment decay
    c.train.b2 = 0.95  # Adam second-moment decay
    c.train.grad_clip = 1.0  # clip the global gradient norm to this; 0 = off
    c.train.log_every = 20 if tiny else 100  # steps between metrics lines and progress lines

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 200 if tiny else 2000  # steps between validation passes; 0 = never
    c.eval.batches = 4 if tiny else 50  # fixed validation batches per pass
    c.eval.batch_size = 16 if tiny else 64  # examples per validation batch (all processes)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 200 if tiny else 2000  # steps between checkpoints
    c.checkpoint.keep = 3  # most recent checkpoints kept
    c.checkpoint.preemption_sync_every = 10  # steps between multi-process stop-flag checks

    c.mesh = ml_collections.ConfigDict()
    c.mesh.fsdp = 1  # devices per parameter shard (fsdp axis); the rest is the data axis
    c.mesh.fsdp_min_size = 2**14  # parameters with fewer elements stay replicated

    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = False  # jax.distributed.initialize(); also on JAX_COORDINATOR_ADDRESS
    c.distributed.coordinator_address = ""  # host:port of process 0; "" = detect
    c.distributed.num_processes = 0  # 0 = detect
    c.distributed.process_id = -1  # -1 = detect

    c.lock()
    return c


def sweep(add) -> None:
    """Learning rate against depth; each `add(**overrides)` is one run."""
    for learning_rate in (1e-3, 3e-3):
        for num_layers in (1, 2):
            add(**{"train.learning_rate": learning_rate, "model.num_layers": num_layers})
