"""Devices, mesh and shardings: data parallel over all devices, optional fsdp for parameters."""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")  # the batch is split over every device


def maybe_initialize_distributed(distributed) -> None:
    """`jax.distributed.initialize()` when the config or the environment asks for it.

    Args:
      distributed: config with `initialize` (bool), `coordinator_address` (str, "" = auto),
        `num_processes` (0 = auto) and `process_id` (-1 = auto).
    """
    if not (distributed.initialize or os.environ.get("JAX_COORDINATOR_ADDRESS")):
        return
    kwargs = {}
    if distributed.coordinator_address:
        kwargs["coordinator_address"] = distributed.coordinator_address
    if distributed.num_processes > 0:
        kwargs["num_processes"] = distributed.num_processes
    if distributed.process_id >= 0:
        kwargs["process_id"] = distributed.process_id
    jax.distributed.initialize(**kwargs)
    logging.info("process %d of %d, %d local of %d devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(fsdp: int = 1, devices: list[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default all); Auto axes so Linen modules shard freely."""
    count = len(devices) if devices is not None else jax.device_count()
    if fsdp < 1 or count % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must divide the {count} devices")
    return jax.make_mesh((count // fsdp, fsdp), ("data", "fsdp"),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def batch_sharding(mesh: Mesh, leading_unsharded: int = 0) -> NamedSharding:
    """Rows split over all devices, after `leading_unsharded` whole axes (e.g. microbatches)."""
    return NamedSharding(mesh, P(*([None] * leading_unsharded), BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_shardings(mesh: Mesh, abstract_tree, min_size: int = 2**14):
    """Shard each large leaf on its largest axis divisible by the fsdp size; replicate the rest."""
    fsdp = mesh.shape["fsdp"]

    def rule(leaf) -> NamedSharding:
        shape = getattr(leaf, "shape", ())
        if fsdp == 1 or np.prod(shape, dtype=np.int64) < min_size:
            return replicated(mesh)
        for axis in np.argsort(shape)[::-1]:
            if shape[axis] % fsdp == 0:
                spec = [None] * len(shape)
                spec[axis] = "fsdp"
                return NamedSharding(mesh, P(*spec))
        return replicated(mesh)

    return jax.tree.map(rule, abstract_tree)


def process_rows(sharding: NamedSharding, global_shape: tuple[int, ...], axis: int) -> slice:
    """The contiguous rows along `axis` that this process's devices hold."""
    index_map = sharding.addressable_devices_indices_map(global_shape)
    bounds = sorted({(idx[axis].start or 0, global_shape[axis] if idx[axis].stop is None
                      else idx[axis].stop) for idx in index_map.values()})
    start, stop = bounds[0][0], bounds[-1][1]
    covered = sum(b - a for a, b in bounds)
    if covered != stop - start:
        raise ValueError(f"this process's rows along axis {axis} are not contiguous: {bounds}")
    return slice(start, stop)


def put_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding,
              rows_axis: int, global_rows: int) -> dict[str, jax.Array]:
    """Global arrays from this process's rows (every process calls this with its own)."""
    def put(local: np.ndarray) -> jax.Array:
        shape = list(local.shape)
        shape[rows_axis] = global_rows
        return jax.make_array_from_process_local_data(sharding, local, tuple(shape))

    return {k: put(v) for k, v in local_batch.items()}
