"""The shared transformer-config check names each bad field."""
from types import SimpleNamespace

from layers import transformer_config_errors


def test_good_config_has_no_errors():
    assert transformer_config_errors(SimpleNamespace(d_model=64, num_heads=4, dtype="bfloat16", dropout=0.1)) == []


def test_each_bad_field_is_named_with_the_prefix():
    bad = SimpleNamespace(d_model=30, num_heads=4, dtype="float16", dropout=1.0)
    errors = transformer_config_errors(bad, prefix="model.encoder")
    assert len(errors) == 3
    assert "model.encoder.d_model=30" in errors[0] and "model.encoder.num_heads=4" in errors[0]
    assert "model.encoder.dtype='float16'" in errors[1]
    assert "model.encoder.dropout=1.0" in errors[2]
    assert transformer_config_errors(SimpleNamespace(d_model=8, num_heads=0, dtype="float32", dropout=0))
