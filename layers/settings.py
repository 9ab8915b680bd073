"""Checks of the settings every transformer in the project shares, for config validation."""
from __future__ import annotations

COMPUTE_DTYPES = ("float32", "bfloat16")


def transformer_config_errors(config, prefix: str = "model") -> list[str]:
    """Messages naming each bad field among d_model, num_heads, dtype and dropout (empty if fine).

    Args:
      config: anything with those attributes (e.g. an ml_collections ConfigDict).
      prefix: the config path the messages name (`model.d_model=...`).
    """
    errors = []
    if config.num_heads < 1 or config.d_model % config.num_heads:
        errors.append(f"{prefix}.d_model={config.d_model} must be divisible by "
                      f"{prefix}.num_heads={config.num_heads}")
    if config.dtype not in COMPUTE_DTYPES:
        errors.append(f"{prefix}.dtype={config.dtype!r} must be one of {COMPUTE_DTYPES}")
    if not 0 <= config.dropout < 1:
        errors.append(f"{prefix}.dropout={config.dropout} must lie in [0, 1)")
    return errors
