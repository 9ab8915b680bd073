"""The token store a run trains on: opened memory-mapped, built from MIDI on first use."""
from __future__ import annotations

import hashlib
import os
import shutil

import jax
from absl import logging
from jax.experimental import multihost_utils

from training.data import Augmentation

_BUILTIN_SEED = 0  # the built-in corpus is always the same music


def builtin_corpus(cache_dir: str, num_pieces: int) -> str:
    """The directory of the built-in synthetic corpus, written once (atomically)."""
    from pertok.synthetic import write_corpus  # pertok is data, not a model: fine to import

    path = os.path.join(cache_dir, f"builtin-{num_pieces}")
    if not os.path.isdir(path):
        partial = f"{path}.partial-{os.getpid()}"
        logging.info("writing the built-in corpus (%d pieces) to %s", num_pieces, path)
        write_corpus(partial, num_pieces, seed=_BUILTIN_SEED)
        try:
            os.rename(partial, path)
        except OSError:  # another process won the race
            shutil.rmtree(partial, ignore_errors=True)
    return path


def beats_mode(data) -> str:
    """`data.beats`: "auto" aligns pieces that have beat annotations, "none" does not."""
    return data.get("beats", "auto")


def store_path(data, midi_dir: str) -> str:
    """`data.store_dir`, or a cache entry named after the MIDI directory and the beat mode
    (aligned and unaligned stores of one folder live side by side)."""
    if data.store_dir:
        return data.store_dir
    key = os.path.abspath(midi_dir) + ("" if beats_mode(data) == "none" else f"|beats={beats_mode(data)}")
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    return os.path.join(data.cache_dir, "stores", f"{os.path.basename(midi_dir.rstrip('/'))}-{tag}")


def resolve_midi_dir(data) -> str:
    """The MIDI folder a data config reads: `data.midi_dir`, or the built-in corpus's."""
    return data.midi_dir or os.path.join(data.cache_dir, f"builtin-{data.builtin_pieces}")


def open_store(data):
    """The `pertok.store.TokenStore` of the `data` config, built by process 0 when missing.

    Process 0 also rebuilds a store that is stale or damaged (sizes and checksums are
    checked when it is opened), so a run never trains on a truncated token file.

    Args:
      data: config with midi_dir ("" = built-in corpus), builtin_pieces, cache_dir, store_dir,
        store_workers, and optionally beats ("auto", the default, or "none").
    """
    from pertok.store import TokenStore, build_store

    chief = jax.process_index() == 0
    midi_dir = resolve_midi_dir(data)
    if not data.midi_dir and chief:
        builtin_corpus(data.cache_dir, data.builtin_pieces)
    elif data.midi_dir and not os.path.isdir(midi_dir):
        raise FileNotFoundError(f"data.midi_dir={midi_dir!r} is not a directory")
    path = store_path(data, midi_dir)
    if chief:
        build_store(midi_dir, path, workers=data.store_workers or None,  # no-op when current
                    beats=beats_mode(data))
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("token store ready")
    return TokenStore(path)


def augmentation(tokenizer, data) -> Augmentation | None:
    """Pitch transposition (Pitch ids only, drums untouched) and velocity shifts, if enabled."""
    if not (data.pitch_shift or data.velocity_shift):
        return None
    return Augmentation(pitch_ids=tokenizer.type_ranges["Pitch"],
                        velocity_ids=tokenizer.type_ranges["Velocity"],
                        max_pitch_shift=data.pitch_shift, max_velocity_shift=data.velocity_shift)
