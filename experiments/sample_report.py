"""`--mode=eval`, second half: the evaluation report of a run's samples against held-out music."""
from __future__ import annotations

import os
from pathlib import Path

from absl import logging

from pertok.store import MIDI_SUFFIXES
from training import corpus
from training.data import split_pieces


def report_samples(config, workdir: str, store) -> dict | None:
    """Write WORKDIR/eval/report.json comparing WORKDIR/samples/*.mid with the validation pieces.

    Returns the report (None when the run has no samples yet, or the evaluation cannot be made
    of them, e.g. too few samples: then one line says why and `--mode=eval` still succeeds). The held-out files are linked
    into WORKDIR/eval/reference so the report reads exactly the validation split.
    """
    samples = Path(workdir) / "samples"
    if not samples.is_dir() or not any(p.suffix.lower() in MIDI_SUFFIXES for p in samples.iterdir()):
        logging.info("no samples in %s: skipping the music evaluation report", samples)
        return None
    from evaluation.errors import EvaluationError
    from evaluation.report import write_report

    _, valid = split_pieces(store, config.data.valid_fraction, config.data.get("split", "file"))
    reference = Path(workdir) / "eval" / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    for index in valid.indices:  # each piece from its own source folder (data.midi_dir may name several)
        source = Path(corpus.piece_source(store, int(index), config.data)) / store.files[index]
        link = reference / f"{index:06d}_{source.name}"
        if not link.exists():
            os.symlink(source.resolve(), link)
    try:
        report = write_report(str(samples), str(reference), str(Path(workdir) / "eval" / "report"))
    except EvaluationError as error:  # e.g. too few samples to compare: one line, no traceback
        print(f"music evaluation of {samples} skipped: {str(error).splitlines()[0]}", flush=True)
        return None
    logging.info("music evaluation of %s against %d held-out pieces: mean OA %.3f -> %s",
                 samples, len(valid.indices), report.get("mean_oa", float("nan")),
                 Path(workdir) / "eval" / "report" / "report.json")
    return report
