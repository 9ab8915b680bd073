"""End to end on the built-in corpus: train the Composer and the Performer for a few steps,
then vary a piece and generate ideas; bad input gets one clear error."""
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import symusic

from experiments import config_file, launch
from composer import composition_view
from experiments.vary import first_bar_with_notes
from pertok import EmptyScoreError, MidiParseError, PerTok, TokenType
from training import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_VARIATIONS = 3


def _config(spec: str, **overrides):
    config = config_file.load_config(os.path.join(ROOT, spec))
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        block = config
        for name in path:
            block = block[name]
        block[leaf] = value  # a locked config refuses unknown keys
    return config


def _training_overrides(cache_dir: str) -> dict:
    return {"data.cache_dir": cache_dir, "data.builtin_pieces": 8, "data.store_workers": 1,
            "data.valid_fraction": 0.0, "train.steps": 3, "train.batch_size": 8,
            "train.warmup_steps": 1, "train.log_every": 1, "eval.every": 0, "checkpoint.every": 3,
            "model.d_model": 16, "model.num_heads": 2, "model.mlp_dim": 32}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both models trained for 3 steps, then 3 variations of a band piece and 2 new ideas."""
    root = tmp_path_factory.mktemp("cadenza")
    cache = str(root / "cache")
    composer = _config("experiments/configs/composer.py:tiny", **_training_overrides(cache), **{
        "model.encoder_layers": 1, "model.decoder_layers": 1, "model.latent_dim": 4,
        "model.context_length": 64})
    performer = _config("experiments/configs/performer.py:tiny", **_training_overrides(cache), **{
        "model.num_layers": 1, "model.context_length": 64})
    launch.run(composer, str(root / "composer"), "train")
    launch.run(performer, str(root / "performer"), "train")
    input_path = str(root / "cache" / "builtin-8" / "piece_0002_band.mid")
    cadenza = _config("experiments/configs/cadenza.py:tiny", **{
        "composer_workdir": str(root / "composer"), "performer_workdir": str(root / "performer"),
        "vary.input": input_path, "vary.num_variations": NUM_VARIATIONS, "vary.strength": 0.5,
        "generate.num_ideas": 2, "generate.time_signature": "3/4", "generate.programs": "33"})
    summary = launch.run(cadenza, str(root / "out"), "vary")
    ideas = launch.run(cadenza, str(root / "out"), "generate")
    return root, cadenza, summary, ideas


def test_vary_writes_performed_decodable_variations_and_their_similarity(run):
    root, _, summary, _ = run
    out = root / "out" / "variations" / "piece_0002_band"
    assert json.loads((out / "similarity.json").read_text()) == summary
    assert (out / "input.mid").is_file() and (out / "input.png").is_file()
    written = [row for row in summary["variations"] if row["notes"] > 0]
    assert len(summary["variations"]) == NUM_VARIATIONS and written  # grammar-constrained sampling
    tokenizer = PerTok()
    for row in written:
        assert (out / f"{row['name']}.png").stat().st_size > 1000
        ids = tokenizer.encode(out / f"{row['name']}.mid")  # a MIDI file with notes
        tokenizer.decode(ids, strict=True)
        assert (tokenizer.token_types(ids) == TokenType.BAR).sum() <= 2  # an idea: 2 bars (tiny)
        assert 0 <= row["chroma"] <= 1 and 0 <= row["groove"] <= 1
        assert 0 <= row["control_chroma"] <= 1 and 0 <= row["control_groove"] <= 1
        assert row["token_error_rate"] == 0.0
    # Performed: the Performer chose the velocities, not PerTok's composition default of 64.
    velocities = {int(n.velocity) for row in written
                  for track in PerTok().decode(tokenizer.encode(out / f"{row['name']}.mid")).tracks
                  for n in track.notes}
    assert velocities != {64}


def test_vary_a_folder_writes_each_input_in_its_own_folder_and_skips_bad_files(run, tmp_path):
    root, cadenza, _, _ = run
    inputs = tmp_path / "inputs"
    (inputs / "drums").mkdir(parents=True)
    builtin = root / "cache" / "builtin-8"
    shutil.copy(builtin / "piece_0000_piano.mid", inputs / "piece_0000_piano.mid")
    shutil.copy(builtin / "piece_0001_drums.mid", inputs / "drums" / "x.mid")
    shutil.copy(builtin / "piece_0000_piano.mid", inputs / "drums_x.mid")  # same name as drums/x once flattened
    shutil.copy(builtin / "piece_0000_piano.mid", inputs / "...mid")  # its stem is '..'
    (inputs / "broken.mid").write_bytes(b"not a MIDI file")
    out = tmp_path / "out"
    theirs = out / "variations" / "piece_0000_piano" / "variation_9.mid"  # a folder vary did not make
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"someone else's")
    with cadenza.unlocked():
        cadenza.vary.input, cadenza.vary.num_variations = str(inputs), 1
    summary = launch.run(cadenza, str(out), "vary")
    assert [Path(s["input"]).name for s in summary["inputs"]] == ["...mid", "x.mid", "drums_x.mid",
                                                                  "piece_0000_piano.mid"]
    assert [Path(s["input"]).name for s in summary["skipped"]] == ["broken.mid"]
    assert theirs.read_bytes() == b"someone else's"
    folders = sorted(p.name for p in (out / "variations").iterdir() if p.is_dir())
    assert len(folders) == 5 and "piece_0000_piano" in folders  # 4 inputs, and the folder it left alone
    assert "input" in folders and sum(f.startswith("drums_x-") for f in folders) == 2
    for folder in folders:
        if folder != "piece_0000_piano":
            assert (out / "variations" / folder / "input.mid").is_file()
            assert json.loads((out / "variations" / folder / "similarity.json").read_text())["input"]
    drums = summary["inputs"][1]
    assert drums["mean_chroma"] is None and drums["mean_groove"] is not None  # no pitch classes in drums
    assert summary["inputs"][0]["mean_chroma"] is not None
    again = launch.run(cadenza, str(out), "vary")  # the same inputs: the same folders, replaced
    assert sorted(p.name for p in (out / "variations").iterdir() if p.is_dir()) == folders
    assert [s["input"] for s in again["inputs"]] == [s["input"] for s in summary["inputs"]]
    assert theirs.read_bytes() == b"someone else's"


def test_perform_keeps_every_note_and_plays_a_flat_export(run, tmp_path):
    """A quantized export at one velocity: the same notes come back, played by the Performer."""

    root, cadenza, _, _ = run
    tokenizer = PerTok()
    ids = tokenizer.encode(root / "cache" / "builtin-8" / "piece_0000_piano.mid")
    flat = tokenizer.decode(composition_view(ids, tokenizer), view="composition")  # on the grid
    for track in flat.tracks:
        for note in track.notes:
            note.velocity = 100
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    flat.dump_midi(str(inputs / "export.mid"))
    (inputs / "broken.mid").write_bytes(b"not a MIDI file")
    with cadenza.unlocked():
        cadenza.perform.input = str(inputs)
    summary = launch.run(cadenza, str(tmp_path / "out"), "perform")
    assert [Path(row["input"]).name for row in summary["performed"]] == ["export.mid"]
    assert [Path(row["input"]).name for row in summary["skipped"]] == ["broken.mid"]
    performed = symusic.Score(summary["performed"][0]["output"])
    # (The composition tokens are checked equal inside perform; in the MIDI file, durations of
    # overlapping notes of one pitch are ambiguous, so pitches and onsets are compared here.)
    pitches = lambda score: sorted(int(n.pitch) for t in score.tracks for n in t.notes)  # noqa: E731
    assert pitches(performed) == pitches(flat) and summary["performed"][0]["notes"] == flat.note_num()
    step = tokenizer.config.microtiming_step_ticks * (tokenizer.config.microtiming_bins // 2)
    onsets = lambda score: sorted(int(n.time) for t in score.tracks for n in t.notes)  # noqa: E731
    assert np.all(np.abs(np.subtract(onsets(performed), onsets(flat))) <= step)  # within microtiming
    assert abs(summary["performed"][0]["velocity_mean"] - 100) <= 2  # the input's level, held
    assert (tmp_path / "out" / "performed" / "export.png").stat().st_size > 1000
    # Another file of the same name, performed later into the same workdir, loses nothing.
    other = tmp_path / "elsewhere" / "export.mid"
    other.parent.mkdir()
    shutil.copy(root / "cache" / "builtin-8" / "piece_0000_piano.mid", other)
    with cadenza.unlocked():
        cadenza.perform.input = str(other)
    later = launch.run(cadenza, str(tmp_path / "out"), "perform")["performed"][0]
    assert Path(later["output"]).name.startswith("export-") and (tmp_path / "out" / "performed" / "export.mid").is_file()
    kept = json.loads((tmp_path / "out" / "performed" / "performed.json").read_text())
    assert [Path(row["input"]).name for row in kept["performed"]] == ["export.mid", "export.mid"]
    assert [Path(row["input"]).name for row in kept["skipped"]] == ["broken.mid"]


def test_a_band_piece_reports_its_tracks_and_its_drums_go_to_the_drum_performer(run, tmp_path):
    root, cadenza, summary, _ = run
    assert len(summary["tracks"]) == 4 and sum("drums" in line for line in summary["tracks"]) == 1
    assert all("bars 1-2" in line for line in summary["tracks"])
    band = root / "cache" / "builtin-8" / "piece_0002_band.mid"
    config = copy.deepcopy(cadenza)
    with config.unlocked():
        config.perform.input, config.drum_performer_workdir = str(band), str(root / "performer")
    row = launch.run(config, str(tmp_path / "out"), "perform")["performed"][0]
    assert row["notes"] == symusic.Score(str(band)).note_num()  # every note (composition checked inside)
    assert [line.endswith("drum Performer") for line in row["tracks"]] == [False, False, True, False]


def test_an_empty_variation_is_reported_not_written_and_the_control_draws_its_own_keys(run, tmp_path, monkeypatch):
    """A variation whose notes all fail is a row with 0 notes and no file; the control's prior
    latent and its sampling do not share one random key."""
    import experiments.vary as vary_module

    _, cadenza, _, _ = run
    config = copy.deepcopy(cadenza)
    with config.unlocked():
        config.vary.input = str(run[0] / "cache" / "builtin-8" / "piece_0000_piano.mid")
        config.vary.num_variations, config.vary.start_bar = 2, 1
    keys = {}
    real_prior, real_compose = vary_module.prior_latents, vary_module.compose

    def prior(rng, *args):
        keys["prior"] = jax.random.key_data(rng).tolist()
        return real_prior(rng, *args)

    def compose(composer, tokenizer, z, rng, *args):
        keys.setdefault("compose", []).append(jax.random.key_data(rng).tolist())
        return real_compose(composer, tokenizer, z, rng, *args)

    def perform(performer, tokenizer, compositions, *args):
        return [symusic.Score(480)] + [tokenizer.decode(c) for c in compositions[1:]]  # the first: no notes

    monkeypatch.setattr(vary_module, "prior_latents", prior)
    monkeypatch.setattr(vary_module, "compose", compose)
    monkeypatch.setattr(vary_module, "perform", perform)
    summary = launch.run(config, str(tmp_path / "out"), "vary")
    first = summary["variations"][0]
    assert first["notes"] == 0 and first["chroma"] == 0.0 and first["groove"] == 0.0
    folder = tmp_path / "out" / "variations" / "piece_0000_piano"
    assert not (folder / "variation_0.mid").exists() and not (folder / "variation_0.png").exists()
    assert (folder / "input.mid").is_file()
    assert keys["prior"] not in keys["compose"]  # the controls' sampling key is not the prior's


def _as_old_code_saved_it(workdir: Path, edit) -> None:
    """Rewrite a run's saved configs (config.json and each checkpoint's) with `edit(config)`."""
    paths = [workdir / "config.json", *(workdir / "checkpoints").glob("*/config/metadata")]
    for path in paths:
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(json.dumps(config))


def test_a_run_saved_by_older_code_is_one_model_for_vary_eval_and_resume(run, tmp_path):
    """Saved before model.latents_per_bar (one latent per idea): vary builds that model, and eval
    or resume with today's default of 4 per bar is refused, not silently another model."""
    from experiments.cadenza import load_trained

    root, _, _, _ = run
    old = tmp_path / "composer-old"
    shutil.copytree(root / "composer", old)
    _as_old_code_saved_it(old, lambda config: config["model"].pop("latents_per_bar"))
    assert load_trained(str(old), PerTok(), "composer").config.model.latents_per_bar == 0
    composer = _config("experiments/configs/composer.py:tiny", **_training_overrides(str(root / "cache")), **{
        "model.encoder_layers": 1, "model.decoder_layers": 1, "model.latent_dim": 4, "model.context_length": 64})
    for mode in ("eval", "train"):
        with pytest.raises(ConfigError, match=r"model.latents_per_bar: 0 -> 4"):
            launch.run(composer, str(old), mode)
    with composer.unlocked():
        composer.model.latents_per_bar = 0  # the saved model, named: eval builds what vary built
        composer.data.valid_fraction = 0.5  # something to evaluate on (eval compares only the model)
    assert np.isfinite(launch.run(composer, str(old), "eval")["valid/loss"])
    _as_old_code_saved_it(old, lambda config: config["model"].update(attention_sinks=4))
    with pytest.raises(ConfigError, match="does not know: model.attention_sinks"):
        launch.run(composer, str(old), "eval")


def test_a_run_of_the_other_task_is_refused_even_when_loaded_before(run):
    from experiments.cadenza import load_trained

    root = run[0]
    load_trained(str(root / "composer"), PerTok(), "composer")  # vary loaded it: it is cached
    with pytest.raises(ConfigError, match="holds a 'composer' model, not a 'performer' one"):
        load_trained(str(root / "composer"), PerTok(), "performer")


def test_perform_without_an_input_is_one_clear_error(run):
    _, cadenza, _, _ = run
    with cadenza.unlocked():
        cadenza.perform.input = ""
    with pytest.raises(ConfigError, match="--mode=perform needs an input"):
        launch.run(cadenza, "unused", "perform")


def test_an_idea_that_starts_with_empty_bars_moves_to_the_first_bar_with_notes():
    tokenizer = PerTok()
    ids = tokenizer.vocab.ids
    note = [ids[n] for n in ("Program_0", "Pitch_60", "MicroTiming_0", "Velocity_66", "Duration_960")]
    full = np.array([ids["Bar"], ids["Bar"], ids["Bar"], *note, ids["Bar"], *note])
    assert first_bar_with_notes(full, tokenizer, 1) == 3
    assert first_bar_with_notes(full, tokenizer, 4) == 4
    assert first_bar_with_notes(full, tokenizer, 5) == 5  # none later: read_idea reports it


def test_a_bar_whose_notes_do_not_fit_is_told_apart_from_an_empty_bar(tmp_path):
    """A 10-hour note is thousands of Duration tokens: its bar holds notes that do not fit."""
    from types import SimpleNamespace

    from experiments.cadenza import read_idea

    score, track = symusic.Score(480), symusic.Track(program=0)
    track.notes.append(symusic.Note(0, 480 * 120 * 60 * 10, 60, 80))  # 10 hours at 120 bpm
    for beat, pitch in enumerate((64, 67, 72), start=1):
        track.notes.append(symusic.Note(480 * beat, 480, pitch, 80))
    score.tracks.append(track)
    path = tmp_path / "drone.mid"
    score.dump_midi(str(path))
    tokenizer = PerTok()
    full = tokenizer.encode(path)
    composer = SimpleNamespace(task=SimpleNamespace(num_bars=2, context_length=192))
    with pytest.raises(ConfigError, match=r"bar 1 holds 4 notes written in [\d,]+ tokens .* at most 191 tokens"):
        read_idea(str(path), full, tokenizer, composer, 1)


def test_generate_writes_ideas_from_the_prior_in_the_configured_meter_and_program(run):
    root, _, _, ideas = run
    rows = ideas["ideas"]
    assert len(rows) == 2 and any(row["notes"] for row in rows)
    tokenizer = PerTok()
    for row in rows:
        if row["notes"]:
            ids = tokenizer.encode(root / "out" / "ideas" / f"{row['name']}.mid")
            types = tokenizer.token_types(ids)
            # generate.time_signature=3/4 and programs=33 reached the decoder and its grammar.
            assert {tokenizer.vocab.names[i] for i in ids[types == TokenType.TIME_SIG]} == {"TimeSig_3/4"}
            assert {tokenizer.vocab.names[i] for i in ids[types == TokenType.PROGRAM]} == {"Program_33"}


def test_bad_input_gets_one_clear_error(run, tmp_path):
    _, cadenza, _, _ = run
    not_midi, no_notes = tmp_path / "notes.txt", tmp_path / "silent.mid"
    not_midi.write_text("not a MIDI file")
    symusic.Score(480).dump_midi(str(no_notes))
    cases = [(str(not_midi), MidiParseError, "notes.txt"), (str(no_notes), EmptyScoreError, "silent.mid"),
             (str(tmp_path / "missing.mid"), FileNotFoundError, "missing.mid")]
    for path, error, named in cases:
        with cadenza.unlocked():
            cadenza.vary.input = path
        with pytest.raises(error, match=named):
            launch.run(cadenza, str(tmp_path / "out"), "vary")
        assert issubclass(error, launch.user_errors())
    with cadenza.unlocked():
        cadenza.vary.input = str(run[0] / "cache" / "builtin-8" / "piece_0000_piano.mid")
        cadenza.vary.start_bar = 999
    with pytest.raises(ConfigError, match="start_bar=999"):
        launch.run(cadenza, str(tmp_path / "out"), "vary")


def test_command_line_reports_an_untrained_workdir_in_one_line(tmp_path):
    from pertok.synthetic import generate_score

    generate_score(0).dump_midi(str(tmp_path / "idea.mid"))
    result = subprocess.run(
        [sys.executable, "-m", "experiments.main", "--mode=vary",
         "--config=experiments/configs/cadenza.py:tiny", f"--workdir={tmp_path}",
         f"--config.composer_workdir={tmp_path / 'nowhere'}", f"--config.vary.input={tmp_path / 'idea.mid'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "holds no checkpoints; train one first" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    np.testing.assert_equal(result.stdout, "")
