"""Where a command writes what it makes of each input: names that cannot escape their folder or
collide, and a record so that a rerun replaces only what an earlier run of the same command wrote.

ROOT/.outputs.json maps each output name to the input it was made from and the files written
for it. A name is the input's path relative to the input folder (its stem for a single file),
with anything but letters, digits and `._+-` made `_`, never hidden, never `.` or `..`, at most
`MAX_NAME` characters. A name that another input already holds (in this run, in the record, or
a file the record does not know) gets a short hash of the input's path; a rerun on the same input
reuses its name and removes only the files recorded for it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from pertok.store import find_midi_files
from training.validate import ConfigError

RECORD = ".outputs.json"
MAX_NAME = 100  # characters; file systems allow 255 bytes per name, and suffixes follow


class OutputError(ValueError):
    """A command's output name is taken by files it did not write."""


def safe_name(relative: str) -> str:
    """A file name made of an input's relative path (no suffix): 'a/b c' -> 'a_b_c'."""
    parts = [part for part in re.split(r"[\\/]+", relative) if part not in ("", ".", "..")]
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", "_".join(parts)).lstrip(".")
    return name or "input"


def digest(source: str | Path) -> str:
    return hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:8]


def _with_digest(name: str, source: str | Path) -> str:
    return f"{name[:MAX_NAME - 9]}-{digest(source)}"


def input_names(inputs: list[Path], folder: str | None) -> list[str]:
    """One name per input, unique among them: relative to `folder` (None: a single file's stem).
    Names that sanitizing made equal, or that were too long, carry a hash of the input's path."""
    names = [safe_name(str(path.relative_to(folder).with_suffix("")) if folder else path.stem)
             for path in inputs]
    counts = {name: names.count(name) for name in names}
    return [_with_digest(name, path) if counts[name] > 1 or len(name) > MAX_NAME else name
            for name, path in zip(names, inputs)]


def named_inputs(source: str, key: str) -> tuple[list[Path], list[str], str | None]:
    """The MIDI files a command reads from `source` (a file, or every MIDI file of a folder), their
    output names and the folder (None for a single file). `key` names the config entry in errors."""
    if os.path.isdir(source):
        inputs = find_midi_files(source)
        if not inputs:
            raise ConfigError(f"{key}={source!r} holds no MIDI files")
        return inputs, input_names(inputs, source), source
    if os.path.isfile(source):
        return [Path(source)], input_names([Path(source)], None), None
    raise FileNotFoundError(f"{key}={source!r}: no such MIDI file or folder")


class Outputs:
    """The record of one command's outputs in `root` (e.g. WORKDIR/variations).

    Args:
      root: the folder the command writes into; made if absent.
      command: the command's name, kept in the record ("vary", "perform").
    """

    def __init__(self, root: Path, command: str):
        self.root, self.command = Path(root), command
        self.root.mkdir(parents=True, exist_ok=True)
        self._path = self.root / RECORD
        self.entries = self._read()

    def _read(self) -> dict:
        try:
            record = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise OutputError(f"{self._path} is not a record this code wrote ({error}); move it away") from None
        if not isinstance(record, dict) or not isinstance(record.get("outputs"), dict):
            raise OutputError(f"{self._path} is not a record this code wrote; move it away")
        return record["outputs"]

    def _write(self) -> None:
        partial = self._path.with_name(f"{RECORD}.tmp-{os.getpid()}")
        partial.write_text(json.dumps({"command": self.command, "outputs": self.entries}, indent=1))
        os.replace(partial, self._path)

    def claim(self, name: str, source: str | Path, stems: tuple[str, ...] = ("",)) -> str:
        """The name to write `source`'s outputs under: `name`, or `name` with a hash when another
        input holds it. The files an earlier run recorded for this source are removed first.

        Args:
          stems: the paths each output of a name starts with, relative to the name ("" = the
            folder ROOT/name itself; (".mid", ".png") = ROOT/name.mid and ROOT/name.png), to
            tell whether a name is taken by files the record does not know.
        """
        source = str(Path(source).resolve())
        for candidate in (name, _with_digest(name, source)):
            entry = self.entries.get(candidate)
            if entry is None and not any((self.root / f"{candidate}{stem}").exists() for stem in stems):
                self.entries[candidate] = {"source": source, "files": []}
                self._write()
                return candidate
            if entry is not None and entry["source"] == source:
                self._remove(entry["files"])
                entry["files"] = []
                self._write()
                return candidate
        raise OutputError(f"{self.root / name} and {self.root / candidate} hold outputs that are not "
                          f"{source}'s; move them away")

    def _remove(self, files: list[str]) -> None:
        for relative in files:
            path = (self.root / relative).resolve()
            if self.root.resolve() not in path.parents:
                continue  # a record edited by hand: never reach outside ROOT
            path.unlink(missing_ok=True)
            if path.parent != self.root.resolve():
                try:
                    path.parent.rmdir()  # its folder, once empty (a user's file there keeps it)
                except OSError:
                    pass

    def record(self, name: str, files: list[str | Path]) -> None:
        """Say which files (paths under ROOT) were written for `name`."""
        entry = self.entries[name]
        root = self.root.resolve()
        entry["files"] += [str(Path(f).resolve().relative_to(root)) for f in files]
        self._write()
