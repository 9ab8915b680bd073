"""Orbax checkpoints of the train state, its config and a manifest of array checksums.

`WORKDIR/checkpoints/<step>/{state,config,manifest}`: the manifest holds a content checksum of
every saved array (computed on the device at save, checked again after each restore) and the
hash of the training data. Nothing here deletes a checkpoint except orbax's `keep` rotation:
a damaged one is moved to `WORKDIR/damaged-checkpoints/`, a failed save removes only itself.
"""
from __future__ import annotations

import asyncio
import gc
import glob
import io
import logging
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from training.state import TrainState

_REGISTERED = False  # the array handler below is registered once per process
_QUIET = False  # drop_closed_loop_reports() has run
_MANIFEST_FORMAT = 1
_PARTIAL_SUFFIX = ".orbax-checkpoint-tmp"  # orbax writes a step here, then renames it


class CheckpointError(Exception):
    """A checkpoint that cannot be saved, restored or verified; the message is one line."""


class Checkpoints:
    """Saves and restores train states, written synchronously.

    Synchronous saves keep donation safe (the next step may reuse the saved buffers) and make
    a save on SIGTERM complete before the process exits.
    """

    def __init__(self, workdir: str, keep: int):
        _save_each_array_from_one_replica()
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "config", "manifest"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, state: TrainState, config: dict, data_hash: str = "") -> int:
        """Save `state` under its step with `config` and a checksum manifest; returns the step.

        An I/O error (a full disk, a lost mount) removes the partial save and raises a one-line
        CheckpointError; the checkpoints already there are untouched.
        """
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return step
        manifest = {"format": _MANIFEST_FORMAT, "checksums": checksums(state), "data": data_hash}
        drop_closed_loop_reports()
        try:
            with _QuietSave():  # its threads print tracebacks; the error below says it once
                self._manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
                    manifest=ocp.args.JsonSave(manifest)))
                self._manager.wait_until_finished()
        except Exception as error:  # orbax and tensorstore raise plain Exceptions for I/O errors
            self._remove_failed_save(step)
            last = self.latest_step()
            raise CheckpointError(
                f"could not save the checkpoint of step {step} in {self.directory}: "
                f"{one_line(error)}; the partial save was removed and the last good checkpoint "
                f"({'none' if last is None else f'step {last}'}) is kept") from None
        return step

    def restore(self, abstract: TrainState, shardings, step: int | None = None) -> TrainState:
        """The state at `step` (default latest), placed into `shardings` and verified.

        Args:
          abstract: `jax.eval_shape` of the train state, so optax states keep their types.
        Raises:
          CheckpointError: (one line) the step cannot be restored or fails its checksums.
        """
        step = self.latest_step() if step is None else step
        target = jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            abstract, shardings)
        drop_closed_loop_reports()
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
        except Exception as error:  # a truncated or missing file, a damaged index
            quiet_abandoned_io()
            raise CheckpointError(f"checkpoint {self.path(step)} cannot be restored: "
                                  f"{one_line(error)}") from None
        self._verify(step, restored)
        return restored

    def saved_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return restored["config"]

    def manifest(self, step: int) -> dict | None:
        """The checksum manifest of `step`, or None for a checkpoint written without one."""
        if not os.path.isdir(os.path.join(self.path(step), "manifest")):
            return None
        restored = self._manager.restore(
            step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore()))
        return restored["manifest"]

    def _verify(self, step: int, state: TrainState) -> None:
        try:
            manifest = self.manifest(step)
        except Exception as error:
            raise CheckpointError(f"checkpoint {self.path(step)} has an unreadable checksum "
                                  f"manifest: {one_line(error)}") from None
        if manifest is None:
            absl_logging.warning("the checkpoint at step %d has no checksums (an older format): "
                                 "restored unverified", step)
            return
        expected, got = manifest["checksums"], checksums(state)
        wrong = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        if wrong:
            raise CheckpointError(
                f"checkpoint {self.path(step)} is damaged: {len(wrong)} of {len(expected)} arrays "
                f"differ from their saved checksums ({', '.join(wrong[:3])}"
                f"{', ...' if len(wrong) > 3 else ''})")

    def set_aside(self, step: int) -> str:
        """Move a damaged checkpoint to WORKDIR/damaged-checkpoints/STEP-<time> (never deleted),
        so the step can be trained and saved again; returns the new path."""
        target = os.path.join(self.workdir, "damaged-checkpoints", f"{step}-{int(time.time())}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(self.path(step), target)
        self.reload()
        return target

    def reload(self) -> None:
        """Read the list of steps from disk again (after another process changed it)."""
        self._manager.reload()

    def remove_partial_saves(self) -> list[str]:
        """Delete the temporary folders of saves a killed process never finished."""
        partial = glob.glob(os.path.join(glob.escape(self.directory), f"*{_PARTIAL_SUFFIX}*"))
        for path in partial:
            shutil.rmtree(path, ignore_errors=True)
        return partial

    def _remove_failed_save(self, step: int) -> None:
        for path in glob.glob(os.path.join(glob.escape(self.directory), f"{step}{_PARTIAL_SUFFIX}*")):
            shutil.rmtree(path, ignore_errors=True)
        if os.path.isdir(self.path(step)):  # failed after the rename: it is ours, never complete
            shutil.rmtree(self.path(step), ignore_errors=True)
        try:
            self._manager.reload()
        except Exception:  # the disk may still be full; the next start reloads anyway
            pass

    def close(self) -> None:
        self._manager.close()


class _QuietSave:
    """While saving, drop orbax's ERROR records and hold what is printed to stderr: a failed
    save's writer threads print tracebacks as they end. After a success the held text is
    printed; after a failure it is dropped, the CheckpointError that follows says it once."""

    def __enter__(self) -> None:
        logging.getLogger("absl").addFilter(self)
        self._stderr, sys.stderr = sys.stderr, io.StringIO()

    def __exit__(self, exc_type, *exc) -> None:
        held = sys.stderr
        try:
            if exc_type is not None:
                quiet_abandoned_io()
        finally:
            sys.stderr = self._stderr
            logging.getLogger("absl").removeFilter(self)
        if exc_type is None and held.getvalue():
            sys.stderr.write(held.getvalue())

    @staticmethod
    def filter(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or "/orbax/" not in record.pathname


def one_line(error: BaseException, head: int = 60, tail: int = 140) -> str:
    """An error message in one line, its middle cut. Tensorstore's run to pages: the code comes
    first (RESOURCE_EXHAUSTED), the operating system's reason last or on a later line."""
    lines = [line.strip() for line in str(error).strip().splitlines()] or [type(error).__name__]
    reason = next((line for line in lines[1:] if "os_error_code" in line or "Errno" in line), "")
    text = f"{lines[0]} {reason}".strip()
    return text if len(text) <= head + tail + 5 else f"{text[:head]} ... {text[-tail:]}"


def drop_closed_loop_reports() -> None:
    """Drop the reports of orbax's abandoned asyncio work: tensorstore callbacks that land on a
    closed event loop (as unraisable, or through sys.excepthook) and coroutines never awaited.
    They follow a failed save or restore, sometimes while it is still failing, so the filters go
    in before each restore and save (once per process); any other report passes through."""
    global _QUIET
    if _QUIET:
        return
    _QUIET = True
    logging.getLogger("asyncio").addFilter(lambda record: "never retrieved" not in record.getMessage())
    previous_unraisable, previous_excepthook = sys.unraisablehook, sys.excepthook

    def unraisable_hook(unraisable) -> None:
        if not (asyncio.iscoroutine(unraisable.object) or "Event loop is closed" in str(unraisable.exc_value)):
            previous_unraisable(unraisable)

    def excepthook(kind, value, traceback) -> None:
        if not (kind is RuntimeError and "Event loop is closed" in str(value)):
            previous_excepthook(kind, value, traceback)

    sys.unraisablehook, sys.excepthook = unraisable_hook, excepthook


def quiet_abandoned_io() -> None:
    """After a failed save or restore, orbax's abandoned asyncio tasks print tracebacks as
    their writes end on a closed event loop or are collected; the error is reported in one
    line instead. Waits (stderr muted) until they fall silent, and drops later reports."""
    drop_closed_loop_reports()
    stderr, muted = sys.stderr, io.StringIO()
    sys.stderr = muted
    try:
        gc.collect()
        written, deadline = -1, time.monotonic() + 5
        while muted.tell() != written and time.monotonic() < deadline:
            written = muted.tell()
            time.sleep(0.5)
    finally:
        sys.stderr = stderr


def checksums(tree) -> dict[str, str]:
    """A 64-bit content checksum of every array in `tree`, keyed by its path.

    Computed on the device by one jitted reduction per array (uint32 sums wrap exactly, so the
    value does not depend on the sharding or the device count).
    """
    paths_and_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    leaves = [leaf for _, leaf in paths_and_leaves]
    values = np.asarray(jax.device_get(_checksum_all(leaves)))
    return {jax.tree_util.keystr(path): f"{int(a):08x}{int(b):08x}"
            for (path, _), (a, b) in zip(paths_and_leaves, values.reshape(-1, 2))}


@jax.jit
def _checksum_all(leaves: list[jax.Array]) -> jax.Array:
    if not leaves:
        return jnp.zeros((0, 2), jnp.uint32)
    return jnp.stack([_leaf_checksum(leaf) for leaf in leaves])


def _leaf_checksum(leaf: jax.Array) -> jax.Array:
    """Two 32-bit lanes: sum over elements of mix(bits ^ mix(position * salt)), mod 2^32."""
    bits = _as_uint32(leaf)
    position = jnp.zeros(bits.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(bits.ndim)):  # the flat index, without reshaping sharded arrays
        position = position + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, axis) * np.uint32(stride)
        stride = (stride * bits.shape[axis]) % 2**32
    lanes = [jnp.sum(_mix(bits ^ _mix(position * np.uint32(salt) + np.uint32(1))), dtype=jnp.uint32)
             for salt in (0x9E3779B1, 0x85EBCA77)]
    return jnp.stack(lanes)


def _as_uint32(leaf: jax.Array) -> jax.Array:
    """The bits of each element as uint32 (floats and ints of 1, 2, 4 or 8 bytes, bools)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    if leaf.dtype == jnp.bool_:
        return leaf.astype(jnp.uint32)
    size = jnp.dtype(leaf.dtype).itemsize
    if size == 8:  # x64 only: fold the two halves
        halves = jax.lax.bitcast_convert_type(leaf, jnp.uint32)
        return halves[..., 0] ^ _mix(halves[..., 1])
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(leaf, unsigned).astype(jnp.uint32)


def _mix(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finaliser: every input bit flips about half the output bits."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _save_each_array_from_one_replica() -> None:
    """Orbax splits replicated arrays across replicas on CPU by default, compiling one slice
    per shape and device count (~10 s on the first save with 8 fake devices); off, as on GPU."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    logging.disable(logging.WARNING)  # orbax warns that it overrides its default handler
    try:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
    finally:
        logging.disable(logging.NOTSET)
