"""Token store: a folder of MIDI tokenized once into one flat memory-mapped uint16 array.

Layout of a store folder:
  tokens.u16      all pieces' ids, concatenated (no BOS/EOS), raw little-endian uint16
  offsets.npy     int64 [num_pieces + 1]; piece i is tokens[offsets[i]:offsets[i + 1]]
  tokenizer.json  the PerTok config and vocabulary the ids belong to
  meta.json       config hash, source files (with size and mtime), skipped files and why,
                  counts. Written last: a folder without it is not a store.
A build writes into a temporary sibling folder and renames it into place, so an
interrupted build never leaves a half store that looks complete.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pertok.config import PerTokConfig
from pertok.errors import PerTokError
from pertok.tokenizer import PerTok
from pertok.vocab import TokenType

MIDI_SUFFIXES = (".mid", ".midi")
STORE_FORMAT = 1


class StoreError(PerTokError):
    """A token store that is missing, incomplete or made with another config."""


def find_midi_files(midi_dir: str | os.PathLike) -> list[Path]:
    """MIDI files under a folder, recursively (.mid/.midi in any case), sorted."""
    root = Path(midi_dir)
    if not root.is_dir():
        raise StoreError(f"{root}: no such folder of MIDI files")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def _fingerprint(root: Path, files: Sequence[Path]) -> list[list]:
    return [[str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


class TokenStore:
    """A built store, memory-mapped: `tokens`, `offsets`, `files`, `meta`, `tokenizer`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise StoreError(f"{self.path}: not a token store (no meta.json; build it with "
                             f"`python -m pertok build --midi_dir DIR --out {self.path}`)")
        self.meta = json.loads(meta_path.read_text())
        self.tokenizer = PerTok.load(self.path / "tokenizer.json")
        self.offsets = np.load(self.path / "offsets.npy")
        size = int(self.offsets[-1])
        self.tokens = (np.memmap(self.path / "tokens.u16", dtype="<u2", mode="r", shape=(size,))
                       if size else np.zeros(0, np.uint16))
        self.files: list[str] = self.meta["files"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def piece(self, index: int) -> np.ndarray:
        """Token ids of one piece (a read-only view)."""
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def summary(self) -> str:
        counts = self.meta["counts"]
        lines = [f"store        {self.path}",
                 f"pieces       {counts['pieces']}  (skipped {len(self.meta['skipped'])})",
                 f"notes        {counts['notes']}",
                 f"tokens       {counts['tokens']}",
                 f"tokens/note  {counts['tokens'] / max(counts['notes'], 1):.2f}",
                 f"vocabulary   {self.tokenizer.vocab_size}"]
        return "\n".join(lines)


def write_store(out: str | os.PathLike, pieces: Sequence[np.ndarray], files: Sequence[str],
                tokenizer: PerTok, skipped: Sequence[dict] = (), sources: list | None = None) -> TokenStore:
    """Write pieces of ids as a store (atomically: temporary folder, then rename)."""
    out = Path(out)
    if tokenizer.vocab_size > np.iinfo(np.uint16).max:
        raise StoreError(f"vocabulary of {tokenizer.vocab_size} does not fit in uint16")
    if len(pieces) != len(files):
        raise StoreError(f"{len(pieces)} pieces but {len(files)} file names")
    temporary = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    lengths = np.array([len(p) for p in pieces], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate([np.asarray(p) for p in pieces]) if len(pieces) else np.zeros(0)
    if flat.size and (flat.min() < 0 or flat.max() >= tokenizer.vocab_size):
        raise StoreError("ids outside the tokenizer's vocabulary")
    flat.astype("<u2").tofile(temporary / "tokens.u16")
    np.save(temporary / "offsets.npy", offsets)
    tokenizer.save(temporary / "tokenizer.json")
    types = tokenizer.vocab.type_of[flat.astype(np.int64)] if flat.size else np.zeros(0)
    meta = {
        "format": STORE_FORMAT, "config": tokenizer.config.to_dict(), "config_hash": tokenizer.config_hash,
        "files": list(files), "skipped": list(skipped), "sources": sources,
        "counts": {"pieces": len(pieces), "tokens": int(offsets[-1]),
                   "notes": int(np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH)).sum())},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
    _replace_folder(temporary, out)
    return TokenStore(out)


def _replace_folder(new: Path, target: Path) -> None:
    """Move `new` to `target`; an old `target` is moved aside first and then removed."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


_worker_tokenizer: PerTok | None = None


def _init_worker(config: dict) -> None:
    global _worker_tokenizer
    _worker_tokenizer = PerTok(PerTokConfig.from_dict(config))


def _encode_one(path: str) -> tuple[str, np.ndarray | None, str | None]:
    try:
        return path, _worker_tokenizer.encode(path).astype(np.uint16), None
    except PerTokError as error:
        return path, None, f"{type(error).__name__}: {error}"
    except Exception as error:  # a crash on one file must not stop the batch
        return path, None, f"unexpected {type(error).__name__}: {error}"


def encode_files(files: Sequence[Path], config: PerTokConfig, workers: int | None = None,
                 progress: bool = True) -> list[tuple[str, np.ndarray | None, str | None]]:
    """Encode files in parallel processes; failures come back as (path, None, reason)."""
    workers = workers or min(os.cpu_count() or 1, 8)
    paths = [str(f) for f in files]
    results = []
    chunk = max(1, min(64, len(paths) // (workers * 4) or 1))
    start = time.perf_counter()
    if workers == 1:
        _init_worker(config.to_dict())
        iterator = map(_encode_one, paths)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (config.to_dict(),))
        iterator = pool.imap(_encode_one, paths, chunksize=chunk)
    try:
        for done, result in enumerate(iterator, 1):
            results.append(result)
            if progress and (done % 50 == 0 or done == len(paths)):
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"\rtokenizing {done}/{len(paths)} files ({rate:.0f} files/s)", end="",
                      file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    if progress and paths:
        print(file=sys.stderr)
    return results


def build_store(midi_dir: str | os.PathLike, out: str | os.PathLike, config: PerTokConfig | None = None,
                workers: int | None = None, progress: bool = True) -> TokenStore:
    """Tokenize every MIDI file under `midi_dir` into a store at `out`.

    A no-op when `out` is already a store of the same files and config; a store made with
    another config is refused (delete it or choose another `out`).
    """
    config = config or PerTokConfig()
    root, out = Path(midi_dir), Path(out)
    files = find_midi_files(root)
    sources = _fingerprint(root, files)
    if (out / "meta.json").is_file():
        existing = TokenStore(out)
        if existing.meta["config_hash"] != config.hash:
            raise StoreError(f"{out} was built with another PerTok config (hash "
                             f"{existing.meta['config_hash']}, wanted {config.hash}); delete it or "
                             f"choose another --out")
        if existing.meta.get("sources") == sources:
            return existing
    results = encode_files(files, config, workers, progress)
    kept = [(p, ids) for p, ids, error in results if ids is not None]
    skipped = [{"file": str(Path(p).relative_to(root)), "reason": error}
               for p, ids, error in results if ids is None]
    return write_store(out, [ids for _, ids in kept], [str(Path(p).relative_to(root)) for p, _ in kept],
                       PerTok(config), skipped, sources)
