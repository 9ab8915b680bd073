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
    for variant in ("tiny", "base"):
        config = config_file.load_config(f"{CONFIGS[name]}:{variant}")
        with pytest.raises(AttributeError):
            config.not_a_field = 1
    with pytest.raises(config_file.ConfigFileError, match="unknown variant"):
        config_file.load_config(f"{CONFIGS[name]}:huge")


@pytest.mark.parametrize("name", ["composer", "performer"])
def test_sweeps_name_existing_keys(name):
    points = sweep.points(f"{CONFIGS[name]}:tiny")
    assert len(points) >= 4 and len({tuple(sorted(p.items())) for p in points}) == len(points)


def test_composer_sweep_covers_latent_size_free_bits_and_the_beta_cycle():
    keys = {key for point in sweep.points(CONFIGS["composer"]) for key in point}
    assert keys == {"model.latent_dim", "kl.free_bits", "kl.cycle_steps"}
