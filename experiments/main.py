"""Train, evaluate, sample from or vary with one config.

    python -m experiments.main --config=experiments/configs/lm.py:tiny --workdir=runs/tiny \
        [--mode=train|eval|check|generate|vary] [--config.train.steps=100 ...]
"""
import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import config_file, launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file path.py[:variant]; override fields with --config.key=value.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl and config.json go here.")
_MODE = flags.DEFINE_enum("mode", "train", launch.MODES,
                          "train (resumes from the workdir), eval (latest checkpoint, and the report of "
                          "WORKDIR/samples), check (config only), generate (PerceiverS, Cadenza) "
                          "or vary (Cadenza).")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
    """One line for a bad flag: an unknown config key (with the nearest valid ones), a value of
    the wrong type, a missing or unknown flag; never absl's FATAL banner or a traceback."""
    try:
        config_file.check_overrides(argv)
        return flags.FLAGS(argv)
    except (config_file.ConfigFileError, flags.Error) as error:
        print(f"error: {error}; see --helpshort", file=sys.stderr)
        sys.exit(1)


class _QuietLibraries:
    """Keep orbax's per-save INFO chatter and jax's probing of absent backends ("Unable to
    initialize backend 'tpu'" on every machine without one) out of the log; warnings still show."""

    _CHATTY = ("/orbax/", "xla_bridge.py")

    def filter(self, record) -> bool:
        return record.levelno >= std_logging.WARNING or not any(
            name in record.pathname for name in self._CHATTY)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietLibraries())
    try:
        launch.run(_CONFIG.value, _WORKDIR.value, _MODE.value)
    except launch.user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
