"""Image datasets read by index through ``tfds.data_source`` (no TensorFlow).

Any TFDS image dataset prepared in ``array_record`` format works: an ``image``
feature of fixed shape and dtype uint8, and optionally a ``label`` ClassLabel.
Images become float32 in ``[-1, 1]``. Nothing is downloaded implicitly:
preparation is an explicit step (:func:`prepare`), so a training job never
starts a multi-gigabyte download by accident, and a missing dataset fails at
once with the command that prepares it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from trilemma_jax.data.info import DatasetInfo, quantised_to_unit

IMAGE_KEY = 'image'
LABEL_KEY = 'label'


class TfdsSource:
  """Wraps a TFDS data source: ``{'image': uint8, 'label'}`` -> ``{'x', 'label'}``.

  Attributes:
    shape: per-example ``(H, W, C)``.
    levels: quantisation levels of the stored pixels (256 for uint8).
  """

  def __init__(self, source: Sequence[Any], shape: tuple[int, ...], has_label: bool,
               name: str):
    self._source = source
    self.shape = shape
    self.levels = 256
    self._has_label = has_label
    self._name = name

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    batch = self._convert([self._source[int(index)]])
    return {'x': batch['x'][0], 'label': batch['label'][0]}

  def _getitems(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    batch = self.read_batch(np.asarray(indices, dtype=np.int64))
    return [{'x': x, 'label': y} for x, y in zip(batch['x'], batch['label'])]

  def read_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """``{'x': float32 [B, H, W, C], 'label': int32 [B]}`` for ``indices`` ``[B]``."""
    keys = [int(i) for i in indices]
    if hasattr(self._source, '__getitems__'):
      examples = self._source.__getitems__(keys)
    else:
      examples = [self._source[k] for k in keys]
    return self._convert(examples)

  def _convert(self, examples: Sequence[Any]) -> dict[str, np.ndarray]:
    images = np.stack([np.asarray(ex[IMAGE_KEY]) for ex in examples])
    if images.dtype != np.uint8 or images.shape[1:] != self.shape:
      raise ValueError(
          f'{self._name}: expected uint8 images of shape {self.shape}, got {images.dtype} '
          f'{images.shape[1:]}. The prepared files do not match the dataset info; '
          'prepare the dataset again into an empty data_dir.')
    if self._has_label:
      labels = np.asarray([ex[LABEL_KEY] for ex in examples], dtype=np.int32)
    else:
      labels = np.zeros(len(examples), np.int32)
    return {'x': quantised_to_unit(images, self.levels), 'label': labels}

  def __repr__(self) -> str:
    return f'TfdsSource({self._name}, n={len(self)}, shape={self.shape})'


def builder(tfds_name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``tfds_name``; unknown names raise a clear ValueError."""
  try:
    return tfds.builder(tfds_name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f'tfds:{tfds_name} is not a TFDS dataset known to tensorflow-datasets '
        f'{tfds.__version__}. Check the name in the catalogue '
        '(https://www.tensorflow.org/datasets/catalog/overview), e.g. tfds:mnist.') from e


def _features(b: tfds.core.DatasetBuilder, name: str) -> tuple[tuple[int, ...], int | None]:
  """``(image shape, num_classes or None)`` from the builder's features."""
  features = b.info.features
  image = features[IMAGE_KEY] if IMAGE_KEY in features else None
  if not isinstance(image, tfds.features.Image):
    raise ValueError(
        f'{name} has no {IMAGE_KEY!r} image feature (features: {list(features)}); only '
        'image datasets are supported. Load other data yourself and use '
        'data.register_array(...).')
  shape = tuple(image.shape)
  if None in shape or len(shape) != 3 or np.dtype(image.np_dtype) != np.uint8:
    raise ValueError(
        f'{name} has images of shape {image.shape} and dtype {np.dtype(image.np_dtype)}; '
        'expected a '
        'fixed (H, W, C) shape of uint8. Resize the data yourself and use '
        'data.register_array(...).')
  label = features[LABEL_KEY] if LABEL_KEY in features else None
  num_classes = label.num_classes if isinstance(label, tfds.features.ClassLabel) else None
  return shape, num_classes


def not_prepared_message(name: str, tfds_name: str, data_dir: str) -> str:
  return (
      f'{name} is not prepared in {data_dir} (no array_record files there). Prepare it '
      f'once, with network access: `data.prepare({name!r}, data_dir={data_dir!r})` '
      f'or `tfds build {tfds_name} --data_dir={data_dir} --file_format=array_record`; '
      'or pass data_dir= (or set $TRILEMMA_DATA_DIR) to where it is already prepared.')


def open_split(tfds_name: str, split: str, data_dir: str, *,
               name: str | None = None) -> TfdsSource:
  """Opens one split of a prepared dataset for random access."""
  name = name or f'tfds:{tfds_name}'
  b = builder(tfds_name, data_dir)
  shape, num_classes = _features(b, name)
  try:
    source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises several types for the same root cause.
    if not b.is_prepared():
      raise ValueError(not_prepared_message(name, tfds_name, data_dir)) from e
    available = list(b.info.splits)
    if split not in available:
      raise ValueError(f'{name} has no {split!r} split; it has {available}.') from e
    raise ValueError(
        f'{name} is prepared in {data_dir} but cannot be read by index ({e}). '
        'tfds.data_source needs file_format=array_record: prepare it again into an '
        'empty data_dir with that format.') from e
  return TfdsSource(source, shape, num_classes is not None, name)


def load_info(tfds_name: str, data_dir: str, *, name: str | None = None) -> DatasetInfo:
  """Dataset info; the split sizes are those of the prepared (or mocked) files."""
  name = name or f'tfds:{tfds_name}'
  b = builder(tfds_name, data_dir)
  shape, num_classes = _features(b, name)
  counts = {'train': len(open_split(tfds_name, 'train', data_dir, name=name))}
  known_splits = list(b.info.splits)
  if known_splits and 'test' not in known_splits:
    counts['test'] = 0  # e.g. datasets published with a train split only
  else:
    counts['test'] = len(open_split(tfds_name, 'test', data_dir, name=name))
  return DatasetInfo(
      name=name, shape=shape, kind='image', num_classes=num_classes,
      num_train=counts['train'], num_test=counts['test'], levels=256)


def prepare(tfds_name: str, data_dir: str) -> None:
  """Downloads and prepares ``tfds_name`` as array_record (needs network)."""
  builder(tfds_name, data_dir).download_and_prepare(file_format='array_record')
