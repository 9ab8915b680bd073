"""`--mode=vary` of Cadenza: performed variations of the idea of each input MIDI file, each
beside a control, so a user sees what "related" means here.

    python -m experiments.main --mode=vary --config=experiments/configs/cadenza.py:tiny \
        --workdir=runs/cadenza --config.vary.input=IN.mid|FOLDER

Each input writes WORKDIR/variations/<input name>/: `input.mid` (the idea as cut), and for
every k `variation_k.mid` and `variation_k.png` (its piano roll under the input's; none for a
variation with no notes), plus `similarity.json`. The name is the input's path relative to the
input folder, made safe (`experiments.outputs`); a rerun on the same input first removes what the
earlier run wrote there and nothing else, and another input never takes an existing name.
The control of variation k is an idea from the prior with the same conditioning prefix (meter,
programs, bars) and performed the same way: its similarity to the input is what similarity
looks like without listening.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import symusic

from composer import (composition_view, conditions_of, idea_example, prior_latents, select_bars,
                      variation_latents)
from evaluation.notes import piece_notes
from evaluation.pianoroll import RollRow
from evaluation.similarity import chroma_similarity, groove_similarity
from experiments.cadenza import (check_perform, check_vary, compose, drum_level, load_drum_performer, load_models,
                                 perform, read_idea, require, write_with_roll)
from experiments.outputs import OutputError, Outputs, named_inputs
from experiments.parts import print_tracks, track_report
from experiments.samples import encode_like_training, playable
from performer import piece_velocities
from pertok import PerTok, PerTokError, TokenType
from training.validate import ConfigError


def vary(config, workdir: str) -> dict:
    """Variations of each input (a file, or every MIDI file of a folder); returns the summary of
    a single file, or {"inputs": [summaries], "skipped": [...]} for a folder."""
    v = config.vary
    require(bool(v.input), "--mode=vary needs an input: --config.vary.input=IN.mid (or a folder)")
    check_vary(v)
    check_perform(config.perform)
    tokenizer = PerTok()
    inputs, names, folder = named_inputs(v.input, "vary.input")
    composer, performer = load_models(config, tokenizer)
    models = (tokenizer, composer, performer, load_drum_performer(config, tokenizer))
    outputs = Outputs(Path(workdir) / "variations", "vary")
    if folder is None:
        return vary_one(config, inputs[0], names[0], models, outputs)
    summaries, skipped = [], []
    for path, name in zip(inputs, names):
        try:
            summaries.append(vary_one(config, path, name, models, outputs))
        except (PerTokError, ConfigError, OutputError) as error:  # one bad file in a folder: say so, go on
            print(f"skipped {path}: {error}")
            skipped.append({"input": str(path), "reason": str(error)})
    return {"inputs": summaries, "skipped": skipped}


def first_bar_with_notes(full: np.ndarray, tokenizer: PerTok, start_bar: int) -> int:
    """The first bar, counting from 1 and from `start_bar` on, that holds a note (else
    `start_bar`, which `read_idea` then reports)."""
    types = tokenizer.token_types(full)
    bar_of_token = np.cumsum(types == TokenType.BAR)
    note_bars = bar_of_token[np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH))]
    later = note_bars[note_bars >= start_bar]
    return int(later.min()) if len(later) else start_bar


def vary_one(config, path: Path, name: str, models: tuple, outputs: Outputs) -> dict:
    """Variations and controls of one input's idea, written to WORKDIR/variations/`name` (or
    that name with a hash, when another input holds it)."""
    v, (tokenizer, composer, performer, drum_performer) = config.vary, models
    full = encode_like_training(str(path), tokenizer)  # unreadable or empty MIDI: a PerTokError naming it
    start_bar = first_bar_with_notes(full, tokenizer, v.start_bar)
    if start_bar != v.start_bar:
        empty = (f"bar {v.start_bar} holds" if start_bar == v.start_bar + 1
                 else f"bars {v.start_bar}-{start_bar - 1} hold")
        print(f"{path}: {empty} no notes; the idea starts at bar {start_bar}")
    idea, note = read_idea(str(path), full, tokenizer, composer, start_bar)
    if note:
        print(note)
    uncut = select_bars(full, tokenizer, start_bar - 1, composer.task.num_bars)[0]
    last = start_bar + composer.task.num_bars - 1
    tracks = track_report(symusic.Score(str(path)), idea=tokenizer.decode(idea, strict=False),
                          whole=tokenizer.decode(uncut, strict=False), bars=f"bars {start_bar}-{last}",
                          drum_performer=None if performer is None else drum_performer is not None)
    print_tracks(path, tracks)
    latent_rng, sample_rng, perform_rng, prior_rng, control_rng = jax.random.split(jax.random.key(config.seed), 5)
    composition = composition_view(idea, tokenizer)
    encoder_ids = idea_example(composition, composer.task.context_length)["encoder_ids"][None]
    mu_1xKxZ, _ = jax.jit(composer.task.model.encode)(composer.params, encoder_ids)
    z_NxKxZ = variation_latents(latent_rng, mu_1xKxZ[0], v.num_variations, v.strength)
    prior_NxKxZ = prior_latents(prior_rng, v.num_variations, composer.task.model.latent_shape)
    prefix = composer.task.model.prefix_ids(conditions_of(composition, tokenizer))
    level = config.perform.velocity or piece_velocities(full, tokenizer)  # the input's loudness
    drums = (drum_performer, drum_level(config, full, tokenizer))  # the input's drum loudness
    scores, controls = [], []
    for z, rng, out in ((z_NxKxZ, sample_rng, scores), (prior_NxKxZ, control_rng, controls)):
        compositions, error_rates = compose(composer, tokenizer, z, rng, v.temperature, v.top_p, prefix)
        performed = perform(performer, tokenizer, compositions, perform_rng, config.perform.temperature,
                            config.perform.rounds, level, config.perform.greedy, config.perform.hold_level, drums)
        out.extend(zip(performed, error_rates))

    name = outputs.claim(name, path)  # an earlier run's files for this input are removed
    out_dir = outputs.root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    num_bars = composer.task.num_bars
    input_score = playable(tokenizer.decode(idea))
    title = f"{path.name}: idea from bar {start_bar}, strength {v.strength}"
    written = write_with_roll(out_dir, "input", input_score, None, num_bars, title)
    reference = RollRow("input", piece_notes(input_score, num_bars))
    pitched = any(not track.is_drum and len(track.notes) for track in input_score.tracks)
    rows = []
    for n, ((score, error_rate), (control, _)) in enumerate(zip(scores, controls)):
        row = {"name": f"variation_{n}", "token_error_rate": error_rate, "notes": 0,
               **_similarity(input_score, score, "", pitched), **_similarity(input_score, control, "control_", pitched)}
        if score is not None and score.note_num():  # an empty variation is reported, not written
            written += write_with_roll(out_dir, row["name"], score, reference, num_bars, title)
            row["notes"] = int(score.note_num())
        rows.append(row)
    summary = summarise(out_dir, rows, str(path), v.strength, [use.line().strip() for use in tracks])
    outputs.record(name, [*written, out_dir / "similarity.json"])
    return summary


def _similarity(input_score, score, prefix: str = "", pitched: bool = True) -> dict[str, float | None]:
    """Chroma and groove similarity to the input (0 for no variation); chroma is None for an
    input of drums only, which has no pitch classes to compare."""
    if score is None or not score.note_num():
        return {f"{prefix}chroma": 0.0 if pitched else None, f"{prefix}groove": 0.0}
    return {f"{prefix}chroma": chroma_similarity(input_score, score) if pitched else None,
            f"{prefix}groove": groove_similarity(input_score, score)}


def _cell(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def summarise(out_dir: Path, rows: list[dict], source: str, strength: float, tracks: list[str] = ()) -> dict:
    """Print each variation's similarity to the input beside its control's; write the JSON."""
    print(f"variations of {source} (strength {strength}) in {out_dir}:")
    print("                  to the input          control (a prior idea, same meter/instruments)")
    for row in rows:
        print(f"  {row['name']}.mid  chroma {_cell(row['chroma'])}  groove {row['groove']:.3f}    "
              f"chroma {_cell(row['control_chroma'])}  groove {row['control_groove']:.3f}  "
              f"notes {row['notes']:3d}  token errors {100 * row['token_error_rate']:.1f}%"
              + ("" if row["notes"] else "  (no notes survived: not written)"))
    means = {key: None if any(r[key] is None for r in rows) else float(np.mean([r[key] for r in rows]))
             for key in ("chroma", "groove", "control_chroma", "control_groove")}
    summary = {"input": source, "strength": strength, "tracks": list(tracks), "variations": rows,
               **{f"mean_{key}": value for key, value in means.items()}}
    print(f"  mean             chroma {_cell(means['chroma'])}  groove {means['groove']:.3f}    "
          f"chroma {_cell(means['control_chroma'])}  groove {means['control_groove']:.3f}"
          + ("" if means["chroma"] is not None else "  (chroma: drums only, no pitch classes)"))
    (out_dir / "similarity.json").write_text(json.dumps(summary, indent=1))
    return summary
