"""Which config differences block a resume: pure functions of the two flat configs."""
import pytest

from training import resume
from training.validate import ConfigError


def test_changed_values_are_listed_and_free_keys_are_not():
    saved = {"seed": 0, "train.learning_rate": 1e-3, "train.log_every": 10, "model.d_model": 32}
    current = {"seed": 1, "train.learning_rate": 1e-3, "train.log_every": 50, "model.d_model": 64}
    assert resume.config_changes(saved, current) == {"seed": [0, 1], "model.d_model": [32, 64]}
    assert resume.config_changes(saved, current, only_model=True) == {"model.d_model": [32, 64]}


def test_a_key_added_since_the_checkpoint_does_not_block_resume():
    saved = {"model.d_model": 32}
    current = {"model.d_model": 32, "model.scale_mask": "sliding"}
    assert resume.config_changes(saved, current) == {}
    assert resume.config_changes(current, saved, only_model=True) == {}  # a key removed


def test_refused_changes_name_the_flag_that_allows_them():
    changes = {"seed": [0, 1]}
    with pytest.raises(ConfigError, match="resume.allow_changes=seed"):
        resume.check_changes(changes, "", ["seed"], 4, "runs/x")
    assert resume.check_changes(changes, "seed", ["seed"], 4, "runs/x") == changes
