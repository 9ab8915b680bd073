"""End to end on the built-in corpus: train the Composer and the Performer for a few steps,
then vary a piece and generate ideas; bad input gets one clear error."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
    inputs.mkdir()
    for name in ("piece_0000_piano", "piece_0001_drums"):
        shutil.copy(root / "cache" / "builtin-8" / f"{name}.mid", inputs / f"{name}.mid")
    (inputs / "broken.mid").write_bytes(b"not a MIDI file")
    out = tmp_path / "out"
    stale = out / "variations" / "piece_0000_piano" / "variation_9.mid"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    with cadenza.unlocked():
        cadenza.vary.input, cadenza.vary.num_variations = str(inputs), 1
    summary = launch.run(cadenza, str(out), "vary")
    assert [Path(s["input"]).stem for s in summary["inputs"]] == ["piece_0000_piano", "piece_0001_drums"]
    assert [Path(s["input"]).name for s in summary["skipped"]] == ["broken.mid"]
    assert not stale.exists()
    for stem in ("piece_0000_piano", "piece_0001_drums"):
        assert (out / "variations" / stem / "input.mid").is_file()
        assert (out / "variations" / stem / "similarity.json").is_file()
    piano, drums = summary["inputs"]
    assert piano["mean_chroma"] is not None
    assert drums["mean_chroma"] is None and drums["mean_groove"] is not None  # no pitch classes in drums


def test_perform_keeps_every_note_and_plays_a_flat_export(run, tmp_path):
    """A quantized export at one velocity: the same notes come back, played by the Performer."""
    import symusic

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


def test_a_band_piece_reports_its_tracks_and_its_drums_go_to_the_drum_performer(run, tmp_path):
    import copy

    import symusic

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
    import symusic
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
