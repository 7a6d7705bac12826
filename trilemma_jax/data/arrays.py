"""A user's own numpy arrays as a dataset: registered by name or read from ``.npz``.

Accepted ``x``: ``[N, D]`` float points, or ``[N, H, W, C]`` images (NHWC),
either float in ``[-1, 1]`` or uint8 (scaled to ``[-1, 1]``, 256 levels).
Labels are optional non-negative integers ``[N]``. Without a test set the
examples are split 90/10 by a fixed permutation.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from trilemma_jax.data.info import DatasetInfo, quantised_to_unit
from trilemma_jax.data.sources import ArraySource

NPZ_PREFIX = 'npz:'
NPZ_KEYS = ('x', 'label', 'x_test', 'label_test')
_SPLIT_SEED = 90_10
_registry: dict[str, 'UserArrays'] = {}


@dataclasses.dataclass(frozen=True)
class UserArrays:
  info: DatasetInfo
  train: ArraySource
  test: ArraySource


def _check_x(x, what: str, origin: str) -> tuple[np.ndarray, int | None]:
  """Validates ``x``; returns ``(float32 x in the model's range, levels)``."""
  x = np.asarray(x)
  if x.ndim not in (2, 4):
    hint = ' For grayscale [N, H, W] images add a channel axis: x[..., None].' if (
        x.ndim == 3) else ''
    raise ValueError(
        f'{origin}: {what} has shape {x.shape}; expected [N, D] points or [N, H, W, C] '
        f'images (NHWC).{hint}')
  if x.shape[0] == 0:
    raise ValueError(f'{origin}: {what} holds no examples (shape {x.shape}).')
  if x.dtype == np.uint8:
    if x.ndim != 4:
      raise ValueError(
          f'{origin}: {what} is uint8 points of shape {x.shape}; uint8 is for images '
          '[N, H, W, C]. Pass points as floats.')
    return quantised_to_unit(x, 256), 256
  if x.dtype.kind != 'f':
    raise ValueError(
        f'{origin}: {what} has dtype {x.dtype}; expected float (points, or images in '
        '[-1, 1]) or uint8 images. Convert 0..255 integer images with x.astype(np.uint8).')
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError(f'{origin}: {what} contains NaN or infinite values.')
  if x.ndim == 4 and (x.min() < -1.0 or x.max() > 1.0):
    raise ValueError(
        f'{origin}: float images in {what} span [{x.min():.4g}, {x.max():.4g}]; expected '
        '[-1, 1]. Rescale them (e.g. 2 * x / 255 - 1) or pass uint8 images.')
  return x, None


def _check_labels(labels, n: int, what: str, origin: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.dtype.kind not in 'iu':
    raise ValueError(f'{origin}: {what} has dtype {labels.dtype}; expected integers.')
  if labels.shape != (n,):
    raise ValueError(
        f'{origin}: {what} has shape {labels.shape}; expected ({n},), one label per example.')
  if labels.min() < 0 or labels.max() >= 2**31:
    raise ValueError(f'{origin}: {what} must be non-negative int32 values, got range '
                     f'[{labels.min()}, {labels.max()}].')
  return labels.astype(np.int32)


def build(name: str, x, labels=None, x_test=None, labels_test=None) -> UserArrays:
  """Validates user arrays and turns them into two splits plus their info."""
  x, levels = _check_x(x, 'x', name)
  has_labels = labels is not None
  y = _check_labels(labels, x.shape[0], 'labels', name) if has_labels else (
      np.zeros(x.shape[0], np.int32))
  if (labels_test is not None) and not has_labels:
    raise ValueError(f'{name}: test labels were given without train labels; pass both.')
  if x_test is None:
    if labels_test is not None:
      raise ValueError(f'{name}: test labels were given without x_test; pass both.')
    n_test = x.shape[0] // 10
    if n_test == 0:
      raise ValueError(
          f'{name}: {x.shape[0]} examples are too few for the automatic 90/10 split; '
          'pass at least 10 examples or an explicit test set.')
    perm = np.random.default_rng(_SPLIT_SEED).permutation(x.shape[0])
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    x, x_test, y, y_test = x[train_idx], x[test_idx], y[train_idx], y[test_idx]
  else:
    x_test, levels_test = _check_x(x_test, 'x_test', name)
    if x_test.shape[1:] != x.shape[1:] or levels_test != levels:
      raise ValueError(
          f'{name}: x_test examples ({x_test.shape[1:]}, levels {levels_test}) differ from '
          f'x ({x.shape[1:]}, levels {levels}); both must have the same shape and dtype.')
    if has_labels and labels_test is None:
      raise ValueError(f'{name}: train labels were given but no test labels; pass both.')
    y_test = _check_labels(labels_test, x_test.shape[0], 'labels_test', name) if (
        has_labels) else np.zeros(x_test.shape[0], np.int32)
  num_classes = int(max(y.max(), y_test.max(initial=0))) + 1 if has_labels else None
  info = DatasetInfo(
      name=name, shape=tuple(x.shape[1:]), kind='points' if x.ndim == 2 else 'image',
      num_classes=num_classes, num_train=x.shape[0], num_test=x_test.shape[0],
      levels=levels)
  return UserArrays(info, ArraySource(x, y), ArraySource(x_test, y_test))


def register(name: str, x, labels=None, x_test=None, labels_test=None) -> DatasetInfo:
  """Validates and stores arrays under ``name`` (replacing an earlier one)."""
  arrays = build(name, x, labels, x_test, labels_test)
  _registry[name] = arrays
  return arrays.info


def registered(name: str) -> UserArrays | None:
  return _registry.get(name)


def registered_names() -> list[str]:
  return sorted(_registry)


def npz_path(name: str) -> str:
  """The absolute file path of ``npz:<path>``."""
  return os.path.abspath(os.path.expanduser(name[len(NPZ_PREFIX):]))


def load_npz(name: str) -> UserArrays:
  """Reads ``npz:/path/file.npz`` (keys ``x`` and optional ``label``, ``x_test``,
  ``label_test``); re-read when the file changes."""
  path = npz_path(name)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{name}: no file at {path}. Save your arrays with '
        "np.savez(path, x=x, label=labels) and pass 'npz:<path>'.")
  stat = os.stat(path)
  return _load_npz_cached(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_npz_cached(path: str, mtime_ns: int, size: int) -> UserArrays:
  del mtime_ns, size  # only part of the cache key
  name = NPZ_PREFIX + path
  try:
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
      raise ValueError('it holds a single array, not an .npz archive')
    with loaded:
      arrays = {k: loaded[k] for k in loaded.files}
  except (ValueError, OSError) as e:
    raise ValueError(
        f'{name}: cannot read it as an .npz archive of plain arrays ({e}). Save it with '
        'np.savez(path, x=x, label=labels).') from e
  unknown = sorted(set(arrays) - set(NPZ_KEYS))
  if 'x' not in arrays or unknown:
    raise ValueError(
        f'{name} has keys {sorted(arrays)}; expected {NPZ_KEYS} ("x" required, the rest '
        'optional).')
  return build(name, arrays['x'], arrays.get('label'), arrays.get('x_test'),
               arrays.get('label_test'))
