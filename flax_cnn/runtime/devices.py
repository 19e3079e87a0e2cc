"""Devices for data parallelism: CPU split into XLA devices, multi-host init, the mesh.

On CPU one device is the default: XLA's Eigen pool runs each conv on every core, while a batch
sharded over several CPU devices synchronises them at every BatchNorm (measured slower on 2
cores). Both settings must be made before JAX initialises its backends, i.e. before the first
computation.
"""

from __future__ import annotations

import os

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from flax_cnn.model.config import ConfigError


def physical_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def configure(*, cpu_devices: int, coordinator: str | None = None, num_processes: int = 1,
              process_id: int = 0) -> None:
    """Set the CPU device count (0 = one per core) and join a multi-process run if asked."""
    jax.config.update("jax_num_cpu_devices", cpu_devices or physical_cores())
    if num_processes > 1:
        from flax_cnn.runtime import peers

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        peers.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def make_mesh(devices: int = 0) -> Mesh:
    """A 1-D 'data' mesh over the first `devices` devices of every process (0 = all)."""
    if jax.process_count() > 1:
        if devices:
            raise ConfigError("--devices cannot be combined with a multi-process run (every device is used)")
        return jax.make_mesh((jax.device_count(),), ("data",))
    all_devices = jax.local_devices()
    n = devices or len(all_devices)
    if n > len(all_devices):
        raise ConfigError(f"--devices {n}: only {len(all_devices)} local devices")
    return Mesh(all_devices[:n], ("data",))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
