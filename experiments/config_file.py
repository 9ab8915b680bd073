"""Config files `path.py[:variant]`: loading, their keys, and checking command-line overrides."""
from __future__ import annotations

import difflib
import importlib.util
import os
from types import ModuleType

import ml_collections


class ConfigFileError(ValueError):
    """A config file, variant or override key that does not exist."""


def load_module(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise ConfigFileError(f"config file {path!r} not found")
    spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigFileError(f"config file {path!r} has no get_config(arg)")
    return module


def split_spec(spec: str) -> tuple[str, str | None]:
    """'path.py:variant' -> ('path.py', 'variant'); no variant -> None."""
    path, _, arg = spec.partition(":")
    return path, arg or None


def load_config(spec: str) -> ml_collections.ConfigDict:
    path, arg = split_spec(spec)
    try:
        return load_module(path).get_config(arg)
    except ValueError as error:  # an unknown variant, named by the config file
        raise ConfigFileError(f"{path}: {error}") from None


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field, e.g. 'train.learning_rate'."""
    keys = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += flat_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def nearest_keys(key: str, keys: list[str], count: int = 5) -> list[str]:
    """Valid keys closest to `key`: by the whole dotted name, then by its last part."""
    close = difflib.get_close_matches(key, keys, n=count, cutoff=0.5)
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
    close += [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=count, cutoff=0.6)]
    return list(dict.fromkeys(close))[:count] or sorted(keys)[:count]


def override_keys(argv: list[str], flag: str = "config") -> list[str]:
    """Keys of the `--config.a.b=value` arguments (also `--noconfig.a.b` for booleans)."""
    keys = []
    for arg in argv:
        for prefix in (f"--{flag}.", f"--no{flag}."):
            if arg.startswith(prefix):
                keys.append(arg[len(prefix):].split("=", 1)[0])
    return keys


def config_spec(argv: list[str], flag: str = "config") -> str | None:
    """The value of `--config=...` (or `--config ...`) in argv."""
    for index, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def check_overrides(argv: list[str], flag: str = "config") -> None:
    """Raise ConfigFileError for a bad config file/variant or an override key it lacks."""
    spec = config_spec(argv, flag)
    if spec is None:
        return  # absl reports the missing flag
    keys = flat_keys(load_config(spec))
    for key in override_keys(argv, flag):
        if key not in keys:
            raise ConfigFileError(
                f"unknown config key {key!r} (from --{flag}.{key}) in {split_spec(spec)[0]}; "
                f"nearest valid keys: {', '.join(nearest_keys(key, keys))}")
