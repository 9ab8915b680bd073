"""Building a token store: every MIDI file of a folder tokenized in parallel processes.

`build_store` is a no-op when the store is current (same files, config and beat mode), rebuilds a
damaged one, and refuses one of another config; files that fail are skipped with their reason.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from pertok.align import align_file, annotation_path
from pertok.config import PerTokConfig
from pertok.errors import PerTokError
from pertok.store.token_store import (STORE_FORMAT, StoreCorruptError, StoreError, TokenStore, check_beats, remove_stale_partials, write_store)
from pertok.tokenizer import PerTok

MIDI_SUFFIXES = (".mid", ".midi")


def find_midi_files(midi_dir: str | os.PathLike) -> list[Path]:
    """MIDI files under a folder, recursively (.mid/.midi in any case), sorted."""
    root = Path(midi_dir)
    if not root.is_dir():
        raise StoreError(f"{root}: no such folder of MIDI files")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def fingerprint(root: Path, files: Sequence[Path], beats: str = "none") -> list[list]:
    """(relative path, size, mtime) of every source, annotation files included when aligning."""
    if beats == "auto":
        files = sorted(set(files) | {annotation_path(f) for f in files if annotation_path(f).is_file()})
    return [[str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


_worker: dict = {}


def _init_worker(config: dict, beats: str = "none") -> None:
    _worker["tokenizer"] = PerTok(PerTokConfig.from_dict(config))
    _worker["beats"] = beats


def _source(path: str, tokenizer: PerTok):
    """What to encode for a file: its path, or its score aligned to `NAME_annotations.txt`
    when aligning and one lies beside it; and whether it was aligned."""
    annotations = annotation_path(path)
    if _worker["beats"] != "auto" or not annotations.is_file():
        return path, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # merged glitch beats: expected in a batch
        score, _ = align_file(path, annotations, tokenizer.config)
    return score, True


def _reason(error: Exception) -> str:
    if isinstance(error, PerTokError):
        return f"{type(error).__name__}: {error}"
    return f"unexpected {type(error).__name__}: {error}"


def _encode_chunk(paths: list[str]) -> list[tuple[str, np.ndarray | None, str | None, bool]]:
    """Encode files in one `encode_batch` pass; a file that fails is skipped with its reason."""
    tokenizer, sources, aligned, reasons = _worker["tokenizer"], {}, {}, {}
    for path in paths:
        try:
            sources[path], aligned[path] = _source(path, tokenizer)
        except Exception as error:  # a crash on one file must not stop the batch
            reasons[path] = _reason(error)
    # errors="collect": a bad file's slot holds its exception, the others are encoded.
    encoded = dict(zip(sources, tokenizer.encode_batch(list(sources.values()), errors="collect")))
    results = []
    for path in paths:
        ids = encoded.get(path)
        if isinstance(ids, Exception):
            reasons[path] = _reason(ids)
        results.append((path, None, reasons[path], False) if path in reasons
                       else (path, ids.astype(np.uint16), None, aligned[path]))
    return results


def encode_files(files: Sequence[Path], config: PerTokConfig, workers: int | None = None,
                 progress: bool = True, beats: str = "none") -> list[tuple]:
    """Encode files in parallel processes: (path, ids, None, aligned), or (path, None, reason, False)."""
    check_beats(beats)
    workers = workers or min(os.cpu_count() or 1, 8)
    paths = [str(f) for f in files]
    results = []
    chunk = max(1, min(64, len(paths) // (workers * 4) or 1))
    tasks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]  # one encode_batch each
    start = time.perf_counter()
    if workers == 1:
        _init_worker(config.to_dict(), beats)
        iterator = map(_encode_chunk, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (config.to_dict(), beats))
        iterator = pool.imap(_encode_chunk, tasks)
    try:
        for chunk_results in iterator:
            results.extend(chunk_results)
            done = len(results)
            if progress:
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"\rtokenizing {done}/{len(paths)} files ({rate:.0f} files/s)", end="",
                      file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    if progress and paths:
        print(file=sys.stderr)
    return results


def _current_store(out: Path, config: PerTokConfig, beats: str, sources: list) -> TokenStore | None:
    """The store at `out` if it is intact and current; None when it must be (re)built."""
    if not out.exists():
        return None
    try:
        existing = TokenStore(out)
    except StoreCorruptError as error:
        print(f"pertok: rebuilding {out}: {str(error).split(' (', 1)[1].split(');')[0]}", file=sys.stderr)
        return None
    except StoreError:
        return None  # not a store: written over, as before
    if existing.meta["config_hash"] != config.hash:
        raise StoreError(f"{out} was built with another PerTok config (hash "
                         f"{existing.meta['config_hash']}, wanted {config.hash}); delete it or "
                         f"choose another --out")
    if existing.beats != beats:
        raise StoreError(f"{out} was built with beats={existing.beats}, wanted beats={beats}; "
                         f"delete it or choose another --out")
    if existing.meta.get("format") == STORE_FORMAT and existing.meta.get("sources") == sources:
        return existing
    return None


def build_store(midi_dir: str | os.PathLike, out: str | os.PathLike, config: PerTokConfig | None = None,
                workers: int | None = None, progress: bool = True, beats: str = "none") -> TokenStore:
    """Tokenize every MIDI file under `midi_dir` into a store at `out`.

    A no-op when `out` is already an intact store of the same files, config and beat mode;
    a damaged store is rebuilt; a store made with another config or beat mode is refused
    (delete it or choose another `out`).

    Args:
      beats: "auto" aligns every file that has `NAME_annotations.txt` beside it to its
        beats (`pertok.align`); a file whose annotations are bad is skipped with the reason.
        "none" tokenizes the files as they are.
    """
    check_beats(beats)
    config = config or PerTokConfig()
    root, out = Path(midi_dir), Path(out)
    files = find_midi_files(root)
    remove_stale_partials(out)
    sources = fingerprint(root, files, beats)
    existing = _current_store(out, config, beats, sources)
    if existing is not None:
        return existing
    results = encode_files(files, config, workers, progress, beats)
    kept = [(p, ids, aligned) for p, ids, error, aligned in results if ids is not None]
    skipped = [{"file": str(Path(p).relative_to(root)), "reason": error}
               for p, ids, error, _ in results if ids is None]
    return write_store(out, [ids for _, ids, _ in kept], [str(Path(p).relative_to(root)) for p, _, _ in kept],
                       PerTok(config), skipped, sources, beats, [a for _, _, a in kept],
                       str(root.resolve()))
