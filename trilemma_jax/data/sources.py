"""Random-access sources: what every dataset of the package turns into.

A source has ``len`` and ``__getitem__`` (grain's ``RandomAccessDataSource``)
and yields ``{'x': float32 [*shape], 'label': int32 []}``. Sources that can
read many indices at once also offer ``_getitems`` (grain's batched-read
protocol); :func:`read_batch` uses it so a batch costs one vectorised read.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

Example = Mapping[str, np.ndarray]


class ArraySource:
  """An in-memory split: ``x`` float32 ``[N, *shape]``, ``label`` int32 ``[N]``.

  The arrays are made read-only, so the cached built-in datasets cannot be
  changed by a caller that writes into an example.
  """

  def __init__(self, x: np.ndarray, label: np.ndarray):
    if x.dtype != np.float32 or label.dtype != np.int32:
      raise ValueError(
          f'ArraySource wants float32 x and int32 labels, got {x.dtype} and {label.dtype}.')
    if label.shape != x.shape[:1]:
      raise ValueError(
          f'ArraySource: {x.shape[0]} examples but labels of shape {label.shape}.')
    self.x = _read_only(x)
    self.label = _read_only(label)

  def __len__(self) -> int:
    return self.x.shape[0]

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {'x': self.x[index], 'label': self.label[index]}

  def _getitems(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    idx = np.asarray(indices)
    return [{'x': x, 'label': y} for x, y in zip(self.x[idx], self.label[idx])]

  def read_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """``{'x': [B, *shape], 'label': [B]}`` for integer ``indices`` ``[B]``."""
    return {'x': self.x[indices], 'label': self.label[indices]}

  def __repr__(self) -> str:
    return f'ArraySource(x={self.x.shape}, label={self.label.shape})'


def _read_only(a: np.ndarray) -> np.ndarray:
  a = np.ascontiguousarray(a)
  if a.flags.writeable:
    a = a.view()
    a.flags.writeable = False
  return a


def read_batch(source: Any, indices: np.ndarray) -> dict[str, np.ndarray]:
  """Reads the examples at ``indices`` ``[B]`` and stacks them.

  Args:
    source: any random-access source of ``{'x', 'label'}`` dicts.
    indices: int array ``[B]`` of positions in ``[0, len(source))``.

  Returns:
    ``{'x': float32 [B, *shape], 'label': int32 [B]}``.
  """
  indices = np.asarray(indices, dtype=np.int64)
  if hasattr(source, 'read_batch'):
    return source.read_batch(indices)
  if hasattr(source, '_getitems'):
    items = source._getitems(indices.tolist())  # pylint: disable=protected-access
  else:
    items = [source[int(i)] for i in indices]
  return stack_examples(items)


def stack_examples(items: Sequence[Example]) -> dict[str, np.ndarray]:
  """Stacks ``{'x', 'label'}`` examples into one batch with fixed dtypes."""
  if not items:
    raise ValueError('Cannot build a batch from zero examples.')
  x = np.stack([np.asarray(item['x']) for item in items]).astype(np.float32, copy=False)
  label = np.asarray([item['label'] for item in items]).astype(np.int32, copy=False)
  return {'x': x, 'label': label}
