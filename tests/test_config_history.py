"""A run saved by older code is read as that code trained it, the same way by every loader."""
import json
import os

import pytest

from experiments import config_file
from experiments.config_history import history, saved_config
from training import ConfigError
from training.resume import flatten

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shipped_composer() -> dict:
    with open(os.path.join(ROOT, "pretrained", "composer-small", "config.json")) as handle:
        return json.load(handle)


def test_every_config_file_declares_keys_it_knows():
    declared = history()
    assert declared.added["model.latents_per_bar"] == 0 and declared.added["data.split"] == "file"
    assert declared.renamed["model.bar_latents"](True) == {"model.latents_per_bar": 1}
    every_key = set()
    for name in ("composer", "performer", "perceivers", "lm"):
        every_key |= set(config_file.flat_keys(config_file.load_config(
            os.path.join(ROOT, f"experiments/configs/{name}.py:tiny"))))
    assert set(declared.added) <= every_key  # a declaration of a key nobody has is a typo
    assert not set(declared.renamed) & every_key  # a renamed key is one the code no longer reads


def test_a_config_as_the_old_code_wrote_it_builds_the_old_model():
    saved = _shipped_composer()
    assert saved_config(saved, "shipped").model.latents_per_bar == saved["model"]["latents_per_bar"]
    before_latents_per_bar = json.loads(json.dumps(saved))
    del before_latents_per_bar["model"]["latents_per_bar"], before_latents_per_bar["model"]["onset_embedding"]
    config = saved_config(before_latents_per_bar, "old run")
    assert config.model.latents_per_bar == 0 and config.model.onset_embedding is False
    before_latents_per_bar["model"]["bar_latents"] = True  # the ten minutes it was called bar_latents
    assert saved_config(before_latents_per_bar, "old run").model.latents_per_bar == 1
    # Every key of today's composer config is present, absent ones at the task's defaults.
    known = set(config_file.flat_keys(config_file.load_config(os.path.join(ROOT, "experiments/configs/composer.py"))))
    assert set(flatten(config.to_dict())) == known


def test_a_config_of_other_code_is_one_error_naming_the_key():
    saved = _shipped_composer()
    saved["model"]["attention_sinks"] = 4
    with pytest.raises(ConfigError, match="does not know: model.attention_sinks"):
        saved_config(saved, "their run")
    saved = _shipped_composer()
    del saved["model"]["d_model"]
    with pytest.raises(ConfigError, match="saved without config key.s. model.d_model"):
        saved_config(saved, "their run")
    with pytest.raises(ConfigError, match="task='tagger' is not one of"):
        saved_config({"task": "tagger"}, "their run")
