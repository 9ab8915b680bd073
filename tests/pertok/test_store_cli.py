"""Token store builds (parallel, atomic, current, refusing other configs) and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pertok import PerTok, PerTokConfig
from pertok.cli import main
from pertok.store import StoreError, TokenStore, build_store, write_store
from tests.pertok.scores import make_score


@pytest.fixture()
def midi_dir(tmp_path):
    folder = tmp_path / "midi"
    (folder / "sub").mkdir(parents=True)
    for index in range(3):
        notes = [(i * 240 + index, 200, 60 + i % 12, 50 + i) for i in range(20 + index)]
        make_score(480, [(0, False, notes)]).dump_midi(str(folder / ("sub" if index else "") / f"p{index}.MID"))
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    (folder / "notes.txt").write_text("not midi")
    return folder


def test_build_tokenizes_recursively_and_records_skipped(midi_dir, tmp_path):
    store = build_store(midi_dir, tmp_path / "store", workers=2, progress=False)
    assert len(store) == 3 and sorted(store.files) == ["p0.MID", "sub/p1.MID", "sub/p2.MID"]
    assert [item["file"] for item in store.meta["skipped"]] == ["broken.mid"]
    assert "MidiParseError" in store.meta["skipped"][0]["reason"]
    tokenizer = PerTok()
    for index, name in enumerate(store.files):
        np.testing.assert_array_equal(store.piece(index), tokenizer.encode(midi_dir / name))
    assert store.meta["counts"]["notes"] == 20 + 21 + 22


def test_rebuild_is_a_noop_and_other_config_is_refused(midi_dir, tmp_path, monkeypatch):
    import pertok.store.build as store_module

    out = tmp_path / "store"
    build_store(midi_dir, out, workers=1, progress=False)
    written = (out / "tokens.u16").stat().st_mtime_ns
    real_encode_files = store_module.encode_files

    def no_encoding(*args, **kwargs):
        raise AssertionError("a current store was tokenized again")

    monkeypatch.setattr(store_module, "encode_files", no_encoding)
    build_store(midi_dir, out, workers=1, progress=False)
    assert (out / "tokens.u16").stat().st_mtime_ns == written
    monkeypatch.setattr(store_module, "encode_files", real_encode_files)
    with pytest.raises(StoreError, match="another PerTok config"):
        build_store(midi_dir, out, PerTokConfig(velocity_bins=16), workers=1, progress=False)
    make_score(480, [(0, False, [(0, 100, 70, 70)])]).dump_midi(str(midi_dir / "new.mid"))
    assert len(build_store(midi_dir, out, workers=1, progress=False)) == 4  # stale: rebuilt


def test_interrupted_build_leaves_no_store(tmp_path, monkeypatch):
    import pertok.store.build as store_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        write_store(tmp_path / "store", [np.array([4, 5])], ["a.mid"], PerTok())
    with pytest.raises(StoreError, match="not a token store"):
        TokenStore(tmp_path / "store")


def test_cli_encode_decode_roundtrip_stats(midi_dir, tmp_path, capsys):
    source = midi_dir / "p0.MID"
    assert main(["encode", str(source), "-o", str(tmp_path / "p0.json")]) == 0
    assert len(json.loads((tmp_path / "p0.json").read_text())["ids"]) == len(PerTok().encode(source))
    assert main(["decode", str(tmp_path / "p0.json"), "-o", str(tmp_path / "back.mid")]) == 0
    assert main(["roundtrip", str(source), "-o", str(tmp_path / "rt.mid")]) == 0
    assert main(["stats", str(midi_dir), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "files        4 (1 skipped)" in out and "tokens/note" in out


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    for args in (["encode", str(tmp_path / "missing.mid")], ["decode", str(tmp_path / "bad.json"), "-o", "x.mid"]):
        result = subprocess.run([sys.executable, "-m", "pertok", *args], capture_output=True, text=True)
        assert result.returncode == 1
        assert result.stderr.startswith("pertok: error:") and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
