"""Which config differences block a resume: pure functions of the two flat configs."""
import pytest

from training import resume
from training.validate import ConfigError


def test_changed_values_are_listed_and_free_keys_are_not():
    saved = {"seed": 0, "train.learning_rate": 1e-3, "train.log_every": 10, "model.d_model": 32}
    current = {"seed": 1, "train.learning_rate": 1e-3, "train.log_every": 50, "model.d_model": 64}
    assert resume.config_changes(saved, current) == {"seed": [0, 1], "model.d_model": [32, 64]}
    assert resume.config_changes(saved, current, only_model=True) == {"model.d_model": [32, 64]}


HISTORY = resume.ConfigHistory(added={"model.scale_mask": "sliding", "model.latents_per_bar": 0},
                                renamed={"model.bar_latents": lambda on: {"model.latents_per_bar": int(on)}})


def test_a_key_added_since_the_checkpoint_gets_the_value_of_runs_saved_before_it():
    known = {"model.d_model": 32, "model.scale_mask": "sliding", "model.latents_per_bar": 4, "eval.every": 5}
    saved = resume.saved_as_now({"model.d_model": 32}, known, HISTORY, "old run")
    assert saved == {"model.d_model": 32, "model.scale_mask": "sliding", "model.latents_per_bar": 0}
    # The old run had one latent per idea: resuming it as 4 per bar is a change, not a default.
    assert resume.config_changes(saved, known) == {"model.latents_per_bar": [0, 4]}
    assert resume.config_changes(saved, known, only_model=True) == {"model.latents_per_bar": [0, 4]}


def test_a_renamed_key_is_mapped_by_its_declared_migration():
    known = {"model.d_model": 32, "model.scale_mask": "sliding", "model.latents_per_bar": 4}
    saved = resume.saved_as_now({"model.d_model": 32, "model.bar_latents": True}, known, HISTORY, "old run")
    assert saved["model.latents_per_bar"] == 1 and "model.bar_latents" not in saved


def test_a_key_the_code_does_not_know_or_cannot_fill_is_one_error_naming_it():
    known = {"model.d_model": 32, "model.num_heads": 2, "eval.every": 5}
    with pytest.raises(ConfigError, match="does not know: model.bar_latents; it is a run of other code"):
        resume.saved_as_now({"model.d_model": 32, "model.num_heads": 2, "model.bar_latents": True}, known,
                            resume.ConfigHistory(), "old run")
    with pytest.raises(ConfigError, match="old run was saved without config key.s. model.num_heads, which shape"):
        resume.saved_as_now({"model.d_model": 32}, known, resume.ConfigHistory(), "old run")
    # How often to evaluate is the command's to say: absent, it is not an error.
    assert resume.saved_as_now({"model.d_model": 32, "model.num_heads": 2}, known, resume.ConfigHistory(),
                               "old run") == {"model.d_model": 32, "model.num_heads": 2}


def test_refused_changes_name_the_flag_that_allows_them():
    changes = {"seed": [0, 1]}
    with pytest.raises(ConfigError, match="resume.allow_changes=seed"):
        resume.check_changes(changes, "", ["seed"], 4, "runs/x")
    assert resume.check_changes(changes, "seed", ["seed"], 4, "runs/x") == changes
