"""Cadenza: expressive variations of a user's idea, or new ideas, from a trained Composer and
Performer (`--mode=vary` and `--mode=generate` of `experiments.main`).

The Composer encodes the idea (its composition tokens), samples latents around it, and
decodes new ideas; PerTok repairs their grammar; the Performer fills their MicroTiming and
Velocity; the results are written as MIDI with piano rolls, and compared with the input by
MuseMorphose's chroma and groove similarity.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from composer import (Conditions, IdeaGenerator, finish_idea, named_conditions, prior_latents,
                      select_bars)
from evaluation.notes import piece_notes
from evaluation.pianoroll import RollRow, write_piano_roll_figure
from experiments.parts import fill_by_part
from experiments.restore import restore_latest
from experiments.samples import playable
from pertok import EmptyScoreError, PerTok, TokenType
from performer import PerformanceFiller
from performer.perform import GREEDY
from training.validate import ConfigError


@dataclasses.dataclass(frozen=True)
class Trained:
    """A task and its parameters restored from the latest checkpoint of a workdir."""

    task: Any
    params: Any
    config: ml_collections.ConfigDict
    step: int
    compiled: dict = dataclasses.field(default_factory=dict)  # jitted samplers, built once


_LOADED: dict[tuple[str, str], Trained] = {}  # by (workdir, task): a second mode reuses compilations


def load_trained(workdir: str, tokenizer: PerTok, task_name: str) -> Trained:
    """The latest checkpoint of a `composer` or `performer` training run, on one device (cached;
    by folder and task, so a run of another task is always `restore_latest`'s one clear error)."""
    key = (os.path.abspath(workdir), task_name)
    if key not in _LOADED:
        task, params, config, step = restore_latest(workdir, tokenizer, task_name)
        logging.info("%s: step %d of %s", task_name, step, workdir)
        _LOADED[key] = Trained(task, params, config, step)
    return _LOADED[key]


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def read_idea(path: str, full: np.ndarray, tokenizer: PerTok, composer: Trained,
              start_bar: int) -> tuple[np.ndarray, str]:
    """The idea of a piece's full-view ids (standalone) and a note for the user on how it was cut."""
    total = int((tokenizer.token_types(full) == TokenType.BAR).sum())
    num_bars = composer.task.num_bars
    require(1 <= start_bar <= total,
           f"vary.start_bar={start_bar} is outside the {total} bars of {path}")
    idea, taken, truncated = select_bars(full, tokenizer, start_bar - 1, num_bars,
                                         composer.task.context_length - 1)
    if not np.isin(tokenizer.token_types(idea), (TokenType.PITCH, TokenType.DRUM_PITCH)).any():
        choose = "choose others with --config.vary.start_bar (python -m cadenza: --bars-from)"
        if truncated:  # notes there, but not one fits: a very long note is many Duration tokens
            notes, tokens = _bar_size(full, tokenizer, start_bar)
            raise ConfigError(f"{path}: bar {start_bar} holds {notes} notes written in {tokens:,} tokens (a note "
                              f"held for minutes is written as many Duration tokens), and not one fits in the "
                              f"Composer's ideas of at most {composer.task.context_length - 1} tokens; {choose}")
        raise EmptyScoreError(f"{path}: bars {start_bar}-{start_bar + taken - 1} hold no notes; {choose}")
    note = ""
    if total > taken or truncated:
        last = start_bar + taken - 1
        bars = f"bar {start_bar} is" if last == start_bar else f"bars {start_bar}-{last} are"
        note = (f"{path} has {total} bars; the Composer's ideas are {num_bars} bars of at most "
                f"{composer.task.context_length - 1} tokens, so {bars} varied"
                + (f" (bar {last} cut after its last note that fits)" if truncated else "")
                + "; choose others with --config.vary.start_bar (python -m cadenza: --bars-from)")
    return idea, note


def _bar_size(full: np.ndarray, tokenizer: PerTok, bar: int) -> tuple[int, int]:
    """(notes, composition tokens) of bar `bar` (from 1) of full-view ids."""
    types = tokenizer.token_types(full)
    in_bar = np.cumsum(types == TokenType.BAR) == bar
    composition = ~np.isin(types, (TokenType.MICROTIMING, TokenType.VELOCITY))
    notes = np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH))
    return int((in_bar & notes).sum()), int((in_bar & composition).sum())


def compose(composer: Trained, tokenizer: PerTok, z_NxKxZ: jax.Array, rng: jax.Array,
            temperature: float, top_p: float,
            prefix: np.ndarray | None = None) -> tuple[list[np.ndarray], list[float]]:
    """Decoded, repaired composition ids of each latent and the token error rate of each.

    `prefix` ([P] or [N, P], `model.prefix_ids`) is what the decoder is told before BOS (the
    meter, programs and bar count); None leaves every field open. Temperature 0 is greedy.
    """
    if "generator" not in composer.compiled:
        composer.compiled["generator"] = IdeaGenerator(
            composer.task.model, tokenizer, composer.task.context_length, composer.task.num_bars)
    generator = composer.compiled["generator"]
    sampled = generator(composer.params, z_NxKxZ, rng, temperature, top_p, prefix_BxP=prefix)
    finished = [finish_idea(ids, tokenizer, composer.task.num_bars) for ids in sampled]
    return [ids for ids, _ in finished], [rate for _, rate in finished]


def perform(performer: Trained | None, tokenizer: PerTok, compositions: list[np.ndarray],
            rng: jax.Array, temperature: float, rounds: int = 8, level: Any = None,
            greedy: str = "median", hold_level: bool = True, drums: tuple | None = None) -> list[Any]:
    """Scores of the compositions, performed by the Performer (None where a composition is empty)
    in `rounds` of iterative decoding at dynamic `level` (a MIDI velocity, velocities to match,
    or None); `greedy` and `hold_level` as in `PerformanceFiller`; `drums`: (drum Performer,
    its level) for drum parts (`fill`)."""
    scores: list[Any] = [None] * len(compositions)
    present = [n for n, ids in enumerate(compositions) if len(ids)]
    if not present:
        return scores
    if performer is None:
        for n in present:
            scores[n] = playable(tokenizer.decode(compositions[n], view="composition"))
        return scores
    filled = fill(performer, [compositions[n] for n in present], rng, temperature, rounds, level, greedy, hold_level,
                  drums)
    for n, ids in zip(present, filled):
        scores[n] = playable(tokenizer.decode(ids, strict=False))
    return scores


def fill(performer: Trained, compositions: list[np.ndarray], rng: jax.Array, temperature: float, rounds: int = 8,
         level: Any = None, greedy: str = "median", hold_level: bool = True,
         drums: tuple | None = None) -> list[np.ndarray]:
    """Full-view ids of non-empty compositions: their MicroTiming and Velocity slots filled by the
    Performer, every composition token kept (`PerformanceFiller`, compiled once per setting).
    With `drums` = (drum Performer, its level; None = `level`), drum parts are performed by it
    and the rest by `performer` (`experiments.parts.fill_by_part`)."""

    def fill_part(is_drums: bool, parts: list, levels: list) -> list:
        model = drums[0] if is_drums else performer
        key = ("filler", rounds, greedy, hold_level)
        if key not in model.compiled:
            model.compiled[key] = PerformanceFiller(model.task, rounds, greedy=greedy, hold_level=hold_level)
        return model.compiled[key](model.params, parts, rng, temperature, levels)

    levels = [level] * len(compositions)
    if drums is None or drums[0] is None:
        return fill_part(False, compositions, levels)
    level_of_drums = level if drums[1] is None else drums[1]
    return fill_by_part(fill_part, compositions, performer.task.tokenizer, levels,
                        [level_of_drums] * len(compositions))


def load_models(config, tokenizer: PerTok) -> tuple[Trained, Trained | None]:
    composer = load_trained(config.composer_workdir, tokenizer, "composer")
    performer = (load_trained(config.performer_workdir, tokenizer, "performer")
                 if config.performer_workdir else None)
    return composer, performer


def load_drum_performer(config, tokenizer: PerTok) -> Trained | None:
    """The Performer of drum parts (`drum_performer_workdir`), or None: `performer_workdir`'s plays them."""
    path = config.get("drum_performer_workdir", "")
    return load_trained(path, tokenizer, "performer") if path and config.performer_workdir else None


def drum_level(config, full: np.ndarray | None, tokenizer: PerTok) -> Any:
    """The drum part's dynamic level: `perform.velocity`, else the input's own drum velocities
    (None: the same level as the rest)."""
    if config.perform.velocity or full is None:
        return None
    from experiments.parts import split_drums
    from performer import piece_velocities

    drum_part = split_drums(full, tokenizer)[1]
    return piece_velocities(drum_part, tokenizer) if len(drum_part) else None


def write_with_roll(out_dir: Path, name: str, score, reference: RollRow | None, num_bars: int,
           title: str) -> list[Path]:
    """`name`.mid and `name`.png: its piano roll under the reference's, on shared axes; their paths."""
    paths = [out_dir / f"{name}.mid", out_dir / f"{name}.png"]
    score.dump_midi(str(paths[0]))
    rows = ([reference] if reference else []) + [RollRow(name, piece_notes(score, num_bars))]
    write_piano_roll_figure(paths[1], rows, num_bars, title)
    return paths


def check_vary(v) -> None:
    require(v.num_variations >= 1, f"vary.num_variations={v.num_variations} must be at least 1")
    require(0 <= v.strength <= 1, f"vary.strength={v.strength} must be in [0, 1] (0 = the idea, 1 = unrelated)")
    require(v.temperature >= 0 and 0 < v.top_p <= 1,
           f"vary.temperature={v.temperature} must be >= 0 (0 = greedy) and vary.top_p={v.top_p} in (0, 1]")


def _check_generate(g, tokenizer: PerTok) -> Conditions:
    """The generate fields; returns the conditions they name (num_bars 0 = still open)."""
    require(g.num_ideas >= 1, f"generate.num_ideas={g.num_ideas} must be at least 1")
    require(g.temperature >= 0 and 0 < g.top_p <= 1,
           f"generate.temperature={g.temperature} must be >= 0 (0 = greedy) and "
           f"generate.top_p={g.top_p} in (0, 1]")
    require(g.num_bars >= 0, f"generate.num_bars={g.num_bars} must be >= 0 (0 = the Composer's idea.num_bars)")
    for field in ("time_signature", "programs"):
        try:
            named_conditions(tokenizer, **{"time_signature": "", "programs": "", "num_bars": 0,
                                           field: str(g[field])})
        except ValueError as error:
            raise ConfigError(f"generate.{field}={g[field]!r}: {error}") from None
    return named_conditions(tokenizer, str(g.time_signature), str(g.programs), 0)


def _generate_prefix(g, tokenizer: PerTok, composer: Trained) -> np.ndarray:
    """The decoder's prefix for new ideas: the configured meter, programs and bar count."""
    conditions = _check_generate(g, tokenizer)
    max_bars = composer.task.num_bars
    require(g.num_bars <= max_bars,
           f"generate.num_bars={g.num_bars} is more than the {max_bars} bars of the Composer's ideas")
    conditions = dataclasses.replace(conditions, num_bars=g.num_bars or max_bars)
    return composer.task.model.prefix_ids(conditions)


def check_perform(p) -> None:
    require(p.rounds >= 1 and 0 <= p.velocity <= 127,
           f"perform.rounds={p.rounds} must be >= 1 and perform.velocity={p.velocity} in 0-127 (0 = auto)")
    require(p.greedy in GREEDY, f"perform.greedy={p.greedy!r} must be one of {GREEDY}")


def check(config, workdir: str) -> None:
    """`--mode=check`: the vary and generate fields, and whether the two trained workdirs exist."""
    del workdir  # Cadenza writes into it only when it varies or generates
    check_vary(config.vary)
    _check_generate(config.generate, PerTok())
    check_perform(config.perform)
    for name in ("composer_workdir", "performer_workdir", "drum_performer_workdir"):
        path = config.get(name, "")
        if name == "drum_performer_workdir" and not path:
            continue
        found = bool(path) and os.path.isdir(os.path.join(path, "checkpoints"))
        print(f"{name}={path!r}: " + ("a trained run" if found else
              "no checkpoints yet (train it first, see experiments/configs/cadenza.py)"))
    print("config is valid")


def generate(config, workdir: str) -> dict:
    """Write `generate.num_ideas` performed ideas from the prior under WORKDIR/ideas."""
    g = config.generate
    tokenizer = PerTok()
    _check_generate(g, tokenizer)
    check_perform(config.perform)
    composer, performer = load_models(config, tokenizer)
    prefix = _generate_prefix(g, tokenizer, composer)
    latent_rng, sample_rng, perform_rng = jax.random.split(jax.random.key(config.seed), 3)
    z_NxKxZ = prior_latents(latent_rng, g.num_ideas, composer.task.model.latent_shape)
    compositions, error_rates = compose(composer, tokenizer, z_NxKxZ, sample_rng, g.temperature, g.top_p,
                                        prefix)
    scores = perform(performer, tokenizer, compositions, perform_rng, config.perform.temperature,
                     config.perform.rounds, config.perform.velocity or None, config.perform.greedy,
                     config.perform.hold_level, (load_drum_performer(config, tokenizer), None))
    out_dir = Path(workdir) / "ideas"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (score, error_rate) in enumerate(zip(scores, error_rates)):
        notes = 0 if score is None else int(score.note_num())
        if score is not None:
            write_with_roll(out_dir, f"idea_{n}", score, None, composer.task.num_bars,
                   f"idea {n} from the prior (seed {config.seed})")
        rows.append({"name": f"idea_{n}", "token_error_rate": error_rate, "notes": notes})
        print(f"  idea_{n}.mid  notes {notes:3d}  token errors {100 * error_rate:.1f}%"
              + ("" if notes else "  (no notes survived: not written)"))
    print(f"{sum(r['notes'] > 0 for r in rows)} ideas in {out_dir}")
    summary = {"ideas": rows}
    (out_dir / "ideas.json").write_text(json.dumps(summary, indent=1))
    return summary
