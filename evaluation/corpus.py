"""A folder of MIDI files read into per-piece features, in parallel, past unreadable files."""
from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import symusic

from evaluation import expressive, features, mgeval, similarity
from evaluation.errors import EvaluationError
from evaluation.notes import piece_notes

MIDI_SUFFIXES = (".mid", ".midi")
# Below this many files a process pool costs more than it saves.
_MIN_FILES_FOR_POOL = 32


def midi_files(folder: str | os.PathLike) -> list[str]:
    """Every .mid / .midi file under `folder`, recursively, sorted."""
    path = Path(folder)
    if not path.exists():
        raise EvaluationError(f"folder {str(folder)!r} does not exist")
    if not path.is_dir():
        raise EvaluationError(f"{str(folder)!r} is not a folder")
    return sorted(str(p) for p in path.rglob("*")
                  if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


@dataclasses.dataclass(frozen=True)
class PieceSummary:
    """What the report needs of one piece.

    Attributes:
      path: the MIDI file.
      features: the protocol's per-piece features, float64 arrays by name (NaN where a
        piece has no such feature).
      velocity_counts: int64 [128], notes per velocity.
      microtiming_counts: int64 [25], notes per microtiming bin.
      pitch_class_entropy: MusDr's 4-bar pitch-class entropy, in bits.
    """

    path: str
    features: dict[str, np.ndarray]
    velocity_counts: np.ndarray
    microtiming_counts: np.ndarray
    pitch_class_entropy: float


def summarise_piece(path: str, num_bars: int, protocol: str = "project") -> PieceSummary:
    """Read one MIDI file and compute everything the report needs of it.

    Args:
      path: the MIDI file.
      num_bars: bars read by the per-bar features.
      protocol: "project" (features.py and expressive.py) or "mgeval" (mgeval.py).
    """
    score = symusic.Score(path)
    notes = piece_notes(score, min_bars=num_bars)
    if notes.num_notes == 0:
        raise EvaluationError("the file holds no notes")
    microtiming = expressive.microtiming_beats(notes)
    if protocol == "mgeval":
        piece_features = mgeval.mgeval_features(score)
    else:
        piece_features = {**features.mgeval_features(notes, num_bars),
                          **expressive.expressive_features(notes, microtiming)}
    return PieceSummary(
        path=path,
        features=piece_features,
        velocity_counts=expressive.velocity_histogram(notes),
        microtiming_counts=expressive.microtiming_histogram(microtiming),
        pitch_class_entropy=similarity.pitch_class_entropy(notes))


def _summary_or_reason(path: str, num_bars: int, protocol: str) -> PieceSummary | str:
    try:
        return summarise_piece(path, num_bars, protocol)
    except Exception as error:  # any unreadable file is listed in the report, never fatal
        return f"{type(error).__name__}: {error}"


def process_pool(workers: int | None, num_files: int) -> ProcessPoolExecutor | None:
    """A pool of `workers` processes (None: one per CPU), or None where one would not pay.

    The caller shuts it down (use it as a context manager).
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or num_files < _MIN_FILES_FOR_POOL:
        return None
    # Forking a process that has started jax's threads can deadlock (experiments.main calls
    # the report from such a process); a forkserver starts workers from a clean process.
    if "jax" in sys.modules:
        context = multiprocessing.get_context("forkserver")
        # Imported once in the server, so that each worker forks ready instead of importing.
        context.set_forkserver_preload(["evaluation.corpus", "evaluation.plots"])
    else:
        context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def summarise_files(paths: Sequence[str], num_bars: int, pool: ProcessPoolExecutor | None = None,
                    protocol: str = "project") -> list[PieceSummary | str]:
    """`summarise_piece` of every path, in order; an unreadable file gives its reason instead.

    Args:
      paths: MIDI files.
      num_bars: bars read by the per-bar features.
      pool: processes to spread the files over; None to stay in this process.
      protocol: whose feature definitions to compute ("project" or "mgeval").
    """
    summarise = functools.partial(_summary_or_reason, num_bars=num_bars, protocol=protocol)
    if pool is None:
        return [summarise(path) for path in paths]
    # About 64 chunks: a few per worker on 16 CPUs, yet each big enough to amortise pickling.
    chunksize = max(1, math.ceil(len(paths) / 64))
    return list(pool.map(summarise, paths, chunksize=chunksize))


@dataclasses.dataclass(frozen=True)
class CorpusFeatures:
    """The readable pieces of one set, their features stacked, and the files skipped.

    Attributes:
      paths: readable files, in order; row k of every array is paths[k].
      features: float64 [num_pieces, ...] per feature name.
      velocity_counts: int64 [128], pooled over all notes of the set.
      microtiming_counts: int64 [25], pooled over all notes of the set.
      pitch_class_entropy: float64 [num_pieces].
      skipped: {"path", "reason"} for each file that could not be used.
    """

    paths: list[str]
    features: dict[str, np.ndarray]
    velocity_counts: np.ndarray
    microtiming_counts: np.ndarray
    pitch_class_entropy: np.ndarray
    skipped: list[dict[str, str]]

    @property
    def num_pieces(self) -> int:
        return len(self.paths)


def gather(paths: Sequence[str], results: Sequence[PieceSummary | str]) -> CorpusFeatures:
    """Stack the summaries of one set; the reasons become its `skipped` list."""
    pieces = [result for result in results if isinstance(result, PieceSummary)]
    skipped = [{"path": path, "reason": result}
               for path, result in zip(paths, results) if isinstance(result, str)]
    names = list(pieces[0].features) if pieces else []
    return CorpusFeatures(
        paths=[piece.path for piece in pieces],
        features={name: np.stack([piece.features[name] for piece in pieces]) for name in names},
        velocity_counts=sum((p.velocity_counts for p in pieces),
                            np.zeros(expressive.NUM_VELOCITIES, np.int64)),
        microtiming_counts=sum((p.microtiming_counts for p in pieces),
                               np.zeros(expressive.MICROTIMING_BIN_EDGES_BEATS.size - 1, np.int64)),
        pitch_class_entropy=np.array([piece.pitch_class_entropy for piece in pieces], np.float64),
        skipped=skipped)
