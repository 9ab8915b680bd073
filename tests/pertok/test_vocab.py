"""Deterministic ids, JSON persistence, and refusal of impossible configs."""
from __future__ import annotations

import numpy as np
import pytest

from pertok import PerTok, PerTokConfig, PerTokConfigError
from tests.pertok.scores import make_score


def test_ids_are_deterministic_and_specials_first():
    a, b = PerTok(), PerTok(PerTokConfig())
    assert a.vocab.names == b.vocab.names
    assert a.vocab.names[:4] == ["PAD", "BOS", "EOS", "MASK"]
    assert (a.pad_id, a.bos_id, a.eos_id, a.mask_id) == (0, 1, 2, 3)
    assert sum(len(r) for r in a.type_ranges.values()) == a.vocab_size
    assert len(set(a.vocab.names)) == a.vocab_size


def test_saved_tokenizer_encodes_identically(tmp_path):
    config = PerTokConfig(time_grids=(4, 3, 6), use_tempos=True, velocity_bins=16)
    tokenizer = PerTok(config)
    tokenizer.save(tmp_path / "tok.json")
    loaded = PerTok.load(tmp_path / "tok.json")
    assert loaded.config == config and loaded.config_hash == tokenizer.config_hash
    score = make_score(480, [(0, False, [(5, 100, 60, 80), (333, 900, 62, 33)])], tempos=((0, 90.0),))
    np.testing.assert_array_equal(loaded.encode(score), tokenizer.encode(score))


def test_config_hash_changes_with_config():
    assert PerTok().config_hash != PerTok(PerTokConfig(velocity_bins=16)).config_hash


def test_describe_lists_sizes_per_type():
    text = PerTok().describe()
    assert "Pitch" in text and "MicroTiming     25" in text and text.strip().endswith(str(PerTok().vocab_size))


@pytest.mark.parametrize("changes, message", [
    (dict(microtiming_bins=24), "odd"),
    (dict(time_grids=(7,)), "divide"),
    (dict(microtiming_range_beats=1 / 24, microtiming_bins=5), "widest grid gap"),
    (dict(duration_steps=((1.0, 1 / 7),)), "whole number of ticks"),
    (dict(pitch_range=(50, 20)), "pitch_range"),
    (dict(ticks_per_quarter=7), "ticks_per_quarter"),
])
def test_impossible_configs_are_refused(changes, message):
    with pytest.raises(PerTokConfigError, match=message):
        PerTokConfig(**changes)


def test_unknown_config_key_is_named():
    with pytest.raises(PerTokConfigError, match="velocity_binz"):
        PerTokConfig.from_dict({"velocity_binz": 3})
