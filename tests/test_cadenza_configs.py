"""The Cadenza configs: commented, locked, variants by name, sweeps that name real keys."""
import os

import pytest

from experiments import config_file, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {name: os.path.join(ROOT, f"experiments/configs/{name}.py")
           for name in ("composer", "performer", "cadenza")}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_field_has_a_comment_and_every_variant_is_locked(name):
    assigned = [line for line in open(CONFIGS[name]).read().splitlines()
                if line.strip().startswith("c.") and " = " in line and "ConfigDict()" not in line]
    assert assigned and all("  # " in line for line in assigned), [l for l in assigned if "  # " not in l]
    for variant in ("tiny", "small", "base"):
        config = config_file.load_config(f"{CONFIGS[name]}:{variant}")
        with pytest.raises(AttributeError):
            config.not_a_field = 1
    with pytest.raises(config_file.ConfigFileError, match="unknown variant"):
        config_file.load_config(f"{CONFIGS[name]}:huge")


@pytest.mark.parametrize("name", ["composer", "performer"])
def test_sweeps_name_existing_keys(name):
    points = sweep.points(f"{CONFIGS[name]}:tiny")
    assert len(points) >= 4 and len({tuple(sorted(p.items())) for p in points}) == len(points)


def test_composer_sweep_covers_the_kl_balance_and_the_latent_layout():
    points = sweep.points(CONFIGS["composer"])
    keys = {key for point in points for key in point}
    assert keys == {"kl.beta_max", "kl.free_bits", "kl.cycles", "model.latents_per_bar",
                    "model.onset_embedding"}
    assert sorted(p["model.latents_per_bar"] for p in points if "model.latents_per_bar" in p) == [0, 1, 2]


def test_small_variants_fit_a_two_core_cpu_and_cadenza_small_points_at_them():
    cadenza = config_file.load_config(f"{CONFIGS['cadenza']}:small")
    assert (cadenza.composer_workdir, cadenza.performer_workdir) == ("runs/composer-small", "runs/performer-small")
    composer, performer = (config_file.load_config(f"{CONFIGS[name]}:small") for name in ("composer", "performer"))
    for config in (composer, performer):
        assert config.model.dtype == "float32" and config.model.d_model <= 128
    # The beta cycles fill the run, and the metrics are logged several times per cycle.
    cycle = (composer.train.steps - composer.kl.warmup_steps) // composer.kl.cycles
    assert composer.kl.beta_max <= 1 and cycle >= 5 * composer.train.log_every


@pytest.mark.parametrize("field, value, named", [
    ("generate.time_signature", "5/3", "generate.time_signature='5/3'"),
    ("generate.programs", "0,piano", "generate.programs='0,piano'"),
    ("generate.num_bars", -1, "generate.num_bars=-1"),
    ("generate.temperature", -0.5, "generate.temperature=-0.5"),
    ("vary.temperature", -1.0, "vary.temperature=-1.0"),
])
def test_check_mode_names_a_bad_vary_or_generate_field_in_one_line(field, value, named, tmp_path, capsys):
    from experiments import cadenza
    from training import ConfigError

    config = config_file.load_config(f"{CONFIGS['cadenza']}:tiny")
    block, leaf = field.split(".")
    cadenza.check(config, str(tmp_path))  # the defaults are valid
    assert "config is valid" in capsys.readouterr().out
    config[block][leaf] = value
    with pytest.raises(ConfigError) as error:
        cadenza.check(config, str(tmp_path))
    assert str(error.value).startswith(named) and "\n" not in str(error.value)


def test_temperature_0_greedy_and_generate_conditions_pass_the_check(tmp_path, capsys):
    from experiments import cadenza

    config = config_file.load_config(f"{CONFIGS['cadenza']}:tiny")
    config.vary.temperature = config.generate.temperature = 0.0
    config.generate.update(time_signature="6/8", programs="33, drums", num_bars=1)
    cadenza.check(config, str(tmp_path))
    assert "config is valid" in capsys.readouterr().out
