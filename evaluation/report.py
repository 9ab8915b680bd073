"""The evaluation report: a generated set against a reference set, as JSON and PNG plots.

`write_report` reads both folders (in parallel, listing unreadable files under
"skipped"), compares every per-piece feature of the chosen protocol by the OA and KL of
its intra-set and inter-set distances (`evaluation.compare`: "project" or "mgeval"),
compares the pooled velocity and microtiming histograms (`evaluation.expressive`), and
writes OUTDIR/report.json with the plots. report.json records the protocol, the pieces
each feature left out ("exclusions") and which features the mean OA averages.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from evaluation import compare, corpus, expressive, mgeval, plots
from evaluation.compare import FeatureComparison
from evaluation.corpus import CorpusFeatures
from evaluation.errors import EvaluationError
from evaluation.notes import load_piece


def _input_files(generated_dir: str | None, reference_dir: str,
                 half_split_seed: int | None) -> tuple[list[str], list[str]]:
    """The generated and reference files; with a half-split seed, two halves of the reference."""
    reference = corpus.midi_files(reference_dir)
    if half_split_seed is None:
        if generated_dir is None:
            raise EvaluationError("give a generated folder, or a half-split seed to compare "
                                  "two halves of the reference folder")
        return corpus.midi_files(generated_dir), reference
    if generated_dir is not None:
        raise EvaluationError("a half-split compares two halves of the reference folder; "
                              "do not give a generated folder with it")
    shuffled = [reference[k] for k in np.random.default_rng(half_split_seed).permutation(len(reference))]
    # The generated half takes the odd file: it needs 2 pieces where the reference needs 1.
    half = (len(shuffled) + 1) // 2
    return sorted(shuffled[:half]), sorted(shuffled[half:])


def _require_pieces(generated: CorpusFeatures, reference: CorpusFeatures, folders: tuple[str, str]) -> None:
    """One line naming the set and the count needed when a set is too small for OA."""
    for name, corpus_features, needed, why in (
            ("generated", generated, 2, "for intra-set distances"),
            ("reference", reference, 1, "for inter-set distances")):
        if corpus_features.num_pieces < needed:
            folder = folders[0] if name == "generated" else folders[1]
            raise EvaluationError(
                f"the {name} set ({folder}) has {corpus_features.num_pieces} readable MIDI file(s) "
                f"with notes ({len(corpus_features.skipped)} skipped); OA needs at least {needed} {why}")


def _spread(paths: list[str], count: int) -> list[str]:
    """`count` paths evenly spaced through the sorted list, so they come from different pieces."""
    if count <= 0 or not paths:
        return []
    return [paths[k] for k in np.unique(np.linspace(0, len(paths) - 1, count).round().astype(int))]


def _write_plots(out_dir: Path, comparisons: dict[str, FeatureComparison],
                 expressive_overlap: dict[str, dict], generated: CorpusFeatures,
                 reference: CorpusFeatures, num_bars: int, num_piano_rolls: int,
                 pool: ProcessPoolExecutor | None) -> list[str]:
    """Every PNG of the report, drawn in the pool when there is one; returns the file names."""
    compared = {name: c for name, c in comparisons.items() if c.summary["oa"] is not None}
    jobs = [(plots.write_distance_densities,
             (out_dir / f"density_{name}.png", f"{c.summary['abbreviation']} ({name})", c.grid,
              c.densities, c.summary["oa"]))
            for name, c in compared.items()]
    overlap_by_feature = {c.summary["abbreviation"]: c.summary["oa"] for c in compared.values()}
    jobs.append((plots.write_overlap_bars, (out_dir / "overlap_area.png", overlap_by_feature)))
    jobs.append((plots.write_velocity_histogram,
                 (out_dir / "velocity_histogram.png", generated.velocity_counts,
                  reference.velocity_counts, expressive_overlap["velocity"]["oa"])))
    jobs.append((plots.write_microtiming_histogram,
                 (out_dir / "microtiming_histogram.png", generated.microtiming_counts,
                  reference.microtiming_counts, expressive_overlap["microtiming"]["oa"])))
    rolls = [(f"{set_name}: {Path(path).parent.name}/{Path(path).name}",
              load_piece(path, min_bars=num_bars))
             for set_name, paths in (("generated", generated.paths), ("reference", reference.paths))
             for path in _spread(paths, num_piano_rolls)]
    if rolls:
        jobs.append((plots.write_piano_rolls, (out_dir / "piano_rolls.png", rolls, num_bars)))
    if pool is None:
        return [draw(*args) for draw, args in jobs]
    return [future.result() for future in [pool.submit(draw, *args) for draw, args in jobs]]


def _set_summary(folder: str, corpus_features: CorpusFeatures) -> dict:
    entropy = corpus_features.pitch_class_entropy
    return {
        "folder": folder,
        "num_pieces": corpus_features.num_pieces,
        "num_notes": int(corpus_features.velocity_counts.sum()),
        "pitch_class_entropy_bits": {"mean": float(entropy.mean()), "std": float(entropy.std())},
    }


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """How a report reads and compares; see `write_report` for each field."""

    num_bars: int = 16
    max_pairs: int = 10_000
    seed: int = 0
    num_piano_rolls: int = 3
    half_split_seed: int | None = None
    draw_plots: bool = True
    protocol: str = "project"

    def __post_init__(self) -> None:
        for name in ("num_bars", "max_pairs"):
            if getattr(self, name) < 1:
                raise EvaluationError(f"{name} must be at least 1, got {getattr(self, name)}")
        try:
            compare.check_protocol(self.protocol)
        except ValueError as error:
            raise EvaluationError(str(error)) from None


def write_report(generated_dir: str | os.PathLike | None, reference_dir: str | os.PathLike,
                 out_dir: str | os.PathLike, *, num_bars: int = 16, max_pairs: int = 10_000,
                 seed: int = 0, workers: int | None = None, num_piano_rolls: int = 3,
                 half_split_seed: int | None = None, draw_plots: bool = True,
                 protocol: str = "project") -> dict:
    """Compare a generated set of MIDI files with a reference set; write report.json and PNGs.

    Args:
      generated_dir: folder of generated MIDI files (searched recursively); None with
        `half_split_seed`.
      reference_dir: folder of reference MIDI files (searched recursively).
      out_dir: created if missing; receives report.json and the plots.
      num_bars: bars read by the per-bar features and drawn in the piano rolls.
      max_pairs: most distance pairs per distance set (seeded sampling beyond it).
      seed: seed of that sampling.
      workers: processes reading files and drawing plots; None for one per CPU.
      num_piano_rolls: pieces of each set drawn in piano_rolls.png.
      half_split_seed: compare a random half of the reference folder (drawn with this
        seed) with the other half, a ceiling for OA.
      draw_plots: write the PNGs; False for report.json alone (a quicker evaluation).
      protocol: "project" (this package's definitions, the default) or "mgeval" (MGEval's
        definitions and integration, the papers' nine features); see `evaluation.compare`.

    Returns:
      The report, as written to report.json.
    """
    started = time.perf_counter()
    if workers is not None and workers < 1:
        raise EvaluationError(f"workers must be at least 1 (or None for one per CPU), got {workers}")
    options = ReportOptions(num_bars=num_bars, max_pairs=max_pairs, seed=seed,
                            num_piano_rolls=num_piano_rolls, half_split_seed=half_split_seed,
                            draw_plots=draw_plots, protocol=protocol)
    generated_dir = None if generated_dir is None else str(generated_dir)
    generated_paths, reference_paths = _input_files(generated_dir, str(reference_dir), half_split_seed)
    folders = (generated_dir or f"{reference_dir} (half, seed {half_split_seed})", str(reference_dir))
    pool = corpus.process_pool(workers, len(generated_paths) + len(reference_paths))
    try:
        results = corpus.summarise_files(generated_paths + reference_paths, num_bars, pool, protocol)
        generated = corpus.gather(generated_paths, results[:len(generated_paths)])
        reference = corpus.gather(reference_paths, results[len(generated_paths):])
        read_s = time.perf_counter() - started
        report = _compare_and_write(generated, reference, folders, Path(out_dir), options, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    report["seconds"] = {"read": round(read_s, 3), **report["seconds"],
                         "total": round(time.perf_counter() - started, 3)}
    (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _compare_and_write(generated: CorpusFeatures, reference: CorpusFeatures, folders: tuple[str, str],
                       out: Path, options: ReportOptions, pool: ProcessPoolExecutor | None) -> dict:
    """The report of two read sets, with its plots written to `out` (not yet report.json)."""
    _require_pieces(generated, reference, folders)
    started = time.perf_counter()
    comparisons = compare.compare_feature_sets(generated.features, reference.features, options.protocol,
                                               options.max_pairs, options.seed)
    expressive_overlap = {
        "velocity": expressive.histogram_overlap(generated.velocity_counts, reference.velocity_counts),
        "microtiming": expressive.histogram_overlap(generated.microtiming_counts,
                                                    reference.microtiming_counts),
    }
    compared = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    plot_files = (_write_plots(out, comparisons, expressive_overlap, generated, reference,
                               options.num_bars, options.num_piano_rolls, pool)
                  if options.draw_plots else [])
    seconds = {"compare": round(compared - started, 3), "plots": round(time.perf_counter() - compared, 3)}
    mean = compare.mean_oa(comparisons)
    report = {
        "protocol": options.protocol,
        "generated": _set_summary(folders[0], generated),
        "reference": _set_summary(folders[1], reference),
        "options": dataclasses.asdict(options),
        "features": {name: c.summary for name, c in comparisons.items()},
        "exclusions": {name: c.summary["excluded"] for name, c in comparisons.items()},
        "mean_oa": mean["value"],
        "mean_oa_features": mean["features"],
    }
    if options.protocol == "project":
        # The papers' nine features under this protocol's definitions, beside the mgeval column.
        report["mean_oa_paper_features"] = compare.mean_oa(comparisons, list(mgeval.PAPER_FEATURES))["value"]
    return {
        **report,
        "expressive": expressive_overlap,
        "skipped": ([{"set": "generated", **s} for s in generated.skipped]
                    + [{"set": "reference", **s} for s in reference.skipped]),
        "plots": plot_files,
        "seconds": seconds,
    }


def format_table(report: dict) -> str:
    """The report's per-feature OA and KL as a plain-text table."""
    def number(value: float | None, width: int) -> str:
        return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"

    rows = [(c["abbreviation"], c["oa"], c["kl"], c["excluded"]) for c in report["features"].values()]
    lines = [f"protocol: {report['protocol']}", f"{'feature':<24} {'OA':>6} {'KL':>8}  excluded (gen/ref)"]
    lines += [f"{name:<24} {number(oa, 6)} {number(kl, 8)}  {excluded['generated']}/{excluded['reference']}"
              for name, oa, kl, excluded in rows]
    lines += [f"{name + ' (all notes)':<24} {number(r['oa'], 6)} {number(r['kl'], 8)}"
              for name, r in report["expressive"].items()]
    averaged = len(report["mean_oa_features"])
    lines.append(f"{f'mean OA ({averaged} features)':<24} {number(report['mean_oa'], 6)}")
    return "\n".join(lines)
