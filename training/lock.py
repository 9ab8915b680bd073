"""One training per workdir: an exclusive OS lock on WORKDIR/.lock, held for the whole run.

The lock is `flock` on a descriptor kept open, so the OS drops it when the process ends in any
way (`kill -9` included): there is never a stale lock to delete by hand. The file stays behind on
release: deleting a locked file races with a new run that has just opened it.
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import shlex
import socket
import sys
import time

from absl import logging

try:
    import fcntl
except ImportError:  # Windows: no flock; the run goes on unlocked, with a warning
    fcntl = None

LOCK_FILE = ".lock"
_HELD_FDS: set[int] = set()  # descriptors of the locks this process holds


class WorkdirInUseError(RuntimeError):
    """Another training holds the workdir's lock."""


def _close_in_child() -> None:
    """A forked child (a store worker) drops its copy of each lock descriptor, so an orphaned
    child never keeps the lock of a parent killed with -9."""
    for fd in _HELD_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def holder_info() -> dict:
    """Who this process is: written into the lock file for the run that finds it taken."""
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv])}


def describe_holder(text: str) -> str:
    """'pid 1234 on host h, started ... UTC: python ...' from the lock file's text."""
    try:
        info = json.loads(text)
        return (f"pid {info['pid']} on host {info['host']}, started {info['started']}: "
                f"{info['command']}")
    except (ValueError, KeyError, TypeError):
        return "its pid is not written yet"


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds WORKDIR/.lock, or raises WorkdirInUseError at once.

    Args:
      workdir: an existing directory.
      enabled: False takes no lock (the processes of a multi-host run other than the chief).
      name: the lock file's name in `workdir` (another name is another, independent lock).
      holder: what holds it, for the error ("training", "ablation run").
    """

    def __init__(self, workdir: str, enabled: bool = True, name: str = LOCK_FILE, holder: str = "training"):
        self.workdir, self.enabled, self.holder = workdir, enabled, holder
        self.path = os.path.join(workdir, name)
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        if not self.enabled or self._fd is not None:
            return self
        if fcntl is None:
            logging.warning("no fcntl on this platform: %s is not locked; run one %s "
                            "per workdir", self.workdir, self.holder)
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise WorkdirInUseError(
                f"WORKDIR {self.workdir} is in use by another {self.holder} ({holder}); wait for "
                f"it to end or use another --workdir") from None
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            logging.warning("the file system of %s cannot lock files (%s): it is not locked; "
                            "run one %s per workdir", self.workdir, error.strerror, self.holder)
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info()) + "\n").encode(), 0)
        self._fd = fd
        _HELD_FDS.add(fd)
        return self

    def release(self) -> None:
        """Unlock (the file stays); a no-op when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD_FDS.discard(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    @staticmethod
    def _read_holder(fd: int) -> str:
        """The holder's line; it writes it just after locking, so an empty file is retried."""
        for _ in range(20):
            text = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace").strip()
            if text:
                break
            time.sleep(0.05)
        return describe_holder(text)


def training_lock(workdir: str) -> WorkdirLock:
    """The lock of a training in `workdir`, taken by the chief only; every process of a
    multi-host run raises WorkdirInUseError when the chief could not take it."""
    import jax

    lock = WorkdirLock(workdir, enabled=jax.process_index() == 0)
    refused = None
    try:
        lock.acquire()
    except WorkdirInUseError as error:
        refused = error
    if jax.process_count() > 1:  # the other processes stop with the chief, not at a collective
        import numpy as np
        from jax.experimental import multihost_utils

        if bool(multihost_utils.broadcast_one_to_all(np.array(refused is not None))):
            refused = refused or WorkdirInUseError(
                f"WORKDIR {workdir} is in use by another training (the chief process found it "
                f"locked)")
    if refused is not None:
        raise refused
    return lock
