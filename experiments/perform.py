"""`--mode=perform`: the Performer adds expression to a user's MIDI file without changing its notes.

    python -m experiments.main --mode=perform --config=experiments/configs/cadenza.py:small \
        --workdir=runs/performed --config.perform.input=song.mid [--config.perform.velocity=80]

A quantized file (a DAW export, a score) gets velocities and microtiming from the Performer; a
file that already has expression is re-performed (its own velocities and timing are masked).
Every note of the input, with its pitch, its quantized onset and its duration, is kept one for
one: the performed file's composition tokens must equal the input's, or the file is not written.
The level is `perform.velocity`, or the input's own velocities when it is 0 (a flat export at
velocity 100 is played around 100). A file with `NAME_annotations.txt` beside it is aligned to
its beats first, as training data is. Writes WORKDIR/performed/<name>.mid and <name>.png (the
input's piano roll above the performance's) and one line per file; names as `vary` makes them
(`experiments.outputs`): another input never overwrites an earlier one's files.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import symusic

from composer import composition_view
from evaluation.notes import piece_notes
from evaluation.pianoroll import RollRow
from experiments.cadenza import (check_perform, drum_level, fill, load_drum_performer, load_trained, require,
                                 write_with_roll)
from experiments.outputs import OutputError, Outputs, named_inputs
from experiments.parts import print_tracks, track_report
from experiments.samples import encode_like_training, playable
from performer import piece_velocities
from pertok import PerTok, PerTokError, TokenType
from training.validate import ConfigError

ROLL_BARS = 16  # bars drawn in each piano roll


def perform_one(config, path: Path, name: str, performers: tuple, tokenizer: PerTok, outputs: Outputs,
                rng: jax.Array) -> dict:
    """Perform one file with (Performer, drum Performer or None); its summary row."""
    performer, drum_performer = performers
    full = encode_like_training(str(path), tokenizer)
    composition = composition_view(full, tokenizer)
    p = config.perform
    level = p.velocity or piece_velocities(full, tokenizer)
    require(len(composition) > 0, f"{path}: no notes to perform")
    tracks = track_report(symusic.Score(str(path)), drum_performer=drum_performer is not None)
    print_tracks(path, tracks)
    performed = np.asarray(fill(performer, [composition], rng, p.temperature, p.rounds, level, p.greedy,
                                p.hold_level, (drum_performer, drum_level(config, full, tokenizer)))[0])
    if not np.array_equal(composition_view(performed, tokenizer), composition):
        raise AssertionError(f"{path}: the performance changed the notes; nothing written")
    score, input_score = playable(tokenizer.decode(performed)), tokenizer.decode(full)
    name, out_dir = outputs.claim(name, path, stems=(".mid", ".png")), outputs.root
    reference = RollRow(f"{name} (input)", piece_notes(input_score, ROLL_BARS))
    outputs.record(name, write_with_roll(out_dir, name, score, reference, ROLL_BARS, f"{name}, performed"))
    velocities = piece_velocities(performed, tokenizer).astype(float)
    timing = tokenizer.vocab.value_of[performed[tokenizer.token_types(performed) == TokenType.MICROTIMING]]
    row = {"input": str(path), "output": str(out_dir / f"{name}.mid"), "notes": int(len(velocities)),
           "velocity_mean": float(velocities.mean()), "velocity_std": float(velocities.std()),
           "input_velocity_std": float(piece_velocities(full, tokenizer).astype(float).std()),
           "mean_abs_microtiming_bins": float(np.abs(timing).mean()) if len(timing) else 0.0,
           "tracks": [use.line().strip() for use in tracks]}
    print(f"  {name}.mid  {row['notes']} notes kept  velocity {row['velocity_mean']:.0f} +- {row['velocity_std']:.1f} "
          f"(input +- {row['input_velocity_std']:.1f})  mean |microtiming| {row['mean_abs_microtiming_bins']:.2f} "
          f"of 1/96 beat")
    return row


def perform_files(config, workdir: str) -> dict:
    """Perform `perform.input` (a file, or every MIDI file of a folder) into WORKDIR/performed."""
    source = config.perform.input
    require(bool(source), "--mode=perform needs an input: --config.perform.input=IN.mid (or a folder)")
    require(bool(config.performer_workdir), "--mode=perform needs performer_workdir (a trained performer.py run)")
    check_perform(config.perform)
    inputs, names, _ = named_inputs(source, "perform.input")
    tokenizer = PerTok()
    performers = (load_trained(config.performer_workdir, tokenizer, "performer"),
                  load_drum_performer(config, tokenizer))
    outputs = Outputs(Path(workdir) / "performed", "perform")
    out_dir = outputs.root
    rows, skipped, rng = [], [], jax.random.key(config.seed)
    for index, (path, name) in enumerate(zip(inputs, names)):
        try:
            rows.append(perform_one(config, path, name, performers, tokenizer, outputs, jax.random.fold_in(rng, index)))
        except (PerTokError, ConfigError, OutputError) as error:
            if len(inputs) == 1:
                raise
            print(f"skipped {path}: {error}")  # one bad file in a folder: say so, go on
            skipped.append({"input": str(path), "reason": str(error)})
    summary = {"performed": rows, "skipped": skipped}
    _merge_summary(out_dir / "performed.json", summary)
    print(f"{len(rows)} performed in {out_dir}")
    return summary


def _merge_summary(path: Path, summary: dict) -> None:
    """Write this run's rows into PATH, keeping the rows of other inputs from earlier runs (an
    input performed again replaces its own row)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    done = {row["input"] for row in summary["performed"] + summary["skipped"]}
    merged = {key: [row for row in earlier.get(key, []) if isinstance(row, dict) and row.get("input") not in done]
              + summary[key] for key in ("performed", "skipped")}
    path.write_text(json.dumps(merged, indent=1))
