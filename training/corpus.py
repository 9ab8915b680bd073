"""The token store a run trains on: opened memory-mapped, built from MIDI on first use."""
from __future__ import annotations

import hashlib
import os
import shutil

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from training.data import SPLIT_MODES, Augmentation
from training.validate import ConfigError

_BUILTIN_SEED = 0  # the built-in corpus is always the same music
BUILTIN = "builtin"  # the word of data.midi_dir that names the built-in corpus


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


def source_names(data) -> list[str]:
    """The sources `data.midi_dir` names, in order: MIDI folders, or BUILTIN for the built-in corpus.

    Several sources are comma-separated; each name is stripped of spaces, and the exact word
    `builtin` is the built-in corpus (a folder of that name is given as ./builtin). One name
    without a comma is used as written, so a single folder reads exactly as it always did.
    """
    text = data.midi_dir
    if text.strip() in ("", BUILTIN):
        return [BUILTIN]
    if "," not in text:
        return [text]
    return [name.strip() for name in text.split(",") if name.strip()] or [BUILTIN]


def source_folder(data, name: str) -> str:
    """The MIDI folder of one source name (the built-in corpus's lives under `data.cache_dir`)."""
    return os.path.join(data.cache_dir, f"builtin-{data.builtin_pieces}") if name == BUILTIN else name


def resolve_midi_dirs(data) -> list[str]:
    """The MIDI folders `data.midi_dir` reads, one per source; ConfigError for a repeated one."""
    names = source_names(data)
    folders = [source_folder(data, name) for name in names]
    seen: dict[str, str] = {}
    for name, folder in zip(names, folders):
        real = os.path.realpath(folder)
        if real in seen:
            raise ConfigError(f"data.midi_dir={data.midi_dir!r} names the source {folder!r} twice "
                              f"(as {seen[real]!r} and {name!r}): give each folder once")
        seen[real] = name
    return folders


def resolve_midi_dir(data) -> str:
    """The one MIDI folder of a single-source data config (see `resolve_midi_dirs`)."""
    folders = resolve_midi_dirs(data)
    if len(folders) > 1:
        raise ConfigError(f"data.midi_dir={data.midi_dir!r} names {len(folders)} sources where "
                          f"one folder is needed")
    return folders[0]


def split_mode(data) -> str:
    """`data.split`: "file" (the default, also for configs without the key), "folder" or "top"."""
    mode = data.get("split", "file")
    if mode not in SPLIT_MODES:
        raise ConfigError(f"data.split={mode!r}: expected one of {', '.join(SPLIT_MODES)}")
    return mode


def _check_sources(data, names: list[str], folders: list[str]) -> None:
    """One clear error for missing folders or a `data.store_dir` that several sources cannot share."""
    if len(folders) == 1:
        if names[0] != BUILTIN and not os.path.isdir(folders[0]):
            raise FileNotFoundError(f"data.midi_dir={folders[0]!r} is not a directory")
        return
    missing = [folder for name, folder in zip(names, folders)
               if name != BUILTIN and not os.path.isdir(folder)]
    if missing:
        raise FileNotFoundError(f"data.midi_dir={data.midi_dir!r}: {', '.join(map(repr, missing))} "
                                f"{'is not a directory' if len(missing) == 1 else 'are not directories'}")
    if data.store_dir:
        raise ConfigError(f"data.store_dir={data.store_dir!r} names one token store, but "
                          f"data.midi_dir names {len(folders)} sources: leave data.store_dir empty "
                          f"(each source's store is kept under data.cache_dir)")


def open_store(data):
    """The token store of the `data` config, each source's built by process 0 when missing.

    One source: its `pertok.store.TokenStore`, exactly as it always was. Several: a
    `SourceStores` concatenating their stores in the order `data.midi_dir` names them.
    Process 0 also rebuilds a store that is stale or damaged (sizes and checksums are
    checked when it is opened), so a run never trains on a truncated token file.

    Args:
      data: config with midi_dir ("" = built-in corpus; comma-separated sources, `builtin` =
        the built-in corpus), builtin_pieces, cache_dir, store_dir, store_workers, and
        optionally beats ("auto", the default, or "none") and split ("file", "folder" or "top").
    """
    from pertok.store import TokenStore, build_store

    chief = jax.process_index() == 0
    split_mode(data)  # a bad data.split is refused before any store is built
    names = source_names(data)
    folders = resolve_midi_dirs(data)
    _check_sources(data, names, folders)
    paths = [store_path(data, folder) for folder in folders]
    if chief:
        for name, folder, path in zip(names, folders, paths):
            if name == BUILTIN:
                builtin_corpus(data.cache_dir, data.builtin_pieces)
            build_store(folder, path, workers=data.store_workers or None,  # no-op when current
                        beats=beats_mode(data))
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("token store ready")
    stores = [TokenStore(path) for path in paths]
    return stores[0] if len(stores) == 1 else SourceStores(stores, folders)


def piece_source(store, index: int, data) -> str:
    """The MIDI folder piece `index` of `store` (as `open_store(data)` made it) was read from."""
    if hasattr(store, "source_of"):
        return store.source_of(index)
    return resolve_midi_dir(data)


class SourceStores:
    """Several token stores read as one, in order: the TokenStore interface training uses.

    `files` are each store's paths relative to its own folder, unprefixed, so a piece's side
    of the split does not depend on which source holds it; `source_of(i)` names its folder.
    """

    def __init__(self, stores: list, sources: list[str]):
        """Args: stores: opened `pertok.store.TokenStore`s; sources: the MIDI folder of each."""
        from pertok.store import StoreError

        hashes = [store.meta.get("config_hash") for store in stores]
        if len(set(hashes)) > 1:
            listed = ", ".join(f"{source} (config {h})" for source, h in zip(sources, hashes))
            raise StoreError(f"the sources of data.midi_dir were tokenized with different PerTok "
                             f"configs: {listed}; rebuild their stores with one config")
        self.stores, self.sources = list(stores), [str(source) for source in sources]
        self.tokenizer = stores[0].tokenizer
        self.files: list[str] = [f for store in stores for f in store.files]
        self.offsets = np.concatenate([[0], np.cumsum(np.concatenate(
            [store.lengths() for store in stores]))]).astype(np.int64)
        self._first = np.cumsum([0] + [len(store) for store in stores])  # first piece of each
        self.tokens = None  # not concatenated: content_hash reads the recorded checksums
        self.meta = self._meta()

    def _meta(self) -> dict:
        """What a store's meta.json says, for all sources (checksum: of the stores' checksums)."""
        metas = [store.meta for store in self.stores]
        recorded = [(m.get("checksums") or {}).get("tokens.u16") for m in metas]
        meta = {"config_hash": metas[0].get("config_hash"), "beats": self.beats,
                "files": self.files, "aligned": self.aligned, "source_dirs": self.sources,
                "skipped": [dict(s, source=source) for m, source in zip(metas, self.sources)
                            for s in m.get("skipped", [])],
                "counts": {key: sum(m["counts"][key] for m in metas)
                           for key in ("pieces", "tokens", "notes")}}
        if all(recorded):
            digest = hashlib.sha256("\n".join(r["sha256"] for r in recorded).encode()).hexdigest()
            meta["checksums"] = {"tokens.u16": {"sha256": digest}}
        return meta

    @property
    def beats(self) -> str:
        """The beat mode every source was tokenized with ("none" or "auto")."""
        return self.stores[0].beats

    @property
    def aligned(self) -> list[bool]:
        """Per piece: whether it was aligned to its beat annotations."""
        return [a for store in self.stores for a in store.aligned]

    def __len__(self) -> int:
        return len(self.files)

    def _locate(self, index: int) -> tuple[int, int]:
        """(store, index within it) of a piece."""
        if not 0 <= index < len(self):
            raise IndexError(f"piece {index} of {len(self)}")
        store = int(np.searchsorted(self._first, index, side="right")) - 1
        return store, index - int(self._first[store])

    def piece(self, index: int) -> np.ndarray:
        """Token ids of one piece (a read-only view into its store)."""
        store, local = self._locate(index)
        return self.stores[store].piece(local)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def source_of(self, index: int) -> str:
        """The MIDI folder piece `index` was read from (its `files` entry is relative to it)."""
        return self.sources[self._locate(index)[0]]

    def summary(self) -> str:
        from pertok.store import summary_text

        return summary_text([f"sources      {len(self.stores)}"] + [
            f"  {source}: {len(store)} pieces, store {store.path}"
            for source, store in zip(self.sources, self.stores)], self)


def augmentation(tokenizer, data) -> Augmentation | None:
    """Pitch transposition (Pitch ids only, drums untouched) and velocity shifts, if enabled."""
    if not (data.pitch_shift or data.velocity_shift):
        return None
    return Augmentation(pitch_ids=tokenizer.type_ranges["Pitch"],
                        velocity_ids=tokenizer.type_ranges["Velocity"],
                        max_pitch_shift=data.pitch_shift, max_velocity_shift=data.velocity_shift)
