"""What a dataset is, independent of where its examples come from."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

SPLITS = ('train', 'test')
DATA_DIR_ENV = 'TRILEMMA_DATA_DIR'
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'trilemma_jax', 'tensorflow_datasets')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a dataset that models and metrics are built from.

  Attributes:
    name: canonical name, e.g. ``'grid25'``, ``'digits'``, ``'tfds:mnist'``.
    shape: per-example shape: ``(D,)`` for points, ``(H, W, C)`` for images.
    kind: ``'points'`` or ``'image'``.
    num_classes: number of labels (mixture components for the 2-D sets);
      ``None`` if the data are unlabelled.
    num_train: number of examples in the train split.
    num_test: number of examples in the test split.
    levels: quantisation levels of a pixel (17 for the 0..16 sklearn digits,
      256 for 8-bit images): value ``v`` maps to ``2 v / (levels - 1) - 1``.
      ``None`` for points and for float images of unknown quantisation.
    means: ``[K, D]`` mixture means of ``ring8`` / ``grid25``, else ``None``.
    std: mixture component standard deviation of ``ring8`` / ``grid25``.
  """

  name: str
  shape: tuple[int, ...]
  kind: str
  num_classes: int | None
  num_train: int
  num_test: int
  levels: int | None
  # Left out of == and hash (the name already fixes the means), so an info
  # stays hashable and can be a static argument of a jitted function.
  means: np.ndarray | None = dataclasses.field(default=None, compare=False)
  std: float | None = None


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")


def resolve_data_dir(data_dir: str | None) -> str:
  """``data_dir``, else ``$TRILEMMA_DATA_DIR``, else the per-user cache."""
  if data_dir:
    return os.path.expanduser(data_dir)
  return os.path.expanduser(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def quantised_to_unit(values: np.ndarray, levels: int) -> np.ndarray:
  """Maps integer pixel values ``0..levels-1`` to float32 in ``[-1, 1]``."""
  # An exact integer numerator and one rounding keep the ends at exactly -1 and 1.
  numerator = 2 * values.astype(np.int32) - (levels - 1)
  return numerator.astype(np.float32) / np.float32(levels - 1)
