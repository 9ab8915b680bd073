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
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from pertok.annotations import annotation_path
from pertok.config import PerTokConfig
from pertok.errors import PerTokError
from pertok.tokenizer import PerTok
from pertok.vocab import TokenType

MIDI_SUFFIXES = (".mid", ".midi")
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


def _check_beats(beats: str) -> None:
    if beats not in BEAT_MODES:
        raise StoreError(f"beats={beats!r}: expected one of {', '.join(BEAT_MODES)}")


def _file_record(path: Path) -> dict:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def find_midi_files(midi_dir: str | os.PathLike) -> list[Path]:
    """MIDI files under a folder, recursively (.mid/.midi in any case), sorted."""
    root = Path(midi_dir)
    if not root.is_dir():
        raise StoreError(f"{root}: no such folder of MIDI files")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def _fingerprint(root: Path, files: Sequence[Path], beats: str = "none") -> list[list]:
    """(relative path, size, mtime) of every source, annotation files included when aligning."""
    if beats == "auto":
        files = sorted(set(files) | {annotation_path(f) for f in files if annotation_path(f).is_file()})
    return [[str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


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
            if verify and _file_record(path)["sha256"] != record["sha256"]:
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
    _check_beats(beats)
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
        "checksums": {name: _file_record(temporary / name) for name in CHECKED_FILES},
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
    from pertok.align import align_file  # only builds that align pay for the import

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
    _check_beats(beats)
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
    _check_beats(beats)
    config = config or PerTokConfig()
    root, out = Path(midi_dir), Path(out)
    files = find_midi_files(root)
    remove_stale_partials(out)
    sources = _fingerprint(root, files, beats)
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
