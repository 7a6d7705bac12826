"""What a dataset is, independent of where its examples come from."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

SPLITS = ('train', 'test')
KINDS = ('points', 'image')
DATA_DIR_ENV = 'TRILEMMA_DATA_DIR'
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'trilemma_jax', 'tensorflow_datasets')


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
  """How a dataset is scored: what samples are compared with, and how coverage is counted.

  Attributes:
    reference_split: the split generated samples are compared with for FD, KID
      and precision/recall/density/coverage.
    quality_samples: samples scored for those figures; ``None`` leaves the
      count to the caller (the profile's ``num_samples``).
    modes: how modes are counted: ``'mixture'`` (nearest mixture mean, a sample
      is high quality within 3 std; needs ``means``), ``'classifier'``
      (labels predicted by the dataset's feature network, modes out of
      ``num_classes``), or ``None`` (no mode count).
    mode_samples: samples the mode figures are computed on.
  """

  reference_split: str
  quality_samples: int | None = None
  modes: str | None = None
  mode_samples: int = 0


# The mode metrics of the 2-D mixtures are defined on 2,500 samples against the
# test split (docs/references.md); stacked digits count their 1,000 modes on 26,000.
MIXTURE_PROTOCOL = EvalProtocol(reference_split='test', quality_samples=2500, modes='mixture',
                                mode_samples=2500)
IMAGE_PROTOCOL = EvalProtocol(reference_split='train')


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
    protocol: how samples of this dataset are scored (default: by kind; see
      :class:`EvalProtocol`).
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
  protocol: EvalProtocol | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'DatasetInfo.kind must be one of {KINDS}, got {self.kind!r}.')
    if self.protocol is None:
      object.__setattr__(self, 'protocol', IMAGE_PROTOCOL if self.kind == 'image' else
                         EvalProtocol(reference_split='test', quality_samples=2500))

  @property
  def data_std(self) -> float | None:
    """Per-coordinate standard deviation of a Gaussian mixture with equal weights.

    ``sqrt(mean over coordinates of the variance of the means + std²)``; None
    for data that are not such a mixture.
    """
    if self.means is None or self.std is None:
      return None
    return float(np.sqrt(np.mean(np.var(self.means, axis=0)) + self.std ** 2))


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
