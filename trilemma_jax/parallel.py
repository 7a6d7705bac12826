"""Data parallelism: one `jax.jit` over a `Mesh` with a ``data`` axis.

The batch is sharded along its leading axis, the train state is replicated,
and the state buffer is donated to the step. On one host with one device this
degenerates to a plain jit; on a pod the same code builds global arrays from
each process's slice of the batch.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from trilemma_jax import caches, perf

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process job (``jax.distributed.initialize``); call before any other JAX call.

  With no arguments the cluster is detected (TPU VMs, SLURM, Open MPI, ...).
  Elsewhere give all three: the coordinator's ``host:port`` (process 0 listens
  there), the number of processes, and this process's index. CPU processes
  talk through gloo, so the same job runs on one machine with several
  processes (the project's tests do this on loopback).
  """
  given = [coordinator_address is not None, num_processes is not None, process_id is not None]
  if any(given) and not all(given):
    raise ValueError(
        'A multi-process job outside a detected cluster needs all of coordinator_address '
        f'(host:port of process 0), num_processes and process_id; got coordinator_address='
        f'{coordinator_address!r}, num_processes={num_processes!r}, process_id={process_id!r}.')
  if num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(f'process_id must be in [0, {num_processes}), got {process_id}.')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def to_numpy(x: Any) -> Any:
  """A (possibly multi-process) array tree as numpy, the same on every process.

  Arrays on this process's devices, and replicated ones, are read locally; an
  array sharded over other processes' devices is gathered (every process must
  call this then, as with any collective).
  """
  def one(a):
    if not isinstance(a, jax.Array) or a.is_fully_addressable:
      return np.asarray(a)
    if a.is_fully_replicated:
      return np.asarray(a.addressable_data(0))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))
  return jax.tree.map(one, x)


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


def jit_train_step(train_step: Callable, mesh: Mesh) -> Callable:
  """``train_step(state, batch)`` compiled once: batch sharded, state replicated and donated."""
  return jax.jit(
      train_step,
      in_shardings=(replicated(mesh), batch_sharding(mesh)),
      out_shardings=(replicated(mesh), replicated(mesh)),
      donate_argnums=(0,),
  )


def jit_train_steps(train_step: Callable, mesh: Mesh) -> Callable:
  """``(state, batches) -> (state, metrics)``: ``K`` steps in one call (``lax.scan``).

  ``batches`` stacks ``K`` batches on a leading axis (see :func:`shard_batches`);
  the metrics come back stacked the same way. One program is compiled per ``K``.
  """
  def steps(state, batches):
    return jax.lax.scan(train_step, state, batches)

  return jax.jit(
      steps,
      in_shardings=(replicated(mesh), NamedSharding(mesh, P(None, DATA_AXIS))),
      out_shardings=(replicated(mesh), replicated(mesh)),
      donate_argnums=(0,),
  )


def shard_batches(local_batches: Sequence[Any], mesh: Mesh) -> Any:
  """``K`` of this process's batches as global arrays ``[K, global batch, ...]``."""
  sharding = NamedSharding(mesh, P(None, DATA_AXIS))
  return jax.tree.map(
      lambda *xs: jax.make_array_from_process_local_data(sharding, np.stack(xs)),
      *local_batches)


def jit_init(init: Callable, mesh: Mesh) -> Callable:
  """``init(rng, example_batch)`` compiled so the state is born replicated on the mesh.

  It runs once, so it is compiled as :func:`trilemma_jax.perf.run_once_compiler_options`
  says (on CPU, without LLVM optimisation).
  """
  return jax.jit(init, out_shardings=replicated(mesh),
                 compiler_options=perf.run_once_compiler_options(list(mesh.devices.flat)))


def enable_compilation_cache(cache_dir: str | None = None, *,
                             min_compile_seconds: float = 0.5) -> str | None:
  """Turns on JAX's persistent compilation cache; returns its directory (None: disabled).

  Runs that differ only in their seed compile the same programs, so the second
  and later seeds of a profile load their train steps and samplers from disk
  instead of compiling them again. ``cache_dir`` defaults to
  ``$TRILEMMA_CACHE_DIR/jax_compilation`` (``~/.cache/trilemma_jax`` when unset);
  ``TRILEMMA_COMPILATION_CACHE=0`` disables it. Call before the first compile.
  """
  if os.environ.get('TRILEMMA_COMPILATION_CACHE', '1').lower() in ('0', 'false', 'no'):
    return None
  if cache_dir is None:
    cache_dir = caches.cache_path('jax_compilation')
  cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_seconds)
  return cache_dir
