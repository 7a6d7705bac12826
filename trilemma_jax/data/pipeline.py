"""Batches from a source: a shuffled, sharded, checkpointable train stream and
an in-order pass for evaluation.

The train stream is defined over example *indices*, globally: epoch ``e`` is a
permutation of ``range(N)`` drawn from ``(seed, e)``; the concatenated epochs
cut into runs of ``global_batch_size`` form the global batches. Process ``p``
of ``P`` reads slice ``p`` of each global batch, so the union over processes
is the global batch a single process would see: the data order does not
depend on the number of hosts. Batches run across epoch boundaries, so no
example is ever dropped and every batch is full.

The pipeline is a grain ``MapDataset`` over step numbers, so its iterator
state is just the next step, which ``grain.checkpoint.CheckpointSave`` stores
in an orbax checkpoint. The permutations are drawn a whole epoch at a time
with numpy: grain's per-index shuffle is far slower than one vectorised draw
and would throttle small 2-D models (docs/performance.md).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Iterator

import grain
import jax
import numpy as np

from trilemma_jax.data.sources import read_batch

# Reading is cheap next to a train step; a few batches ahead hide TFDS decoding.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of one epoch: a permutation of ``range(n)`` [n]."""
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  perm.flags.writeable = False
  return perm


class _StepIndices:
  """Step ``k`` -> indices ``[B]`` of this process's share of global batch ``k``."""

  def __init__(self, n: int, seed: int, global_batch_size: int, process_index: int,
               local_batch_size: int):
    self._n = n
    self._seed = seed
    self._global = global_batch_size
    self._offset = process_index * local_batch_size
    self._local = local_batch_size

  def __call__(self, step: int) -> np.ndarray:
    start = int(step) * self._global + self._offset
    epoch, within = np.divmod(np.arange(start, start + self._local, dtype=np.int64), self._n)
    indices = np.empty(self._local, np.int64)
    for e in np.unique(epoch):  # one or two epochs, more only when n < B
      in_e = epoch == e
      indices[in_e] = _epoch_permutation(self._n, self._seed, int(e))[within[in_e]]
    return indices


class _BatchReader:
  """Index batch ``[B]`` -> example batch; a class (not a closure) so it pickles."""

  def __init__(self, source: Any):
    self._source = source

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return read_batch(self._source, indices)


def _check_int(value: Any, what: str, low: int, high: int | None = None) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
      high is not None and value >= high):
    bound = f'in [{low}, {high})' if high is not None else f'>= {low}'
    raise ValueError(f'{what} must be an integer {bound}, got {value!r}.')
  return int(value)


def train_iterator(source: Any, *, global_batch_size: int, seed: int,
                   process_index: int | None = None,
                   process_count: int | None = None) -> grain.DatasetIterator:
  """An infinite, reshuffled-every-epoch stream of this process's batches.

  Args:
    source: random-access source of ``{'x', 'label'}`` examples.
    global_batch_size: examples per step summed over all processes.
    seed: data-order seed in ``[0, 2**32)``; the same seed gives the same
      batches.
    process_index: this process; default ``jax.process_index()``.
    process_count: number of processes; default ``jax.process_count()``.

  Returns:
    A grain ``DatasetIterator`` of ``{'x': float32 [B, *shape], 'label': int32
    [B]}`` with ``B = global_batch_size // process_count``; it supports
    ``get_state()`` / ``set_state()``.
  """
  process_count = jax.process_count() if process_count is None else process_count
  process_count = _check_int(process_count, 'process_count', 1)
  process_index = jax.process_index() if process_index is None else process_index
  process_index = _check_int(process_index, 'process_index', 0, process_count)
  global_batch_size = _check_int(global_batch_size, 'global_batch_size', 1)
  seed = _check_int(seed, 'seed', 0, 2**32)
  if global_batch_size % process_count:
    raise ValueError(
        f'global_batch_size={global_batch_size} is not divisible by process_count='
        f'{process_count}; every process must load the same number of examples. Use a '
        f'multiple of {process_count}.')
  n = len(source)
  if n == 0:
    raise ValueError(f'The source {source!r} is empty; there is nothing to train on.')
  local_batch_size = global_batch_size // process_count
  steps = grain.MapDataset.range(sys.maxsize)
  batches = steps.map(_StepIndices(n, seed, global_batch_size, process_index,
                                   local_batch_size)).map(_BatchReader(source))
  return iter(batches.to_iter_dataset(_READ_OPTIONS))


def eval_batches(source: Any, *, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """All examples of ``source`` in order, ``batch_size`` at a time.

  Returns:
    An iterator of ``{'x': float32 [B, *shape], 'label': int32 [B]}``; the last batch holds
    the remainder (``B <= batch_size``).
  """
  batch_size = _check_int(batch_size, 'batch_size', 1)  # checked now, not at first next()
  n = len(source)
  return (read_batch(source, np.arange(start, min(n, start + batch_size)))
          for start in range(0, n, batch_size))
