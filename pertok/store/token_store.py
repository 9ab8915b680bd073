"""Token store: a folder of MIDI tokenized once into one flat memory-mapped uint16 array.

Layout of a store folder:
  tokens.u16      all pieces' ids, concatenated (no BOS/EOS), raw little-endian uint16
  offsets.npy     int64 [num_pieces + 1]; piece i is tokens[offsets[i]:offsets[i + 1]]
  tokenizer.json  the PerTok config and vocabulary the ids belong to
  meta.json       config hash, beat alignment ("none" or "auto") and which pieces were
                  aligned, source folder and files (with size and mtime), skipped files and
                  why, counts, and the size and SHA-256 of every other file. Written last: a
                  folder without it is not a store.
A build writes into a temporary sibling folder and renames it into place, so an
interrupted build never leaves a half store that looks complete; temporary folders of
builds that were killed are removed when the next build starts. Opening a store checks
sizes and checksums, so a damaged store is one clear error (and `build_store` rebuilds it)
instead of a crash deep inside training.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pertok.errors import PerTokError
from pertok.tokenizer import PerTok
from pertok.vocab import TokenType

STORE_FORMAT = 2  # 2: checksums, beat alignment
BEAT_MODES = ("none", "auto")  # auto: align files that have NAME_annotations.txt beside them
CHECKED_FILES = ("tokens.u16", "offsets.npy", "tokenizer.json")


class StoreError(PerTokError):
    """A token store that is missing, incomplete or made with another config."""


class StoreCorruptError(StoreError):
    """A store whose files do not match the sizes and checksums its meta.json recorded."""


def store_hash(config_hash: str, beats: str) -> str:
    """Identity of a store's content: the tokenizer config and the beat alignment mode."""
    return hashlib.sha256(f"{config_hash}/beats={beats}".encode()).hexdigest()[:16]


def check_beats(beats: str) -> None:
    if beats not in BEAT_MODES:
        raise StoreError(f"beats={beats!r}: expected one of {', '.join(BEAT_MODES)}")


def file_record(path: Path) -> dict:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


class TokenStore:
    """A built store, memory-mapped: `tokens`, `offsets`, `files`, `meta`, `tokenizer`."""

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        """Open a store; with `verify`, first check every file's size and SHA-256."""
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise StoreError(f"{self.path}: not a token store (no meta.json; build it with "
                             f"`python -m pertok build --midi_dir DIR --out {self.path}`)")
        try:
            self.meta = json.loads(meta_path.read_text())
            self.files: list[str] = self.meta["files"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise self._damaged(f"meta.json unreadable: {error}") from None
        self._check_files(verify)
        try:
            self.tokenizer = PerTok.load(self.path / "tokenizer.json")
            self.offsets = np.load(self.path / "offsets.npy")
        except (PerTokError, OSError, ValueError) as error:
            raise self._damaged(str(error).splitlines()[0]) from None
        size = int(self.offsets[-1]) if len(self.offsets) else -1
        if size < 0 or len(self.offsets) != len(self.files) + 1 or np.any(np.diff(self.offsets) < 0) \
                or (self.path / "tokens.u16").stat().st_size != 2 * size:
            raise self._damaged("offsets.npy does not match tokens.u16 and the file list")
        self.tokens = (np.memmap(self.path / "tokens.u16", dtype="<u2", mode="r", shape=(size,))
                       if size else np.zeros(0, np.uint16))

    def _damaged(self, reason: str) -> StoreCorruptError:
        meta = getattr(self, "meta", None)
        source = meta.get("source_dir") if isinstance(meta, dict) else None
        return StoreCorruptError(f"{self.path}: damaged token store ({reason}); rebuild it with "
                                 f"`python -m pertok build --midi_dir {source or 'DIR'} --out {self.path}`")

    def _check_files(self, verify: bool) -> None:
        """Sizes always (cheap); SHA-256 when `verify` (format 1 stores recorded neither)."""
        for name, record in (self.meta.get("checksums") or {}).items():
            path = self.path / name
            if not path.is_file():
                raise self._damaged(f"{name} is missing")
            if path.stat().st_size != record["size"]:
                raise self._damaged(f"{name} is {path.stat().st_size} bytes, meta.json says {record['size']}")
            if verify and file_record(path)["sha256"] != record["sha256"]:
                raise self._damaged(f"{name} does not match its SHA-256 in meta.json")

    @property
    def beats(self) -> str:
        """How the pieces were aligned to beats: "none" or "auto" (see `aligned`)."""
        return self.meta.get("beats", "none")

    @property
    def aligned(self) -> list[bool]:
        """Per piece: whether it was aligned to its beat annotations."""
        return self.meta.get("aligned") or [False] * len(self.files)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def piece(self, index: int) -> np.ndarray:
        """Token ids of one piece (a read-only view)."""
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def summary(self) -> str:
        return summary_text([f"store        {self.path}"], self)


def summary_text(head: list[str], store) -> str:
    """`head` lines, then the counts of a store (or of several read as one: anything with
    `meta`, `aligned`, `beats` and `tokenizer` as TokenStore has them)."""
    counts = store.meta["counts"]
    return "\n".join(head + [f"pieces       {counts['pieces']}  (skipped {len(store.meta['skipped'])})",
                             f"aligned      {sum(store.aligned)}  (beats={store.beats})",
                             f"notes        {counts['notes']}",
                             f"tokens       {counts['tokens']}",
                             f"tokens/note  {counts['tokens'] / max(counts['notes'], 1):.2f}",
                             f"vocabulary   {store.tokenizer.vocab_size}"])


def write_store(out: str | os.PathLike, pieces: Sequence[np.ndarray], files: Sequence[str],
                tokenizer: PerTok, skipped: Sequence[dict] = (), sources: list | None = None,
                beats: str = "none", aligned: Sequence[bool] | None = None,
                source_dir: str | None = None) -> TokenStore:
    """Write pieces of ids as a store (atomically: temporary folder, then rename).

    Args:
      beats: the alignment mode the pieces were made with ("none" or "auto").
      aligned: per piece, whether it was aligned to beat annotations.
      source_dir: the MIDI folder, so that a damaged store can be rebuilt from it.
    """
    out = Path(out)
    check_beats(beats)
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
    aligned = [bool(a) for a in aligned] if aligned is not None else [False] * len(pieces)
    meta = {
        "format": STORE_FORMAT, "config": tokenizer.config.to_dict(), "config_hash": tokenizer.config_hash,
        "beats": beats, "store_hash": store_hash(tokenizer.config_hash, beats),
        "source_dir": source_dir, "files": list(files), "aligned": aligned,
        "skipped": list(skipped), "sources": sources,
        "counts": {"pieces": len(pieces), "tokens": int(offsets[-1]), "aligned": sum(aligned),
                   "notes": int(np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH)).sum())},
        "checksums": {name: file_record(temporary / name) for name in CHECKED_FILES},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
    _replace_folder(temporary, out)
    return TokenStore(out, verify=False)  # just written and hashed


def _replace_folder(new: Path, target: Path) -> None:
    """Move `new` to `target`; an old `target` is moved aside first and then removed."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(out: str | os.PathLike) -> list[Path]:
    """Remove temporary folders that killed builds of `out` left (their process is gone)."""
    out = Path(out)
    removed = []
    for folder in sorted(out.parent.glob(f".{out.name}.partial-*")) + sorted(out.parent.glob(f".{out.name}.old-*")):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
