"""Fashion-MNIST from local IDX files, prepared once into a TFDS data directory.

Debian's ``dataset-fashion-mnist`` package installs the four IDX files under
``/usr/share/datasets/fashion-mnist/``. The canonical TFDS builder cannot use
them as a manual download (Debian re-gzipped them, so the byte checksums
differ), hence this small builder: it reads the IDX files from ``manual_dir``
and yields PIL images, which TFDS encodes without TensorFlow, into
``array_record`` files that ``tfds.data_source`` reads by index.

TFDS writes the prepared files into a temporary directory and renames it only
once every split is complete, so an interrupted preparation never leaves a
directory that would later load as if it were whole.
"""

from __future__ import annotations

import gzip
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

DEBIAN_PACKAGE = 'dataset-fashion-mnist'
DEFAULT_IDX_DIR = '/usr/share/datasets/fashion-mnist'
IDX_DIR_ENV = 'TRILEMMA_FASHION_MNIST_DIR'
TFDS_NAME = 'fashion_mnist_idx'
# Prefix of the IDX files of each split, as published by Zalando Research.
_FILE_PREFIX = {'train': 'train', 'test': 't10k'}
_NUM_EXAMPLES = {'train': 60_000, 'test': 10_000}
# Class names in label order (Xiao, Rasul and Vollgraf 2017).
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
               'Shirt', 'Sneaker', 'Bag', 'Ankle boot')

_INSTALL_HINT = (
    f'On Debian/Ubuntu install them with `apt-get install {DEBIAN_PACKAGE}`; elsewhere '
    'download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, '
    't10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from '
    f'https://github.com/zalandoresearch/fashion-mnist and set ${IDX_DIR_ENV} to their folder.')


def idx_dir() -> str:
  """Folder with the IDX files: ``$TRILEMMA_FASHION_MNIST_DIR`` or Debian's."""
  return os.environ.get(IDX_DIR_ENV) or DEFAULT_IDX_DIR


def idx_path(directory: str, split: str, what: str) -> str:
  """Path of the images (``what='images'``) or labels file of ``split``.

  Accepts the gzipped files (as shipped) or their decompressed form.
  """
  ndim = 3 if what == 'images' else 1
  base = os.path.join(directory, f'{_FILE_PREFIX[split]}-{what}-idx{ndim}-ubyte')
  for candidate in (base + '.gz', base):
    if os.path.exists(candidate):
      return candidate
  raise FileNotFoundError(
      f'Fashion-MNIST {split} {what} not found: neither {base}.gz nor {base} exists. '
      + _INSTALL_HINT)


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file of unsigned bytes (gzipped or not) into a uint8 array.

  The format: two zero bytes, a type byte (0x08 = uint8), a byte with the
  number of dimensions, then each dimension as a big-endian uint32, then data.
  """
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise ValueError(f'{path} is not an IDX file of unsigned bytes (bad magic number). '
                     + _INSTALL_HINT)
  ndim = raw[3]
  header = 4 + 4 * ndim
  dims = tuple(int(d) for d in np.frombuffer(raw, dtype='>u4', count=ndim, offset=4))
  expected = int(np.prod(dims))
  if len(raw) - header != expected:
    raise ValueError(
        f'{path} is truncated or corrupt: header says {dims} = {expected} bytes, file has '
        f'{len(raw) - header}. ' + _INSTALL_HINT)
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 [N, 28, 28], labels uint8 [N])`` of one split, checked."""
  images = read_idx(idx_path(directory, split, 'images'))
  labels = read_idx(idx_path(directory, split, 'labels'))
  n = _NUM_EXAMPLES[split]
  if images.shape != (n, 28, 28) or labels.shape != (n,) or labels.max() > 9:
    raise ValueError(
        f'Fashion-MNIST {split} files in {directory} hold images {images.shape} and labels '
        f'{labels.shape}; expected ({n}, 28, 28) and ({n},) with labels 0..9. '
        + _INSTALL_HINT)
  return images, labels


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST built from the IDX files in ``manual_dir``."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Built from local IDX files (e.g. Debian dataset-fashion-mnist).'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Place the four Fashion-MNIST IDX files in manual_dir. ' + (
      _INSTALL_HINT)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='Fashion-MNIST: 28x28 grayscale images of 10 clothing classes.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(28, 28, 1)),
            'label': tfds.features.ClassLabel(names=list(CLASS_NAMES)),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://github.com/zalandoresearch/fashion-mnist',
        # Keep the IDX order, so example i of a split is image i of its file.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    # Reading here (not lazily in the generator) fails before anything is written.
    directory = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(*read_split(directory, split))
            for split in _FILE_PREFIX}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    for i in range(images.shape[0]):
      yield i, {'image': Image.fromarray(images[i]), 'label': int(labels[i])}


def prepare(data_dir: str, *, manual_dir: str | None = None) -> FashionMnistIdx:
  """Prepares the dataset in ``data_dir`` unless it already is; returns the builder.

  Args:
    data_dir: TFDS data directory that receives ``fashion_mnist_idx/1.0.0``.
    manual_dir: folder of the IDX files; default :func:`idx_dir`.
  """
  builder = FashionMnistIdx(data_dir=data_dir)
  if builder.is_prepared():
    return builder
  manual_dir = manual_dir or idx_dir()
  for split in _FILE_PREFIX:  # a clear error now rather than deep inside TFDS
    idx_path(manual_dir, split, 'images')
    idx_path(manual_dir, split, 'labels')
  logging.info('Preparing Fashion-MNIST from %s into %s (once, about 10 s).', manual_dir,
               data_dir)
  config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  try:
    builder.download_and_prepare(file_format='array_record', download_config=config)
  except OSError:
    # Another process may have finished first: its rename wins, ours fails.
    if not FashionMnistIdx(data_dir=data_dir).is_prepared():
      raise
  return FashionMnistIdx(data_dir=data_dir)
