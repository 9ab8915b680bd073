"""Token stores check sizes and checksums on open; damaged stores are rebuilt or reported in one
line; killed builds leave no clutter; `--beats auto` aligns annotated files and says so."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from pertok import PerTok
from pertok.cli import main
from pertok.store import StoreCorruptError, StoreError, TokenStore, build_store, remove_stale_partials
from tests.pertok.scores import make_score
from tests.pertok.test_align import BARS, beat_seconds, perform, written_piece


@pytest.fixture()
def midi_dir(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    for index in range(2):
        notes = [(i * 240 + index, 200, 60 + i % 12, 50 + i) for i in range(30)]
        make_score(480, [(0, False, notes)]).dump_midi(str(folder / f"p{index}.mid"))
    return folder


def damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip one byte, same size
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, how, reason", [
    ("tokens.u16", "truncate", "tokens.u16 is"), ("tokens.u16", "flip", "tokens.u16 does not match its SHA-256"),
    ("offsets.npy", "flip", "offsets.npy does not match"), ("meta.json", "truncate", "meta.json unreadable")])
def test_damaged_store_is_one_line_on_open_and_rebuilt_by_build(midi_dir, tmp_path, name, how, reason):
    out = tmp_path / "store"
    good = build_store(midi_dir, out, workers=1, progress=False)
    pieces = [good.piece(i).copy() for i in range(len(good))]
    damage(out / name, how)
    with pytest.raises(StoreCorruptError) as error:
        TokenStore(out)
    message = str(error.value)
    assert reason in message and "\n" not in message and str(out) in message
    if name != "meta.json":  # the source folder is recorded, so the message says how to rebuild
        assert f"--midi_dir {midi_dir.resolve()}" in message
    rebuilt = build_store(midi_dir, out, workers=1, progress=False)
    assert [p.tolist() for p in (rebuilt.piece(i) for i in range(len(rebuilt)))] == [p.tolist() for p in pieces]
    TokenStore(out)  # intact again


def test_cli_build_rebuilds_and_training_store_opens_after_truncation(midi_dir, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["build", "--midi_dir", str(midi_dir), "--out", str(out), "--workers", "1"]) == 0
    damage(out / "tokens.u16", "truncate")
    assert main(["build", "--midi_dir", str(midi_dir), "--out", str(out), "--workers", "1"]) == 0
    assert "rebuilding" in capsys.readouterr().err
    assert len(TokenStore(out)) == 2


def test_open_store_of_a_run_rebuilds_a_damaged_store(midi_dir, tmp_path):
    import ml_collections

    from training.corpus import open_store

    data = ml_collections.ConfigDict(dict(midi_dir=str(midi_dir), builtin_pieces=0, cache_dir=str(tmp_path / "cache"),
                                          store_dir="", store_workers=1))
    store = open_store(data)
    assert store.beats == "auto"  # the default when a config has no data.beats
    damage(store.path / "tokens.u16", "truncate")
    assert len(open_store(data)) == 2


def test_stale_partial_folders_of_dead_builds_are_removed(midi_dir, tmp_path):
    out = tmp_path / "store"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".store.partial-{dead.pid}"
    (stale / "x").mkdir(parents=True)
    alive = tmp_path / f".store.partial-{os.getppid()}"  # a live process: its build may be running
    alive.mkdir()
    build_store(midi_dir, out, workers=1, progress=False)
    assert not stale.exists() and alive.exists()
    assert remove_stale_partials(out) == []


def annotated_folder(root, with_bad: bool = True):
    """A folder of two synthetic performances with annotations, one without, one bad."""
    root.mkdir()
    written, beat_ticks, downbeats, meters, _ = written_piece(BARS[:6], 1)
    seconds = beat_seconds(len(beat_ticks))
    performance = perform(written, beat_ticks, seconds)
    lines = []
    for index, (time, down) in enumerate(zip(seconds, downbeats)):
        label = "db" if down else "b"
        if index in meters:
            label += f",{meters[index][0]}/{meters[index][1]}"
        lines.append(f"{time:.6f}\t{time:.6f}\t{label}\n")
    for name in ("a", "b"):
        performance.dump_midi(str(root / f"{name}.mid"))
        (root / f"{name}_annotations.txt").write_text("".join(lines))
    performance.dump_midi(str(root / "plain.mid"))
    if with_bad:
        performance.dump_midi(str(root / "bad.mid"))
        (root / "bad_annotations.txt").write_text("1.0\t1.0\tdb,4/x\n2.0\t2.0\tb\n")
    return root


def test_build_beats_auto_aligns_annotated_files_and_records_it(tmp_path):
    folder = annotated_folder(tmp_path / "perf")
    aligned = build_store(folder, tmp_path / "aligned", workers=1, progress=False, beats="auto")
    assert aligned.files == ["a.mid", "b.mid", "plain.mid"] and aligned.aligned == [True, True, False]
    assert [s["file"] for s in aligned.meta["skipped"]] == ["bad.mid"]
    assert "bad_annotations.txt:1: time signature '4/x' does not parse" in aligned.meta["skipped"][0]["reason"]
    plain = build_store(folder, tmp_path / "plain", workers=1, progress=False, beats="none")
    assert plain.aligned == [False] * 4 and plain.meta["store_hash"] != aligned.meta["store_hash"]
    tokenizer = PerTok()
    # The aligned piece is the written grid: its microtiming is all 0 (bin 12); unaligned is not.
    for store, exact in ((aligned, True), (plain, False)):
        _, microtiming, _ = tokenizer.split(store.piece(store.files.index("a.mid")))
        centre = tokenizer.type_ranges["MicroTiming"][0] + tokenizer.config.microtiming_bins // 2
        assert bool(np.all(microtiming == centre)) == exact
    with pytest.raises(StoreError, match="built with beats=auto, wanted beats=none"):
        build_store(folder, tmp_path / "aligned", workers=1, progress=False, beats="none")
    (folder / "a_annotations.txt").write_text((folder / "b_annotations.txt").read_text() + "\n")
    rebuilt = build_store(folder, tmp_path / "aligned", workers=1, progress=False, beats="auto")
    changed = [row for row in rebuilt.meta["sources"] if row not in aligned.meta["sources"]]
    assert [row[0] for row in changed] == ["a_annotations.txt"]  # an edited annotation rebuilds
