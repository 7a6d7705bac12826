"""A run's orbax checkpoints: the manager, and restoring a state onto a mesh."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from trilemma_jax import parallel
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.train_state import Family, TrainState


def checkpoint_manager(workdir: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """The run's orbax manager (async; at most ``max_to_keep`` checkpoints)."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True),
  )


def example_batch(info: DatasetInfo, batch_size: int = 1) -> dict[str, np.ndarray]:
  """A zero batch with the dataset's shapes, for ``init`` and shape inference."""
  return {'x': np.zeros((batch_size, *info.shape), np.float32),
          'label': np.zeros((batch_size,), np.int32)}


def parameter_counts(family: Family, info: DatasetInfo) -> dict[str, int]:
  """Trained parameters per network of ``family`` (``{'generator': ..., ...}``), by shape only.

  Counts ``state.params`` (not the EMA copies, optimiser moments or non-trained
  variables such as spectral-norm vectors), as papers report model sizes.
  """
  shapes = jax.eval_shape(family.init, jax.ShapeDtypeStruct((2,), jnp.uint32),
                          example_batch(info))
  return {name: sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
          for name, tree in shapes.params.items()}


def format_counts(counts: dict[str, int]) -> str:
  """``'generator 48.43M + discriminator 12.74M = 61.17M'`` (or one network's count)."""
  fmt = lambda n: f'{n / 1e6:.2f}M' if n >= 1e5 else f'{n:,}'
  parts = ' + '.join(f'{name} {fmt(n)}' for name, n in counts.items())
  return parts if len(counts) == 1 else f'{parts} = {fmt(sum(counts.values()))}'


def abstract_state(family: Family, info: DatasetInfo, mesh) -> TrainState:
  """Shapes, dtypes and (replicated) shardings of the state, without computing it."""
  shapes = jax.eval_shape(family.init, jax.ShapeDtypeStruct((2,), jnp.uint32),
                          example_batch(info))
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def restore_state(workdir: str, family: Family, info: DatasetInfo, mesh,
                  step: int | None = None) -> TrainState:
  """Loads a run's state (latest checkpoint by default) onto ``mesh``, for evaluation."""
  with checkpoint_manager(workdir) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'No checkpoint under {workdir}/checkpoints; train the run first.')
    target = abstract_state(family, info, mesh)
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return restored.state


def restore_for_training(mngr: ocp.CheckpointManager, step: int, family: Family,
                         info: DatasetInfo, mesh, data_args: Any) -> TrainState:
  """The state at ``step`` onto ``mesh``, restoring the data iterator through ``data_args``."""
  target = abstract_state(family, info, mesh)
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), data=data_args))
  return restored.state
