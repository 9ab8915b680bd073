"""`--mode=eval` writes the music evaluation report of a run's samples against its held-out pieces."""
from __future__ import annotations

import json

import ml_collections

from experiments.sample_report import report_samples
from pertok.store import build_store
from pertok.synthetic import write_corpus
from training.data import is_validation


def test_samples_are_compared_with_the_validation_split(tmp_path, capsys):
    midi_dir = tmp_path / "midi"
    write_corpus(midi_dir, 8, seed=3)
    store = build_store(midi_dir, tmp_path / "store", workers=1, progress=False)
    config = ml_collections.ConfigDict({"data": {"midi_dir": str(midi_dir), "cache_dir": str(tmp_path),
                                                 "builtin_pieces": 0, "valid_fraction": 0.5}})
    workdir = tmp_path / "run"
    assert report_samples(config, str(workdir), store) is None  # no samples yet
    write_corpus(workdir / "samples", 1, seed=9)  # one sample: too few, one line, no error
    assert report_samples(config, str(workdir), store) is None
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and "skipped" in said[0]
    write_corpus(workdir / "samples", 3, seed=9)
    report = report_samples(config, str(workdir), store)
    written = json.loads((workdir / "eval" / "report" / "report.json").read_text())
    assert 0.0 <= written["mean_oa"] <= 1.0 and report["mean_oa"] == written["mean_oa"]
    linked = sorted(p.name for p in (workdir / "eval" / "reference").iterdir())
    held_out = [f for f in store.files if is_validation(f, 0.5)]
    assert len(linked) == len(held_out) > 0
