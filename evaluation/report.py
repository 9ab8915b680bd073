"""The evaluation report: a generated set against a reference set, as JSON and PNG plots.

`write_report` reads both folders (in parallel, listing unreadable files under
"skipped"), compares every per-piece feature by the OA and KL of its intra-set and
inter-set distances (`evaluation.overlap`), compares the pooled velocity and microtiming
histograms (`evaluation.expressive`), and writes OUTDIR/report.json with the plots.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from evaluation import corpus, expressive, features, overlap, plots
from evaluation.corpus import CorpusFeatures
from evaluation.errors import EvaluationError
from evaluation.notes import load_piece

ABBREVIATIONS = {**features.FEATURE_ABBREVIATIONS, **expressive.EXPRESSIVE_ABBREVIATIONS}


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
    half = len(shuffled) // 2
    return sorted(shuffled[:half]), sorted(shuffled[half:])


def _require_pieces(name: str, folder: str, corpus_features: CorpusFeatures) -> None:
    if corpus_features.num_pieces < 2:
        raise EvaluationError(
            f"the {name} set ({folder}) has {corpus_features.num_pieces} readable MIDI file(s) "
            f"with notes ({len(corpus_features.skipped)} skipped); at least 2 are needed")


@dataclasses.dataclass(frozen=True)
class FeatureComparison:
    """One feature's comparison: its JSON summary, and its distance densities for the plot.

    Attributes:
      summary: abbreviation, oa, kl (intra generated || inter), oa_reference (intra
        reference vs inter), the distance sets' mean and std, and for scalar features
        each set's mean and std (MGEval's absolute measures).
      grid: float64 [num_points], the distances the densities are evaluated at.
      densities: "intra generated", "inter", "intra reference" -> float64 [num_points].
    """

    summary: dict
    grid: np.ndarray
    densities: dict[str, np.ndarray]


def compare_feature(name: str, generated: np.ndarray, reference: np.ndarray,
                    pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> FeatureComparison:
    """OA and KL of one feature's intra-set (generated) and inter-set distances.

    Args:
      name: a key of ABBREVIATIONS.
      generated, reference: the feature of every piece of each set, [num_pieces, ...].
      pairs: index pairs of "intra generated", "inter" and "intra reference".
    """
    sets = {"intra generated": (generated, generated), "inter": (generated, reference),
            "intra reference": (reference, reference)}
    distances = {label: overlap.pair_distances(*sets[label], *pairs[label]) for label in sets}
    result = overlap.distance_densities(list(distances.values()))
    intra, inter, intra_reference = result.densities
    summary = {
        "abbreviation": ABBREVIATIONS[name],
        "oa": overlap.overlap_area(intra, inter, result.grid),
        "kl": overlap.kl_divergence(intra, inter, result.grid),
        "oa_reference": overlap.overlap_area(intra_reference, inter, result.grid),
        "distances": {label.replace(" ", "_"): {"mean": float(d.mean()), "std": float(d.std())}
                      for label, d in distances.items()},
    }
    if generated.ndim == 1:
        summary["generated"] = {"mean": float(generated.mean()), "std": float(generated.std())}
        summary["reference"] = {"mean": float(reference.mean()), "std": float(reference.std())}
    return FeatureComparison(summary=summary, grid=result.grid,
                             densities=dict(zip(distances, result.densities)))


def compare_feature_sets(generated: CorpusFeatures, reference: CorpusFeatures,
                         max_pairs: int, seed: int) -> dict[str, FeatureComparison]:
    """`compare_feature` of every feature, all on the same distance pairs.

    Args:
      max_pairs: most distance pairs per set; beyond it pairs are drawn with `seed`.
    """
    rng = np.random.default_rng(seed)
    pairs = {
        "intra generated": overlap.leave_one_out_pairs(generated.num_pieces, max_pairs, rng),
        "intra reference": overlap.leave_one_out_pairs(reference.num_pieces, max_pairs, rng),
        "inter": overlap.cross_pairs(generated.num_pieces, reference.num_pieces, max_pairs, rng),
    }
    return {name: compare_feature(name, generated.features[name], reference.features[name], pairs)
            for name in ABBREVIATIONS}


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
    jobs = [(plots.write_distance_densities,
             (out_dir / f"density_{name}.png", f"{c.summary['abbreviation']} ({name})", c.grid,
              c.densities, c.summary["oa"]))
            for name, c in comparisons.items()]
    overlap_by_feature = {c.summary["abbreviation"]: c.summary["oa"] for c in comparisons.values()}
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

    def __post_init__(self) -> None:
        for name in ("num_bars", "max_pairs"):
            if getattr(self, name) < 1:
                raise EvaluationError(f"{name} must be at least 1, got {getattr(self, name)}")


def write_report(generated_dir: str | os.PathLike | None, reference_dir: str | os.PathLike,
                 out_dir: str | os.PathLike, *, num_bars: int = 16, max_pairs: int = 10_000,
                 seed: int = 0, workers: int | None = None, num_piano_rolls: int = 3,
                 half_split_seed: int | None = None, draw_plots: bool = True) -> dict:
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

    Returns:
      The report, as written to report.json.
    """
    started = time.perf_counter()
    if workers is not None and workers < 1:
        raise EvaluationError(f"workers must be at least 1 (or None for one per CPU), got {workers}")
    options = ReportOptions(num_bars=num_bars, max_pairs=max_pairs, seed=seed,
                            num_piano_rolls=num_piano_rolls, half_split_seed=half_split_seed,
                            draw_plots=draw_plots)
    generated_dir = None if generated_dir is None else str(generated_dir)
    generated_paths, reference_paths = _input_files(generated_dir, str(reference_dir), half_split_seed)
    folders = (generated_dir or f"{reference_dir} (half, seed {half_split_seed})", str(reference_dir))
    pool = corpus.process_pool(workers, len(generated_paths) + len(reference_paths))
    try:
        results = corpus.summarise_files(generated_paths + reference_paths, num_bars, pool)
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
    for name, folder, corpus_features in zip(("generated", "reference"), folders, (generated, reference)):
        _require_pieces(name, folder, corpus_features)
    started = time.perf_counter()
    comparisons = compare_feature_sets(generated, reference, options.max_pairs, options.seed)
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
    return {
        "generated": _set_summary(folders[0], generated),
        "reference": _set_summary(folders[1], reference),
        "options": dataclasses.asdict(options),
        "features": {name: c.summary for name, c in comparisons.items()},
        "mean_oa": float(np.mean([c.summary["oa"] for c in comparisons.values()])),
        "expressive": expressive_overlap,
        "skipped": ([{"set": "generated", **s} for s in generated.skipped]
                    + [{"set": "reference", **s} for s in reference.skipped]),
        "plots": plot_files,
        "seconds": seconds,
    }


def format_table(report: dict) -> str:
    """The report's per-feature OA and KL as a plain-text table."""
    rows = [(c["abbreviation"], c["oa"], c["kl"]) for c in report["features"].values()]
    rows += [(f"{name} (all notes)", r["oa"], r["kl"]) for name, r in report["expressive"].items()]
    lines = [f"{'feature':<24} {'OA':>6} {'KL':>8}"]
    lines += [f"{name:<24} {oa:6.3f} {kl:8.3f}" for name, oa, kl in rows]
    lines.append(f"{'mean OA (per-piece features)':<31} {report['mean_oa']:6.3f}")
    return "\n".join(lines)
