"""Train, evaluate, sample from or vary with one config.

    python -m experiments.main --config=experiments/configs/lm.py:tiny --workdir=runs/tiny \
        [--mode=train|eval|check|generate|vary|perform] [--config.train.steps=100 ...]

Exit status: 0 done; 1 an error (one line); 75 preempted: SIGTERM/Ctrl-C saved a checkpoint,
rerun the same command to resume; 130 Ctrl-C before training started.
"""
import logging as std_logging
import os
import signal
import sys


def _exit_quietly(signum: int, frame) -> None:
    """Ctrl-C while jax loads, the data is read or the step compiles: nothing to save yet, so
    exit at once (status 130), no traceback. An exception could be swallowed where it lands
    (a gc callback); os._exit cannot. Training installs its own handler (save, then stop)."""
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(128 + signum)


signal.signal(signal.SIGINT, _exit_quietly)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import config_file, launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file path.py[:variant]; override fields with --config.key=value.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl and config.json go here.")
_MODE = flags.DEFINE_enum("mode", "train", launch.MODES,
                          "train (resumes from the workdir), eval (latest checkpoint, and the report of "
                          "WORKDIR/samples), check (config only), generate (PerceiverS, LM, Cadenza) "
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
    from training.preemption import Preempted

    try:
        launch.run(_CONFIG.value, _WORKDIR.value, _MODE.value, sys.argv[1:])
    except launch.user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Preempted as stopped:  # a scheduler reruns the command on this status
        print(f"stopped: {stopped} (exit status {stopped.exit_status})", file=sys.stderr)
        sys.exit(stopped.exit_status)
    except KeyboardInterrupt:  # a second Ctrl-C during a save: the user insists
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
