"""scikit-learn's 8x8 digits and the stacked-digits mode-coverage set.

The 1,797 digits ship with scikit-learn (no download). Pixels take the 17
values 0..16 and map to ``[-1, 1]``. The train/test split is a fixed seeded
permutation. ``stacked_digits`` puts three digits in the three channels of one
``8x8x3`` image; its label ``100 a + 10 b + c`` (digit labels of channels 0, 1,
2) gives 1,000 modes, our analogue of StackedMNIST (docs/references.md).
"""

from __future__ import annotations

import functools

import numpy as np

from trilemma_jax.data.info import DatasetInfo, EvalProtocol, quantised_to_unit
from trilemma_jax.data.sources import ArraySource

LEVELS = 17
NUM_DIGITS = 1797
NUM_TEST = 297  # leaves 1,500 for training
STACKED_NUM_TRAIN = 60_000
STACKED_NUM_TEST = 10_000
_SPLIT_SEED = 8_8_17
_STACK_SEEDS = {'train': 3_000, 'test': 3_001}
# StackedMNIST's protocol: modes counted over 26,000 samples, each channel
# labelled by the digits classifier (docs/references.md).
STACKED_PROTOCOL = EvalProtocol(reference_split='train', modes='classifier', mode_samples=26_000)


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
  """``(pixels uint8 [1797, 8, 8], labels int32 [1797])`` from scikit-learn."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  bunch = datasets.load_digits()
  images = np.asarray(bunch.images)
  if images.shape != (NUM_DIGITS, 8, 8) or not np.array_equal(images, np.round(images)):
    raise ValueError(
        f'scikit-learn returned unexpected digits (shape {images.shape}); expected '
        f'{NUM_DIGITS} images of 8x8 integer values 0..16. Reinstall scikit-learn.')
  return images.astype(np.uint8), np.asarray(bunch.target, dtype=np.int32)


@functools.lru_cache(maxsize=None)
def split_indices(split: str) -> np.ndarray:
  """Indices into the 1,797 digits that form ``split`` (fixed, disjoint)."""
  perm = np.random.default_rng(_SPLIT_SEED).permutation(NUM_DIGITS)
  return np.sort(perm[NUM_TEST:] if split == 'train' else perm[:NUM_TEST])


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(pixels uint8 [N, 8, 8], labels int32 [N])`` of one split."""
  images, labels = _raw()
  idx = split_indices(split)
  return images[idx], labels[idx]


def info(name: str) -> DatasetInfo:
  if name == 'digits':
    return DatasetInfo(
        name='digits', shape=(8, 8, 1), kind='image', num_classes=10,
        num_train=NUM_DIGITS - NUM_TEST, num_test=NUM_TEST, levels=LEVELS)
  return DatasetInfo(
      name='stacked_digits', shape=(8, 8, 3), kind='image', num_classes=1000,
      num_train=STACKED_NUM_TRAIN, num_test=STACKED_NUM_TEST, levels=LEVELS,
      protocol=STACKED_PROTOCOL)


def stacked_triples(split: str) -> np.ndarray:
  """``[N, 3]`` indices into the digits of ``split``: the fixed seeded triples."""
  n_pool = len(split_indices(split))
  n = STACKED_NUM_TRAIN if split == 'train' else STACKED_NUM_TEST
  return np.random.default_rng(_STACK_SEEDS[split]).integers(0, n_pool, size=(n, 3))


def stacked_label(digit_labels: np.ndarray) -> np.ndarray:
  """``100 a + 10 b + c`` for digit labels ``[..., 3]`` of channels 0, 1, 2."""
  digit_labels = np.asarray(digit_labels, dtype=np.int32)
  return 100 * digit_labels[..., 0] + 10 * digit_labels[..., 1] + digit_labels[..., 2]


@functools.lru_cache(maxsize=None)
def source(name: str, split: str) -> ArraySource:
  images, labels = _digits_split(split)
  if name == 'digits':
    return ArraySource(quantised_to_unit(images[..., None], LEVELS), labels)
  triples = stacked_triples(split)
  # [N, 3, 8, 8] -> [N, 8, 8, 3]: digit k of the triple becomes channel k.
  stacked = np.moveaxis(images[triples], 1, -1)
  return ArraySource(quantised_to_unit(stacked, LEVELS), stacked_label(labels[triples]))
