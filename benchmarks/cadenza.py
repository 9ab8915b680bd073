"""Cadenza on held-out inputs: the Performer against its baselines and the Composer's
reconstruction and similarity, all in one run.

    python benchmarks/cadenza.py --inputs DIR [--composer_workdir=runs/composer-small]
        [--performer_workdir=runs/performer-small] [--max_inputs=10] [--performer_bars=16]
        [--variations=2] [--seed=0]

DIR holds MIDI files (recursively) that neither model trained on; a file with
`NAME_annotations.txt` beside it is beat-aligned first (`pertok.align`), as training data is.
The run counts inputs whose path relative to DIR is also in a model's training split, relative
to its MIDI folder ("leaked"), and those whose folder holds a training file ("sharing a
folder": in ASAP, the same piece through another performance or its score): lay DIR out like
the training folder for the checks to see them.

Performer, on the first `--performer_bars` bars of each input, every slot masked, greedy
(temperature 0: each slot's median value), told the input's mean velocity as its dynamic level,
which sets the mean of the chosen velocities ("level"); and three controls: the level given but
not held ("level_unheld": the model alone), the same with the most likely token instead of the
median ("level_mode"), and no level ("no_level"):
velocity MAE and Pearson correlation per note against the truth, beside the constant
baseline (the mean velocity of the Performer's training split), the piece's own mean, and a
note-feature regression fit on the training split and told the piece's level
(`benchmarks/note_regression.py`; it also predicts microtiming);
microtiming MAE (in bins of 1/96 beat) against always 0; histogram overlap (sum of
per-bin minima) of the predicted velocities and microtimings with the truth's.

Composer, on each input's first idea (`idea.num_bars` bars from its first bar with a note),
through the same path as `--mode=vary` (`experiments.cadenza.compose`): at strength 0 (z = mu,
greedy) the F1 of the decoded notes' (onset, pitch) against the idea's; at strength 0.5
(temperature 1, top-p 0.9) chroma and groove similarity, and the same at each of `--strengths`
(default 0.25, 0.5, 1: similarity to the own input should fall as strength rises). Each as own
input / mean over the other inputs, and their gap. At each strength, the size of the
variations: their note count over their input's (median, 10th-90th percentile) and the share
under half the input's notes (a collapsed variation; one with no notes counts 0). Last line: JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.note_regression import NoteRegression  # noqa: E402
from benchmarks.results import add_argument, recorded  # noqa: E402
from composer import (composition_view, conditions_of, idea_example, select_bars,  # noqa: E402
                      variation_latents)
from evaluation.similarity import chroma_similarity, groove_similarity  # noqa: E402
from experiments.cadenza import compose, load_trained  # noqa: E402
from experiments.samples import encode_like_training  # noqa: E402
from performer import PerformanceFiller, piece_velocities, slot_kinds  # noqa: E402

from performer.slots import MICROTIMING_SLOT, VELOCITY_SLOT  # noqa: E402
from pertok import PerTok, TokenType  # noqa: E402
from pertok.store import find_midi_files  # noqa: E402


def first_bars(ids: np.ndarray, tokenizer: PerTok, bars: int) -> np.ndarray:
    """The ids before the (bars + 1)-th Bar."""
    lines = np.flatnonzero(tokenizer.token_types(ids) == TokenType.BAR)
    return ids[:lines[bars]] if len(lines) > bars else ids


def training_split(trained):
    """(paths of the files in a run's training split, relative to its MIDI folder; the split's pieces)."""
    from training.corpus import open_store
    from training.data import split_pieces

    data = trained.config.data
    train, _ = split_pieces(open_store(data), data.valid_fraction, data.get("split", "file"))
    return set(train.files), train


def shared_folders(names: set[str], seen: set[str]) -> int:
    """Inputs whose folder also holds a training file (in ASAP: the piece, through another
    performance or its score); 0 when the run held out whole folders (`data.split=folder`)."""
    folders = {os.path.dirname(name) for name in seen}
    return sum(os.path.dirname(name) in folders for name in names if os.path.dirname(name))


def overlap(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    """Histogram overlap: sum over bins of min(p_a, p_b), in [0, 1]."""
    p, _ = np.histogram(a, bins)
    q, _ = np.histogram(b, bins)
    return float(np.minimum(p / max(p.sum(), 1), q / max(q.sum(), 1)).sum())


def slot_values(ids: np.ndarray, tokenizer: PerTok, kind: int) -> np.ndarray:
    """Values (MIDI velocity, or signed microtiming bin) of a full sequence's slots of one kind."""
    return tokenizer.vocab.value_of[ids[slot_kinds(ids, tokenizer) == kind]].astype(float)


def performance_metrics(velocities: list[np.ndarray], timings: list[np.ndarray], truth_v: list[np.ndarray],
                        truth_t: list[np.ndarray]) -> dict:
    """Velocity and microtiming of one way of performing every piece, against the truth."""
    velocity, timing = np.concatenate(velocities), np.concatenate(timings)
    true_v, true_t = np.concatenate(truth_v), np.concatenate(truth_t)
    per_piece = [np.corrcoef(v, t)[0, 1] for v, t in zip(velocities, truth_v) if np.std(t) > 0 and np.std(v) > 0]
    return {
        "velocity_mae": float(np.abs(velocity - true_v).mean()),
        "velocity_correlation": float(np.corrcoef(velocity, true_v)[0, 1]) if velocity.std() > 0 else 0.0,
        "velocity_correlation_within_pieces": float(np.mean(per_piece)) if per_piece else 0.0,
        "microtiming_mae_bins": float(np.abs(timing - true_t).mean()),
        "velocity_overlap": overlap(velocity, true_v, np.arange(0, 129, 4)),
        "microtiming_overlap": overlap(timing, true_t, np.arange(-12.5, 13.5, 1.0)),
    }


def performer_report(performer, tokenizer: PerTok, pieces: list[np.ndarray], train_mean: float,
                     seed: int, regression: NoteRegression | None = None) -> dict:
    """Per-note velocity and microtiming of the greedy performance against the truth and baselines."""
    compositions = [composition_view(ids, tokenizer) for ids in pieces]
    truth_v = [slot_values(ids, tokenizer, VELOCITY_SLOT) for ids in pieces]
    truth_t = [slot_values(ids, tokenizer, MICROTIMING_SLOT) for ids in pieces]
    piece_mean = [np.full(len(v), v.mean()) for v in truth_v]
    report = {}
    given = [piece_velocities(ids, tokenizer) for ids in pieces]
    for name, levels, greedy, hold in (("level", given, "median", True), ("level_unheld", given, "median", False),
                                       ("level_mode", given, "mode", False), ("no_level", None, "median", True)):
        filler = PerformanceFiller(performer.task, greedy=greedy, hold_level=hold)
        performed = filler(performer.params, compositions, jax.random.key(seed), 0.0, levels)
        report[name] = performance_metrics([slot_values(ids, tokenizer, VELOCITY_SLOT) for ids in performed],
                                           [slot_values(ids, tokenizer, MICROTIMING_SLOT) for ids in performed],
                                           truth_v, truth_t)
    if regression is not None:  # told the same level: each piece's mean velocity
        predicted = [regression.predict(ids, float(v.mean())) for ids, v in zip(pieces, truth_v)]
        report["regression"] = performance_metrics([p[0] for p in predicted], [p[1] for p in predicted],
                                                   truth_v, truth_t)
    true_v, true_t = np.concatenate(truth_v), np.concatenate(truth_t)
    report["baselines"] = {
        "velocity_mae_training_mean": float(np.abs(true_v - train_mean).mean()),
        "velocity_mae_piece_mean": float(np.abs(true_v - np.concatenate(piece_mean)).mean()),
        "microtiming_mae_zero_bins": float(np.abs(true_t).mean()),
        "training_mean_velocity": train_mean, "notes": int(len(true_v)),
    }
    return report


def first_sounding_bar(ids: np.ndarray, tokenizer: PerTok) -> int:
    """Index of the first bar that holds a note (a performance may open with silent bars)."""
    types = tokenizer.token_types(ids)
    notes = np.flatnonzero(np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH)))
    return max(int((types[:notes[0]] == TokenType.BAR).sum()) - 1, 0) if len(notes) else 0


def note_set(ids: np.ndarray, tokenizer: PerTok) -> set[tuple[int, int]]:
    """(onset tick, pitch) of every note of composition ids."""
    if not len(ids):
        return set()
    score = tokenizer.decode(ids, strict=False, view="composition")
    return {(int(n.time), int(n.pitch)) for track in score.tracks for n in track.notes}


def f1(a: set, b: set) -> float:
    hits = len(a & b)
    return 0.0 if not hits else 2 * hits / (len(a) + len(b))


def own_other(matrix: np.ndarray) -> tuple[float, float]:
    """Mean of the diagonal and of the off-diagonal of [outputs of input i, compared with input j]."""
    n = len(matrix)
    off = matrix[~np.eye(n, dtype=bool)]
    return float(np.mean(np.diag(matrix))), float(off.mean()) if n > 1 else 0.0


def _or_zero(similarity, reference, variation) -> float:
    """`similarity(reference, variation)`, 0 for a variation without notes."""
    if variation is None or variation.note_num() == 0:
        return 0.0
    return float(similarity(reference, variation))


def size_summary(ratios: np.ndarray) -> dict:
    """The distribution of variations' note counts relative to their inputs' (1 = the same size)."""
    ratios = np.asarray(ratios, float)
    return {"variations": int(len(ratios)), "median": float(np.median(ratios)),
            "p10": float(np.percentile(ratios, 10)), "p90": float(np.percentile(ratios, 90)),
            "under_half": float(np.mean(ratios < 0.5))}


def similarity_matrices(composer, tokenizer: PerTok, scores: list, mu, prefixes: np.ndarray,
                        variations: int, strength: float, rng: jax.Array) -> tuple[np.ndarray, np.ndarray, list]:
    """[variations of input i against input j] mean chroma and groove similarity at `strength`
    (temperature 1, top-p 0.9, each input's own prefix), and each variation's note count over
    its input's."""
    n = len(scores)
    chroma, groove, ratios = np.zeros((n, n)), np.zeros((n, n)), []
    for i in range(n):
        z = variation_latents(jax.random.fold_in(rng, i), mu[i], variations, strength)
        varied, _ = compose(composer, tokenizer, z, jax.random.fold_in(rng, n + i), 1.0, 0.9,
                            prefix=prefixes[i])
        # A variation with no notes scores 0, as `vary` scores it (dropping it would flatter the mean).
        varied = [tokenizer.decode(ids, view="composition") if len(ids) else None for ids in varied]
        ratios += [(0 if v is None else v.note_num()) / max(scores[i].note_num(), 1) for v in varied]
        for j in range(n):
            chroma[i, j] = np.mean([_or_zero(chroma_similarity, scores[j], v) for v in varied])
            groove[i, j] = np.mean([_or_zero(groove_similarity, scores[j], v) for v in varied])
    return chroma, groove, ratios


def composer_report(composer, tokenizer: PerTok, pieces: list[np.ndarray], variations: int,
                    seed: int, strengths: tuple[float, ...] = (0.5,)) -> dict:
    """F1 at strength 0, and chroma/groove at each strength (0.5 always), own input against the others."""
    task = composer.task
    encode = jax.jit(task.model.encode)
    ideas = [composition_view(select_bars(ids, tokenizer, first_sounding_bar(ids, tokenizer), task.num_bars,
                                          task.context_length - 1)[0], tokenizer) for ids in pieces]
    encoder_ids = np.stack([idea_example(idea, task.context_length)["encoder_ids"] for idea in ideas])
    mu, _ = encode(composer.params, encoder_ids)
    rng = jax.random.key(seed)
    # Each idea's own conditions (meter, programs, bars) as the decoder's prefix, as vary does.
    prefixes = np.stack([task.model.prefix_ids(conditions_of(idea, tokenizer)) for idea in ideas])
    greedy, _ = compose(composer, tokenizer, mu, rng, 0.0, 1.0, prefix=prefixes)
    truth = [note_set(idea, tokenizer) for idea in ideas]
    decoded = [note_set(ids, tokenizer) for ids in greedy]
    n = len(ideas)
    f1s = np.array([[f1(decoded[i], truth[j]) for j in range(n)] for i in range(n)])
    scores = [tokenizer.decode(idea, view="composition") for idea in ideas]
    report = {"f1_strength0": dict(zip(("own", "other"), own_other(f1s)))}
    report["f1_strength0"]["gap"] = report["f1_strength0"]["own"] - report["f1_strength0"]["other"]
    report["similarity_by_strength"] = {}
    for strength in sorted(set(strengths) | {0.5}):
        chroma, groove, ratios = similarity_matrices(composer, tokenizer, scores, mu, prefixes, variations,
                                                     strength, jax.random.fold_in(rng, int(strength * 1000)))
        row = {"size": size_summary(ratios)}
        for name, matrix in (("chroma", chroma), ("groove", groove)):
            own, other = own_other(matrix)
            row[name] = {"own": own, "other": other, "gap": own - other}
            if strength == 0.5:
                report[f"{name}_strength05"] = row[name]
        report["similarity_by_strength"][str(strength)] = row
    report["identical_greedy_outputs"] = int(n - len({tuple(ids) for ids in greedy}))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", required=True, help="folder of held-out MIDI files")
    parser.add_argument("--composer_workdir", default="runs/composer-small")
    parser.add_argument("--performer_workdir", default="runs/performer-small")
    parser.add_argument("--max_inputs", type=int, default=10)
    parser.add_argument("--performer_bars", type=int, default=16)
    parser.add_argument("--variations", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strengths", default="0.25,0.5,1.0",
                        help="comma-separated variation strengths for the similarity sweep")
    add_argument(parser)
    args = parser.parse_args()
    with recorded(args.results, "Cadenza on held-out inputs: the Performer against its baselines, the Composer's reconstruction and similarity"):
        run(args)


def run(args: argparse.Namespace) -> None:
    tokenizer = PerTok()
    files = sorted(find_midi_files(args.inputs))[:args.max_inputs] if os.path.isdir(args.inputs) else []
    if len(files) < 2:
        raise SystemExit(f"cadenza.py: error: --inputs={args.inputs!r} needs at least 2 MIDI files")
    pieces = [encode_like_training(str(path), tokenizer, quiet=True) for path in files]
    names = {os.path.relpath(str(path), args.inputs) for path in files}
    result = {"inputs": len(files)}
    if args.performer_workdir:
        performer = load_trained(args.performer_workdir, tokenizer, "performer")
        seen, train = training_split(performer)
        velocities = np.concatenate([piece_velocities(train.piece(k), tokenizer) for k in range(len(train))])
        result["performer_leaked_inputs"] = len(names & seen)
        result["performer_inputs_sharing_a_folder"] = shared_folders(names, seen)
        regression = NoteRegression(tokenizer).fit(train.piece(k) for k in range(len(train)))
        result["performer"] = performer_report(
            performer, tokenizer, [first_bars(ids, tokenizer, args.performer_bars) for ids in pieces],
            float(velocities.mean()), args.seed, regression)
    if args.composer_workdir:
        composer = load_trained(args.composer_workdir, tokenizer, "composer")
        seen = training_split(composer)[0]
        result["composer_leaked_inputs"] = len(names & seen)
        result["composer_inputs_sharing_a_folder"] = shared_folders(names, seen)
        result["composer"] = composer_report(composer, tokenizer, pieces, args.variations, args.seed,
                                             tuple(float(x) for x in args.strengths.split(",") if x))
    print_tables(result)
    print(json.dumps(result))


PERFORMER_ROWS = (("level", "told the piece's level, held to it (the default)"),
                  ("level_unheld", "told the piece's level, not held"),
                  ("level_mode", "told the level, not held, most likely token"),
                  ("no_level", "the model alone: no level"))


def print_tables(result: dict) -> None:
    """The result as markdown tables (the JSON line after it holds every number)."""
    print(f"{result['inputs']} inputs.")
    if "performer" in result:
        report, base = result["performer"], result["performer"]["baselines"]
        print(f"\nPerformer: {base['notes']} notes; inputs in its training split "
              f"{result['performer_leaked_inputs']}, sharing a folder with it {result['performer_inputs_sharing_a_folder']}.\n")
        print("| Performer, greedy | velocity MAE | velocity r, pooled | velocity r, within pieces "
              "| microtiming MAE (bins) | velocity / microtiming histogram overlap |")
        print("|---|---|---|---|---|---|")
        for key, label in PERFORMER_ROWS:
            row = report[key]
            print(f"| {label} | {row['velocity_mae']:.2f} | {row['velocity_correlation']:.3f} | "
                  f"{row['velocity_correlation_within_pieces']:.3f} | {row['microtiming_mae_bins']:.3f} | "
                  f"{row['velocity_overlap']:.2f} / {row['microtiming_overlap']:.2f} |")
        if "regression" in report:
            row = report["regression"]
            print(f"| note-feature regression fit on the training split, told the piece's level | "
                  f"{row['velocity_mae']:.2f} | {row['velocity_correlation']:.3f} | "
                  f"{row['velocity_correlation_within_pieces']:.3f} | {row['microtiming_mae_bins']:.3f} | "
                  f"{row['velocity_overlap']:.2f} / {row['microtiming_overlap']:.2f} |")
        print(f"| constant: the training split's mean velocity ({base['training_mean_velocity']:.1f}) | "
              f"{base['velocity_mae_training_mean']:.2f} | | | | |")
        print(f"| constant: the piece's own mean velocity | {base['velocity_mae_piece_mean']:.2f} | | | | |")
        print(f"| microtiming always 0 (on the grid) | | | | {base['microtiming_mae_zero_bins']:.3f} | |")
    if "composer" in result:
        report = result["composer"]
        print(f"\nComposer: inputs in its training split {result['composer_leaked_inputs']}, sharing a folder "
              f"with it {result['composer_inputs_sharing_a_folder']}; identical greedy outputs "
              f"{report['identical_greedy_outputs']}.\n")
        print("| Composer, each input's first idea | own input | other inputs | gap |")
        print("|---|---|---|---|")
        f1_row = report["f1_strength0"]
        print(f"| note F1 (onset, pitch), strength 0, greedy | {f1_row['own']:.3f} | {f1_row['other']:.3f} | "
              f"{f1_row['gap']:.3f} |")
        for strength, row in report["similarity_by_strength"].items():
            for name in ("chroma", "groove"):
                print(f"| {name} similarity, strength {strength} | {row[name]['own']:.3f} | "
                      f"{row[name]['other']:.3f} | {row[name]['gap']:.3f} |")
        print("\n| strength | variations | notes / input's notes: median (10th-90th percentile) "
              "| under half the input's notes |")
        print("|---|---|---|---|")
        for strength, row in report["similarity_by_strength"].items():
            size = row["size"]
            print(f"| {strength} | {size['variations']} | {size['median']:.2f} ({size['p10']:.2f}-{size['p90']:.2f}) "
                  f"| {100 * size['under_half']:.1f}% |")


if __name__ == "__main__":
    main()
