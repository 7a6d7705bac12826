"""Data parallelism: one `jax.jit` over a `Mesh` with a ``data`` axis.

The batch is sharded along its leading axis, the train state is replicated,
and the state buffer is donated to the step. On one host with one device this
degenerates to a plain jit; on a pod the same code builds global arrays from
each process's slice of the batch.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """Raises if the global batch cannot be split evenly over the mesh."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(
        f'The global batch size {global_batch_size} is not divisible by the {n} devices '
        f'of the mesh; set --config.data.batch_size to a multiple of {n}.')


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Turns this process's numpy slice of the batch into global sharded arrays."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def jit_train_step(train_step: Callable, mesh: Mesh) -> Callable:
  """``train_step(state, batch)`` compiled once: batch sharded, state replicated and donated."""
  return jax.jit(
      train_step,
      in_shardings=(replicated(mesh), batch_sharding(mesh)),
      out_shardings=(replicated(mesh), replicated(mesh)),
      donate_argnums=(0,),
  )


def jit_init(init: Callable, mesh: Mesh) -> Callable:
  """``init(rng, example_batch)`` compiled so the state is born replicated on the mesh."""
  return jax.jit(init, out_shardings=replicated(mesh))
