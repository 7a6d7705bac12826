"""The two 2-D Gaussian mixtures of the mode-coverage benchmarks.

``ring8``: 8 means on the unit circle, std 0.01; ``grid25``: means on
``{-4, -2, 0, 2, 4}^2``, std 0.05 (PacGAN settings; see docs/references.md).
Each point carries the index of the component it was drawn from as its label.
Both splits are generated from fixed seeds, so every run sees the same points.
"""

from __future__ import annotations

import functools

import numpy as np

from trilemma_jax.data.info import MIXTURE_PROTOCOL, DatasetInfo
from trilemma_jax.data.sources import ArraySource

NUM_TRAIN = 100_000
NUM_TEST = 10_000
# Different seeds per split: the test points are not a copy of training points.
_SEEDS = {'train': 20_220_101, 'test': 20_220_102}
_STD = {'ring8': 0.01, 'grid25': 0.05}
NAMES = tuple(_STD)


def ring_means(n: int = 8, radius: float = 1.0) -> np.ndarray:
  """``[n, 2]`` means at angles ``2 pi i / n``.

  The angles come from ``linspace(0, 2 pi, n + 1)[:-1]``: including the end
  point, as a widely copied notebook does, puts two means on top of each other.
  """
  theta = np.linspace(0.0, 2.0 * np.pi, n + 1)[:-1]
  return radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def grid_means(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> np.ndarray:
  """``[len(values)**2, 2]`` means on the grid ``values x values`` (row-major)."""
  gx, gy = np.meshgrid(np.asarray(values), np.asarray(values), indexing='ij')
  return np.stack([gx.ravel(), gy.ravel()], axis=1)


def means(name: str) -> np.ndarray:
  return ring_means() if name == 'ring8' else grid_means()


def info(name: str) -> DatasetInfo:
  m = means(name)
  m.flags.writeable = False  # shared facts, not a scratch buffer
  return DatasetInfo(
      name=name, shape=(2,), kind='points', num_classes=m.shape[0],
      num_train=NUM_TRAIN, num_test=NUM_TEST, levels=None, means=m, std=_STD[name],
      protocol=MIXTURE_PROTOCOL)


def sample(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws ``n`` points: uniform component, then ``mean + std * N(0, I)``.

  Returns:
    ``(x float32 [n, 2], label int32 [n])``.
  """
  m = means(name)
  rng = np.random.default_rng(seed)
  label = rng.integers(0, m.shape[0], size=n)
  x = m[label] + _STD[name] * rng.standard_normal((n, 2))
  return x.astype(np.float32), label.astype(np.int32)


@functools.lru_cache(maxsize=None)
def source(name: str, split: str) -> ArraySource:
  n = NUM_TRAIN if split == 'train' else NUM_TEST
  return ArraySource(*sample(name, n, _SEEDS[split]))
