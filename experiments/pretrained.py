"""Shipped inference weights: `pretrained/<name>/` holds what a trained run needs to play, and no more.

    python -m experiments.pretrain export NAME --workdir=RUN [--trained_at=COMMIT] [--seconds=S]
    python -m experiments.pretrain check [NAME ...]

A folder holds `params.msgpack` (the parameters only, no optimizer state, in float16),
`config.json` (the run's config: the model it builds) and `manifest.json`: the recipe command
that trained it, the commit it was trained at, its data (folders and split), training steps,
time and machine as known, the parameter count, the SHA-256 of params.msgpack, where its
measured numbers are, and the licence of the data it learned from. `restore_latest` reads such
a folder wherever a run's workdir is expected (`composer_workdir`, `performer_workdir`, ...).
Loading checks the hash against the manifest and the parameter tree against the model that
config.json builds with this code: a file of other code is one clear error naming both, never a
silently different model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from experiments.config_history import saved_config
from experiments.tasks import build_task
from pertok import PerTok
from training.validate import ConfigError

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "pretrained"
STORED_DTYPE = "float16"  # halves the files; the Cadenza benchmark compares it with float32
DATA_LICENCE = ("ASAP and MAESTRO are CC BY-NC-SA 4.0 (research, non-commercial); GiantMIDI-Piano and "
                "Groove MIDI are CC BY 4.0. Weights learned from them are shared under the most restrictive "
                "licence of their data: see each manifest's data_licence.")
# The README's own recipes, by name: the command a manifest records and `export` expects.
RECIPES = {
    "composer-small": "python -m experiments.main --config=experiments/configs/composer.py:small "
                      "--workdir=runs/composer-small --config.data.midi_dir=../shared/midi/asap/scores,"
                      "../shared/midi/asap/performances,builtin --config.data.split=folder",
    # 6,000 steps (chosen on the selection set), trained with both the selection and the final
    # folders held out (valid_fraction 0.2): the run the final-set numbers measure.
    "performer-small": "python -m experiments.main --config=experiments/configs/performer.py:small "
                       "--workdir=runs/performer-final-6k --config.data.midi_dir=../shared/midi/asap/performances "
                       "--config.data.split=folder --config.data.valid_fraction=0.2 --config.train.steps=6000",
    # Drums played to a click (Groove MIDI); whole drummers held out (data.split=top).
    "performer-groove": "python -m experiments.main --config=experiments/configs/performer.py:small "
                        "--workdir=runs/performer-groove --config.data.midi_dir=../shared/midi/groove "
                        "--config.data.split=top",
    # Its defaults train on real piano (ASAP aligned, maestro10, giantmidi; data.split=folder);
    # the ablation's PerceiverS seed 0 is this run.
    "perceivers-small": "python -m experiments.main --config=experiments/configs/perceivers.py:small "
                        "--workdir=runs/perceivers-small",
}


MEASURED = {  # where each shipped model's numbers are
    "composer-small": "docs/results/cadenza_heldout22.md (float32) and cadenza_heldout22_shipped.md (these files)",
    "performer-small": "docs/results/performer_6k_final18.md (float32, final set), performer_shipped_final18.md "
                       "and cadenza_heldout22_shipped.md (these files)",
    "performer-groove": "docs/results/performer_style_groove.md (on held-out drummers, beside the piano Performer)",
    "perceivers-small": "docs/results/ablation_perceivers_small.md (the PerceiverS row, seed 0 is this run)",
}


def data_licence(midi_dir: str) -> str:
    """The most restrictive licence of the data a run's `data.midi_dir` names."""
    sources = midi_dir.lower()
    if "asap" in sources or "maestro" in sources:
        return "CC BY-NC-SA 4.0 (ASAP, MAESTRO): research and non-commercial use only"
    named = [name for key, name in (("groove", "Groove MIDI"), ("giantmidi", "GiantMIDI-Piano")) if key in sources]
    if named:
        return f"CC BY 4.0 ({', '.join(named)}): credit the dataset"
    return "the project's own generated corpus: no third-party data"


def is_pretrained(path: str | os.PathLike) -> bool:
    return (Path(path) / "manifest.json").is_file() and (Path(path) / "params.msgpack").is_file()


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def abstract_params(task):
    """Shapes and dtypes of the parameters the task's model has, without allocating them."""
    batch = {key: value[:1] for key, value in task.example_batch(1).items()}
    return jax.eval_shape(lambda: task.init(jax.random.key(0), batch))


def load(folder: str | os.PathLike, tokenizer: PerTok, task_name: str):
    """(task, float32 params, config, step) of a pretrained folder, checked (see the module doc)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    saved = json.loads((folder / "config.json").read_text())
    config = saved_config(saved, str(folder), task_name)
    digest = sha256(folder / "params.msgpack")
    if digest != manifest.get("sha256"):
        raise ConfigError(f"{folder}/params.msgpack has SHA-256 {digest[:12]}..., its manifest says "
                          f"{str(manifest.get('sha256'))[:12]}...: damaged or replaced; re-make it with "
                          f"python -m experiments.pretrain export {folder.name} --workdir=RUN")
    task = build_task(config, tokenizer)
    target = jax.tree.map(lambda leaf: np.zeros(leaf.shape, STORED_DTYPE), abstract_params(task))
    try:
        stored = serialization.from_bytes(target, (folder / "params.msgpack").read_bytes())
        _check_shapes(target, stored)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{folder}/params.msgpack does not fit the {task_name} model that {folder}/config.json "
                          f"builds with this code ({str(error)[:300]}); re-make it with "
                          f"python -m experiments.pretrain export {folder.name} --workdir=RUN") from None
    params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), stored)
    return task, params, config, int(manifest.get("step", 0))


def _check_shapes(target, stored) -> None:
    wrong = [f"{jax.tree_util.keystr(path)}: {np.shape(got)} for {np.shape(want)}" for (path, want), got in
             zip(jax.tree_util.tree_leaves_with_path(target), jax.tree.leaves(stored)) if np.shape(got) != np.shape(want)]
    if wrong:
        raise ValueError("shapes differ: " + "; ".join(wrong[:3]))


def write(name: str, params, config, step: int, trained_at: str = "", seconds: float | None = None,
          note: str = "", out_root: Path = PRETRAINED) -> Path:
    """Write pretrained/<name>/ from a run's restored parameters (stored in float16)."""
    from benchmarks.results import commit, machine

    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    stored = jax.tree.map(lambda leaf: np.asarray(leaf, STORED_DTYPE), jax.device_get(params))
    (out / "params.msgpack").write_bytes(serialization.to_bytes(stored))
    (out / "config.json").write_text(json.dumps(json.loads(config.to_json_best_effort()), indent=1, sort_keys=True))
    count = int(sum(np.size(leaf) for leaf in jax.tree.leaves(stored)))
    manifest = {
        "name": name, "task": config.task, "recipe": RECIPES.get(name, ""), "step": step,
        "trained_at_commit": trained_at or "unknown", "exported_at_commit": commit(),
        "training_seconds": seconds, "training_note": note, "exported_on": machine(),
        "data": {"midi_dir": config.data.midi_dir, "split": config.data.get("split", "file"),
                 "valid_fraction": config.data.valid_fraction, "beats": config.data.get("beats", "none")},
        "parameters": count, "dtype": STORED_DTYPE, "sha256": sha256(out / "params.msgpack"),
        "bytes": (out / "params.msgpack").stat().st_size,
        "measured": MEASURED.get(name, ""),
        "data_licence": data_licence(config.data.midi_dir),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
