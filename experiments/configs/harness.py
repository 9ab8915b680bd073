"""The training-harness blocks every trainable config extends: data, train, eval, checkpoint,
mesh, distributed and resume. A model config calls `add_harness(c, variant)` and then overrides
only the fields it needs (see lm.py, perceivers.py, composer.py, performer.py).
"""
import ml_collections

# Keys added after runs were saved: the value that reproduces a run saved without the key
# (`experiments.config_history`). A key that shapes the model or its training and is missing
# from an old run's config, with no value here, makes that run one clear error.
ADDED = {"data.beats": "none",  # before beat alignment: every file as it is
         "data.split": "file"}  # before folder/top splits: held out by file path


def add_harness(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Add the harness blocks to `c` at the sizes of `variant` ("tiny" = 2-core CPU)."""
    tiny = variant == "tiny"

    c.data = ml_collections.ConfigDict()
    # Several sources, comma-separated ("a,b,builtin"): one token store each, read in that
    # order. The word builtin is the built-in corpus; a folder of that name is ./builtin.
    c.data.midi_dir = ""  # MIDI folder(s) to tokenize; "" or builtin = the built-in synthetic corpus
    c.data.beats = "auto"  # "auto": align files that have NAME_annotations.txt beside them; "none"
    c.data.builtin_pieces = 64 if tiny else 2000  # pieces of the built-in corpus
    c.data.cache_dir = "runs/cache"  # where the built-in corpus and token stores are kept
    c.data.store_dir = ""  # token store path (one source only); "" = a cache entry named after midi_dir
    c.data.store_workers = 1 if tiny else 0  # processes tokenizing a new store; 0 = per core
    c.data.valid_fraction = 0.1  # share of pieces (by a hash of their path) held out
    c.data.split = "file"  # held out by file path; "folder": by folder (a piece's performances and
    # score); "top": by first folder (a performer: Groove's drummerN/)
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

    c.resume = ml_collections.ConfigDict()  # resuming refuses changes that alter the trajectory
    c.resume.allow_changes = ""  # keys or blocks a resume may change on purpose, e.g. "seed,model"
    return c


def add_sample(c: ml_collections.ConfigDict, num_tokens: int) -> ml_collections.ConfigDict:
    """The `sample` block of `--mode=generate` for autoregressive models (lm, perceivers)."""
    c.sample = ml_collections.ConfigDict()
    c.sample.prompt = ""  # MIDI file to continue (tokenized with PerTok); "" = from nothing
    c.sample.prompt_tokens = 0  # use only the first this many prompt tokens; 0 = all
    c.sample.num_tokens = num_tokens  # tokens to generate after the prompt
    c.sample.num_samples = 1  # samples drawn at once (one MIDI file each)
    c.sample.temperature = 1.0  # 0 = greedy
    c.sample.top_k = 0  # keep the k most likely tokens; 0 = all
    c.sample.top_p = 0.95  # nucleus: the fewest tokens reaching this probability; 1 = all
    c.sample.seed = 0  # sampling seed; the same seed and checkpoint give the same sample
    c.sample.grammar = True  # sample only what PerTok's grammar allows, so every token decodes
    return c.sample


def add_heldout(c: ml_collections.ConfigDict, stride: int, buckets: str, max_tokens: int) -> None:
    """The held-out protocol of `--mode=eval` for autoregressive models (`training.heldout`): every
    target of the held-out pieces once, in blocks of `stride`, the same for PerceiverS and the LM."""
    c.eval.heldout_stride = stride  # targets scored per example; 0 = the most the model can (PerceiverS N, LM context)
    c.eval.heldout_buckets = buckets  # edges of the position-in-piece buckets of bits/token, "256,512"
    c.eval.heldout_max_tokens = max_tokens  # held-out pieces scored, in order, up to this many tokens; 0 = all


def new_config(task: str, file_name: str, arg: str | None,
               variants: tuple[str, ...]) -> tuple[ml_collections.ConfigDict, str]:
    """A config with its task, seed and an empty model block, and the variant asked for."""
    variant = check_variant(file_name, arg, variants)
    c = ml_collections.ConfigDict()
    c.task = task  # which model package experiments/tasks.py wires in
    c.seed = 0  # parameters, dropout, latents, example order, augmentation, sampling derive from it
    c.model = ml_collections.ConfigDict()
    return c, variant


def check_variant(name: str, variant: str | None, variants: tuple[str, ...]) -> str:
    """The variant asked for (default: the second of `variants`, `base`), or a clear error."""
    variant = variant or "base"
    if variant not in variants:
        raise ValueError(f"unknown variant {variant!r} of {name}; choose one of {variants}")
    return variant
