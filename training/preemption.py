"""SIGTERM/SIGINT become a request to save and stop, agreed on by every process."""
from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The exit status of a run stopped by SIGTERM/SIGINT after saving: EX_TEMPFAIL of sysexits.h,
# "try again later". A scheduler (or `experiments.sweep --run`) reruns the same command.
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; rerun to resume."""

    exit_status = EXIT_PREEMPTED


class StopRequest:
    """Context manager: catches SIGTERM/SIGINT and says at which step to stop.

    A second SIGINT falls through to the default handler so a user can still interrupt a save.
    With several processes the flag is agreed on every `sync_every` steps, so all processes
    stop (and save) at the same step.
    """

    def __init__(self, sync_every: int = 10):
        self.sync_every = max(sync_every, 1)
        self._flag = threading.Event()
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self._flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logging.warning("received %s: saving a checkpoint and stopping",
                        signal.Signals(signum).name)
        self._flag.set()

    def request(self) -> None:
        """Ask to stop as if a signal had arrived (tests, callbacks)."""
        self._flag.set()

    def requested(self, step: int) -> bool:
        """Whether to stop after `step`; collective every `sync_every` steps with many processes."""
        if jax.process_count() == 1:
            return self._flag.is_set()
        if step % self.sync_every:
            return False
        return self.agreed()

    def agreed(self) -> bool:
        """Whether any process was asked to stop (a collective with several processes)."""
        if jax.process_count() == 1:
            return self._flag.is_set()
        flags = multihost_utils.process_allgather(np.array(self._flag.is_set()))
        return bool(np.any(flags))
