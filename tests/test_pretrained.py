"""The shipped weights (`pretrained/`): each loads, matches its manifest's hash and its config's
model, and plays; a damaged or foreign file is one clear error; the musician's command runs."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import pretrained
from pertok import PerTok
from training.validate import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(path.name for path in pretrained.PRETRAINED.iterdir() if pretrained.is_pretrained(path)) \
    if pretrained.PRETRAINED.is_dir() else []


def test_the_cadenza_models_are_shipped():
    assert {"composer-small", "performer-small"} <= set(SHIPPED)
    total = sum((pretrained.PRETRAINED / name / "params.msgpack").stat().st_size for name in SHIPPED)
    assert total <= 25 * 2**20  # the budget for everything shipped


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_loads_and_matches_its_manifest(name):
    folder = pretrained.PRETRAINED / name
    manifest = json.loads((folder / "manifest.json").read_text())
    for field in ("recipe", "trained_at_commit", "data", "parameters", "sha256", "data_licence", "step"):
        assert manifest.get(field), f"{name}: manifest lacks {field}"
    assert pretrained.sha256(folder / "params.msgpack") == manifest["sha256"]
    assert manifest["recipe"] == pretrained.RECIPES[name]
    task, params, config, step = pretrained.load(folder, PerTok(), manifest["task"])
    assert step == manifest["step"] and config.task == manifest["task"]
    assert sum(leaf.size for leaf in __import__("jax").tree.leaves(params)) == manifest["parameters"]


def copy_of(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(pretrained.PRETRAINED / name, folder)
    return folder


@pytest.mark.skipif("composer-small" not in SHIPPED, reason="not shipped")
def test_a_damaged_or_foreign_file_is_one_clear_error(tmp_path):
    damaged = copy_of("composer-small", tmp_path / "damaged")
    data = bytearray((damaged / "params.msgpack").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "params.msgpack").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="damaged or replaced"):
        pretrained.load(damaged, PerTok(), "composer")
    foreign = copy_of("composer-small", tmp_path / "foreign")  # other code: the config builds another model
    config = json.loads((foreign / "config.json").read_text())
    config["model"]["d_model"] *= 2
    (foreign / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="does not fit the composer model"):
        pretrained.load(foreign, PerTok(), "composer")
    with pytest.raises(ConfigError, match="holds a 'composer' model, not a 'performer' one"):
        pretrained.load(copy_of("composer-small", tmp_path / "wrong"), PerTok(), "performer")


def test_the_musicians_command_reports_bad_input_in_one_line(tmp_path):
    """(The README walk runs `python -m cadenza vary` on the bundled example with these models.)"""
    missing = subprocess.run([sys.executable, "-m", "cadenza", "vary", str(tmp_path / "none.mid")],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1 and missing.stderr.strip().startswith("cadenza: error:")
    assert len(missing.stderr.strip().splitlines()) == 1 and "none.mid" in missing.stderr


def test_a_manifest_names_the_most_restrictive_licence_of_its_data():
    assert pretrained.data_licence("../shared/midi/groove").startswith("CC BY 4.0 (Groove MIDI)")
    for sources in ("../shared/midi/asap/performances", "../shared/midi/maestro10,../shared/midi/giantmidi"):
        assert pretrained.data_licence(sources).startswith("CC BY-NC-SA 4.0")
    assert "no third-party data" in pretrained.data_licence("")


def test_the_musicians_compilation_cache_is_per_jaxlib_and_cpu(monkeypatch, tmp_path):
    import platform

    import jax
    import jaxlib

    from cadenza.cli import use_compilation_cache

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    try:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
        assert use_compilation_cache() == str(tmp_path / "mine")  # the user's own setting wins
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        folder = use_compilation_cache()
        if platform.system() == "Linux":
            assert folder.startswith(str(tmp_path / "xdg" / "cadenza" / f"jax-{jaxlib.__version__}-"))
            assert jax.config.jax_compilation_cache_dir == folder
        else:
            assert folder is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
