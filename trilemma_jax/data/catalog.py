"""Names to datasets: one entry point whatever the data comes from.

=====================  ==========================================================
name                   source
=====================  ==========================================================
``ring8``, ``grid25``  generated 2-D Gaussian mixtures (:mod:`.toy2d`)
``digits``             scikit-learn's 8x8 digits (:mod:`.digits`)
``stacked_digits``     three digits as channels, 1,000 modes (:mod:`.digits`)
``fashion_mnist``      local IDX files via a TFDS builder (:mod:`.fashion_mnist`)
``tfds:<name>``        any prepared TFDS image dataset (:mod:`.tfds_source`)
``npz:<path>``         a user's ``.npz`` file (:mod:`.arrays`)
any other name         arrays given to :func:`register_array` in this process
=====================  ==========================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trilemma_jax import validation
from trilemma_jax.data import arrays as arrays_lib
from trilemma_jax.data import digits, fashion_mnist, tfds_source, toy2d
from trilemma_jax.data.info import DatasetInfo, check_split, resolve_data_dir
from trilemma_jax.data.sources import ArraySource, read_batch

TFDS_PREFIX = 'tfds:'
BUILTIN_NAMES = (*toy2d.NAMES, 'digits', 'stacked_digits', 'fashion_mnist')
FASHION_INFO = DatasetInfo(
    name='fashion_mnist', shape=(28, 28, 1), kind='image', num_classes=10,
    num_train=60_000, num_test=10_000, levels=256)
_READ_CHUNK = 1024


def _unknown(name: Any) -> ValueError:
  return ValueError(
      f'Unknown dataset {name!r}. Expected one of {", ".join(BUILTIN_NAMES)}, '
      f"'tfds:<name>' (e.g. 'tfds:mnist'), 'npz:<path to .npz>', or a name registered with "
      f'data.register_array (registered now: {arrays_lib.registered_names()}).')


def _tfds_name(name: str) -> str:
  tfds_name = name[len(TFDS_PREFIX):]
  if not tfds_name:
    raise ValueError(f"{name!r} names no TFDS dataset; write e.g. 'tfds:mnist'.")
  return tfds_name


def load_info(name: str, *, data_dir: str | None = None) -> DatasetInfo:
  """Static facts of dataset ``name`` (shape, kind, classes, split sizes, levels).

  Args:
    name: a dataset name (see the module docstring).
    data_dir: TFDS data directory; default ``$TRILEMMA_DATA_DIR`` or
      ``~/.cache/trilemma_jax/tensorflow_datasets``.
  """
  if not isinstance(name, str):
    raise _unknown(name)
  if name in toy2d.NAMES:
    return toy2d.info(name)
  if name in ('digits', 'stacked_digits'):
    return digits.info(name)
  if name == 'fashion_mnist':
    return FASHION_INFO
  if name.startswith(TFDS_PREFIX):
    return tfds_source.load_info(_tfds_name(name), resolve_data_dir(data_dir), name=name)
  return _user_arrays(name).info


def kind_of(name: str) -> str:
  """``'points'`` or ``'image'`` for dataset ``name``, without preparing or reading TFDS data.

  Configs are built per kind before a run's ``data_dir`` is known, so this
  needs no data directory: TFDS datasets are images; user arrays are read.
  """
  if isinstance(name, str) and name.startswith(TFDS_PREFIX):
    _tfds_name(name)
    return 'image'
  return load_info(name).kind


def get_source(name: str, split: str, *, data_dir: str | None = None):
  """A random-access source of one split (``len`` and ``__getitem__``).

  Items are ``{'x': float32 [*shape], 'label': int32 []}``; images are in
  ``[-1, 1]``; unlabelled data have label 0. ``fashion_mnist`` is prepared into
  ``data_dir`` on first use (about 10 s).

  Args:
    name: a dataset name (see the module docstring).
    split: ``'train'`` or ``'test'``.
    data_dir: TFDS data directory (see :func:`load_info`).
  """
  check_split(split)
  if not isinstance(name, str):
    raise _unknown(name)
  if name in toy2d.NAMES:
    return toy2d.source(name, split)
  if name in ('digits', 'stacked_digits'):
    return digits.source(name, split)
  if name == 'fashion_mnist':
    directory = resolve_data_dir(data_dir)
    fashion_mnist.prepare(directory)  # once per data_dir; a no-op afterwards
    return tfds_source.open_split(fashion_mnist.TFDS_NAME, split, directory, name=name)
  if name.startswith(TFDS_PREFIX):
    return tfds_source.open_split(_tfds_name(name), split, resolve_data_dir(data_dir))
  user = _user_arrays(name)
  return user.train if split == 'train' else user.test


def load_arrays(name: str, split: str, *, data_dir: str | None = None,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """A whole split (or its first ``limit`` examples) in memory, in order.

  Returns:
    ``(x float32 [N, *shape], labels int32 [N])``.
  """
  if limit is not None:
    validation.positive_int('limit (or None)', limit)
  source = get_source(name, split, data_dir=data_dir)
  n = len(source) if limit is None else min(limit, len(source))
  if isinstance(source, ArraySource):
    return np.array(source.x[:n]), np.array(source.label[:n])
  chunks = [read_batch(source, np.arange(start, min(n, start + _READ_CHUNK)))
            for start in range(0, n, _READ_CHUNK)]
  return (np.concatenate([c['x'] for c in chunks]),
          np.concatenate([c['label'] for c in chunks]))


def prepare(name: str, *, data_dir: str | None = None) -> None:
  """Prepares a dataset that lives in a TFDS data directory; no-op for others.

  ``fashion_mnist`` is built from the local IDX files; ``tfds:<name>`` is
  downloaded and written as ``array_record`` (needs network access).
  """
  if name == 'fashion_mnist':
    fashion_mnist.prepare(resolve_data_dir(data_dir))
  elif isinstance(name, str) and name.startswith(TFDS_PREFIX):
    tfds_source.prepare(_tfds_name(name), resolve_data_dir(data_dir))
  else:
    load_info(name, data_dir=data_dir)  # validates the name


def register_array(name: str, x, labels=None, x_test=None, labels_test=None) -> DatasetInfo:
  """Makes in-memory arrays available by ``name`` to every function here.

  Args:
    name: a new name (not a built-in one, no ``':'``); registering it again
      replaces the earlier arrays.
    x: ``[N, D]`` float points, or ``[N, H, W, C]`` images, float in
      ``[-1, 1]`` or uint8.
    labels: optional non-negative integers ``[N]``.
    x_test: optional test examples shaped like ``x``; otherwise a fixed 90/10
      split of ``x`` is used.
    labels_test: test labels, required when both ``labels`` and ``x_test`` are.

  Returns:
    The :class:`DatasetInfo` of the registered dataset.
  """
  if not isinstance(name, str) or not name or ':' in name or name in BUILTIN_NAMES:
    raise ValueError(
        f'Cannot register arrays as {name!r}: choose a non-empty name without ":" that is '
        f'not a built-in dataset ({", ".join(BUILTIN_NAMES)}).')
  return arrays_lib.register(name, x, labels, x_test, labels_test)


def _user_arrays(name: str) -> arrays_lib.UserArrays:
  if name.startswith(arrays_lib.NPZ_PREFIX):
    return arrays_lib.load_npz(name)
  user = arrays_lib.registered(name)
  if user is None:
    raise _unknown(name)
  return user
