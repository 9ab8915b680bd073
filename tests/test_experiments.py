"""The entry points: config checks, sweep listing, plotting, and a tiny run on the built-in corpus."""
import json
import os
import subprocess
import sys

import pytest

from experiments import config_file, sweep
from experiments.plot import plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LM = os.path.join(ROOT, "experiments/configs/lm.py")


def _main(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_field_of_every_variant_has_a_comment_and_the_config_is_locked():
    source = open(LM).read().splitlines()
    assigned = [line for line in source if line.strip().startswith("c.") and " = " in line
                and "ConfigDict()" not in line]
    assert assigned and all("  # " in line for line in assigned), [
        line for line in assigned if "  # " not in line]
    for variant in ("tiny", "base"):
        config = config_file.load_config(f"{LM}:{variant}")
        with pytest.raises(AttributeError):
            config.train.not_a_field = 1


def test_unknown_override_key_names_the_nearest_valid_keys():
    with pytest.raises(config_file.ConfigFileError, match="'train.stesp'.*nearest valid keys: train.steps"):
        config_file.check_overrides([f"--config={LM}:tiny", "--config.train.stesp=3"])
    with pytest.raises(config_file.ConfigFileError, match="model.d_model"):
        config_file.check_overrides([f"--config={LM}", "--config.d_model=3"])
    with pytest.raises(config_file.ConfigFileError, match="unknown variant 'huge'"):
        config_file.check_overrides([f"--config={LM}:huge"])
    config_file.check_overrides([f"--config={LM}:tiny", "--config.train.steps=3",
                                 "--noconfig.distributed.initialize"])


def test_command_line_refuses_an_unknown_key_without_a_traceback(tmp_path):
    result = _main(f"--config={LM}:tiny", f"--workdir={tmp_path}/run", "--config.train.lerning_rate=1")
    assert result.returncode == 1
    assert "unknown config key 'train.lerning_rate'" in result.stderr
    assert "train.learning_rate" in result.stderr and "Traceback" not in result.stderr


def test_bad_values_are_refused_before_anything_compiles(tmp_path):
    from training import ConfigError, validate
    from experiments.tasks import build_task
    from pertok import PerTok

    config = config_file.load_config(f"{LM}:tiny")
    config.train.batch_size, config.model.num_heads, config.train.warmup_steps = 12, 5, 10**6
    config.data.split = "piece"
    with pytest.raises(ConfigError) as error:
        validate(config, num_devices=8, task=build_task(config, PerTok()))
    message = str(error.value)
    for expected in ("train.batch_size=12", "8 devices", "model.num_heads=5", "train.warmup_steps",
                     "data.split='piece'"):
        assert expected in message
    # On the command line: one message, exit 1, and the workdir is never even created.
    result = _main(f"--config={LM}:tiny", f"--workdir={tmp_path}/run", "--config.train.batch_size=12",
                   env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8"))
    assert result.returncode == 1 and "train.batch_size=12" in result.stderr
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "run")


def test_nan_and_infinite_values_are_refused_by_key(tmp_path):
    from training import ConfigError, validate

    config = config_file.load_config(f"{LM}:tiny")
    validate(config, num_devices=8)  # the shipped values pass
    config.train.b2, config.train.weight_decay = float("nan"), float("nan")
    config.train.learning_rate, config.model.dropout = float("inf"), float("-inf")
    with pytest.raises(ConfigError) as error:
        validate(config, num_devices=8)
    message = str(error.value)
    for key in ("train.b2=nan", "train.weight_decay=nan", "train.learning_rate=inf",
                "model.dropout=-inf"):
        assert f"{key} must be a finite number" in message
    assert message.count("train.b2=") == 1  # not again by its range check
    # Finite values out of range are named by their range checks.
    config = config_file.load_config(f"{LM}:tiny")
    config.train.b1, config.train.b2, config.train.weight_decay = -0.1, 1.0, -0.01
    with pytest.raises(ConfigError) as error:
        validate(config, num_devices=8)
    for expected in ("train.b1=-0.1 must lie in [0, 1)", "train.b2=1.0 must lie in [0, 1)",
                     "train.weight_decay=-0.01 must be >= 0"):
        assert expected in str(error.value)
    # The command line's --mode=check refuses them too, in one message.
    result = _main(f"--config={LM}:tiny", f"--workdir={tmp_path}/run", "--mode=check",
                   "--config.train.b2=nan", "--config.train.learning_rate=inf")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train.b2=nan must be a finite number" in result.stderr
    assert "train.learning_rate=inf must be a finite number" in result.stderr


def test_sweep_lists_one_command_per_point_each_with_its_own_workdir(tmp_path):
    commands = sweep.commands(f"{LM}:tiny", str(tmp_path))
    assert len(commands) == 4
    workdirs = {arg for argv in commands for arg in argv if arg.startswith("--workdir=")}
    assert len(workdirs) == 4
    assert all("--config.train.learning_rate=" in " ".join(argv) for argv in commands)
    result = subprocess.run([sys.executable, "-m", "experiments.sweep", f"{LM}:tiny",
                             f"--workdir_root={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 4
    assert "experiments.main" in result.stdout and "num_layers=2" in result.stdout


def test_plot_draws_the_curves(tmp_path):
    lines = [{"step": s, "loss": 5.0 / s, "learning_rate": 1e-3, "grad_norm": 1.0,
              "tokens_per_s": 1e4, "step_time_s": 0.1} for s in range(1, 20)]
    lines.append({"step": 19, "valid/loss": 0.4})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    path = plot(str(tmp_path))
    assert path.endswith("curves.png") and os.path.getsize(path) > 5000
    with pytest.raises(FileNotFoundError):
        plot(str(tmp_path / "missing"))


def test_tiny_config_trains_resumes_and_evaluates_on_the_builtin_corpus(tmp_path):
    pytest.importorskip("pertok.store")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2 "
               "--xla_backend_optimization_level=0",  # halves compile time
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    common = [f"--config={LM}:tiny", f"--workdir={tmp_path}/run", "--config.data.builtin_pieces=12", "--config.data.valid_fraction=0.25",
              f"--config.data.cache_dir={tmp_path}/cache", "--config.model.context_length=32", "--config.model.num_layers=1",
              "--config.train.log_every=2", "--config.eval.every=4", "--config.checkpoint.every=4",
              "--config.eval.batches=1", "--config.train.warmup_steps=1", "--config.train.steps=4"]
    first = _main(*common, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "step 4/4" in first.stderr and "eval at step 4" in first.stderr
    # A second launch resumes from the checkpoint (already at the last step: nothing to train).
    again = _main(*common, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "restoring the checkpoint at step 4" in again.stderr
    assert "already trained to step 4 of 4" in again.stderr
    evaluated = _main(*common, "--mode=eval", env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "eval at step 4" in evaluated.stderr
    with open(tmp_path / "run/metrics.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert [line["step"] for line in lines if "loss" in line] == [2, 4]
    assert [line["step"] for line in lines if "valid/loss" in line] == [4]  # the training's own
    with open(tmp_path / "run/eval/metrics.jsonl") as f:  # --mode=eval's, apart from the training's file
        assert [json.loads(line)["step"] for line in f if "valid/loss" in line] == [4]
    assert json.load(open(tmp_path / "run/config.json"))["train"]["steps"] == 4
