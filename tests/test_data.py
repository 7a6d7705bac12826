"""Tests of trilemma_jax.data: datasets by name, the grain pipeline, errors."""

import functools
import gzip
import os

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from trilemma_jax import data
from trilemma_jax.data import digits as digits_lib
from trilemma_jax.data import fashion_mnist, tfds_source

FASHION_FILES = os.path.join(fashion_mnist.DEFAULT_IDX_DIR, 'train-images-idx3-ubyte.gz')


def _id_source(n: int) -> data.ArraySource:
  """A source whose label is the example's index, to trace identities."""
  x = np.linspace(-1, 1, 2 * n, dtype=np.float32).reshape(n, 2)
  return data.ArraySource(x, np.arange(n, dtype=np.int32))


def _take(it, k):
  return [next(it) for _ in range(k)]


# ----------------------------------------------------------------- 2-D mixtures


def test_ring8_means_and_std():
  info = data.load_info('ring8')
  expected = np.array([[np.cos(np.pi * i / 4), np.sin(np.pi * i / 4)] for i in range(8)])
  np.testing.assert_allclose(info.means, expected, atol=1e-12)
  gaps = np.linalg.norm(info.means[:, None] - info.means[None], axis=-1)[~np.eye(8, dtype=bool)]
  np.testing.assert_allclose(gaps.min(), 2 * np.sin(np.pi / 8), rtol=1e-12)  # 8 distinct
  assert (info.kind, info.shape, info.num_classes, info.std, info.levels) == (
      'points', (2,), 8, 0.01, None)
  assert info == data.load_info('ring8') and hash(info) == hash(data.load_info('ring8'))


def test_grid25_means_and_std():
  info = data.load_info('grid25')
  assert info.means.shape == (25, 2)
  assert {tuple(m) for m in info.means} == {(a, b) for a in range(-4, 5, 2)
                                            for b in range(-4, 5, 2)}
  assert (info.num_classes, info.std, info.num_train, info.num_test) == (25, 0.05, 100_000,
                                                                        10_000)


@pytest.mark.parametrize('name', ['ring8', 'grid25'])
def test_mixture_samples_follow_their_component(name):
  info = data.load_info(name)
  x, label = data.load_arrays(name, 'train')
  assert x.shape == (info.num_train, 2) and x.dtype == np.float32 and label.dtype == np.int32
  residual = x.astype(np.float64) - info.means[label]
  # 2e5 coordinates: the sample std is within ~0.2% of the truth; 2% cannot be luck.
  np.testing.assert_allclose(residual.std(), info.std, rtol=0.02)
  np.testing.assert_allclose(residual.mean(0), 0.0, atol=5 * info.std / np.sqrt(len(x)))
  nearest = np.argmin(np.linalg.norm(x[:, None] - info.means[None], axis=-1), axis=1)
  np.testing.assert_array_equal(nearest, label)
  counts = np.bincount(label, minlength=info.num_classes)
  assert counts.min() > 0.8 * len(x) / info.num_classes
  x_test, _ = data.load_arrays(name, 'test')
  assert x_test.shape == (info.num_test, 2)
  # A different draw, not a copy: no test point (both coordinates) is a train point.
  assert not np.isin(x_test.view(np.complex64), x.view(np.complex64)).any()


# ------------------------------------------------------------------- pipeline


def test_same_seed_same_batches_other_seed_other_batches():
  source = data.get_source('grid25', 'train')
  a = _take(data.train_iterator(source, global_batch_size=32, seed=7), 4)
  b = _take(data.train_iterator(source, global_batch_size=32, seed=7), 4)
  c = _take(data.train_iterator(source, global_batch_size=32, seed=8), 4)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u['x'], v['x'])
    np.testing.assert_array_equal(u['label'], v['label'])
  assert not np.array_equal(a[0]['x'], c[0]['x'])
  assert a[0]['x'].shape == (32, 2) and a[0]['x'].dtype == np.float32
  assert a[0]['label'].shape == (32,) and a[0]['label'].dtype == np.int32


def test_every_epoch_is_a_new_permutation():
  it = data.train_iterator(_id_source(12), global_batch_size=4, seed=0)
  ids = np.concatenate([b['label'] for b in _take(it, 9)])  # three epochs
  epochs = ids.reshape(3, 12)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(12))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])
  # A batch larger than the data spans several whole epochs and stays full.
  tiny = data.train_iterator(_id_source(3), global_batch_size=8, seed=0)
  ids = np.concatenate([b['label'] for b in _take(tiny, 3)])
  for epoch in ids.reshape(8, 3):
    np.testing.assert_array_equal(np.sort(epoch), np.arange(3))


def test_processes_split_the_global_batch():
  source = _id_source(64)
  single = _take(data.train_iterator(source, global_batch_size=8, seed=1,
                                     process_index=0, process_count=1), 10)
  shards = [_take(data.train_iterator(source, global_batch_size=8, seed=1,
                                      process_index=p, process_count=2), 10)
            for p in range(2)]
  for step in range(10):
    first, second = shards[0][step]['label'], shards[1][step]['label']
    assert first.shape == second.shape == (4,)
    assert not set(first) & set(second)
    np.testing.assert_array_equal(np.concatenate([first, second]), single[step]['label'])
  # Defaults come from jax: one process here.
  default = next(data.train_iterator(source, global_batch_size=8, seed=1))
  np.testing.assert_array_equal(default['label'], single[0]['label'])


def test_iterator_state_round_trip_through_orbax(tmp_path):
  source = data.get_source('ring8', 'train')
  it = data.train_iterator(source, global_batch_size=16, seed=5)
  _take(it, 3)
  manager = ocp.CheckpointManager(
      tmp_path / 'ckpt', options=ocp.CheckpointManagerOptions(max_to_keep=2))
  manager.save(3, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointSave(it),
      state=ocp.args.StandardSave({'step': np.array(3, np.int32)})))
  manager.wait_until_finished()
  expected = _take(it, 3)

  fresh = data.train_iterator(source, global_batch_size=16, seed=5)
  restored = manager.restore(3, args=ocp.args.Composite(
      data=grain.checkpoint.CheckpointRestore(fresh),
      state=ocp.args.StandardRestore({'step': np.array(0, np.int32)})))
  assert int(restored['state']['step']) == 3
  for want, got in zip(expected, _take(restored['data'], 3)):
    np.testing.assert_array_equal(want['x'], got['x'])
  manager.close()
  # get_state/set_state directly, without orbax.
  again = data.train_iterator(source, global_batch_size=16, seed=5)
  again.set_state(it.get_state())
  np.testing.assert_array_equal(next(again)['x'], next(it)['x'])


@pytest.mark.parametrize('kwargs, match', [
    (dict(global_batch_size=6, process_index=0, process_count=4), 'not divisible'),
    (dict(global_batch_size=8, process_index=2, process_count=2), 'process_index'),
    (dict(global_batch_size=0), 'global_batch_size'),
])
def test_train_iterator_rejects_bad_sharding(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.train_iterator(_id_source(8), seed=0, **kwargs)


def test_eval_batches_in_order_with_remainder():
  batches = list(data.eval_batches(_id_source(10), batch_size=4))
  assert [len(b['label']) for b in batches] == [4, 4, 2]
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches]), np.arange(10))
  with pytest.raises(ValueError, match='batch_size'):
    data.eval_batches(_id_source(10), batch_size=0)


# --------------------------------------------------------------------- digits


def test_digits_range_shape_and_fixed_split():
  info = data.load_info('digits')
  x, label = data.load_arrays('digits', 'train')
  x_test, label_test = data.load_arrays('digits', 'test')
  assert x.shape == (info.num_train, 8, 8, 1) and x_test.shape == (info.num_test, 8, 8, 1)
  assert info.num_train + info.num_test == 1797 and info.levels == 17
  assert x.min() == -1.0 and x.max() == 1.0
  np.testing.assert_array_equal(x * 8 + 8, np.round(x * 8 + 8))  # the 17 levels
  assert set(label) == set(label_test) == set(range(10))
  train_idx, test_idx = digits_lib.split_indices('train'), digits_lib.split_indices('test')
  assert not set(train_idx) & set(test_idx)
  # Against scikit-learn directly, in float64.
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  raw = load_digits()
  np.testing.assert_allclose(x_test[..., 0], raw.images[test_idx] / 8.0 - 1.0, atol=1e-7)
  np.testing.assert_array_equal(label_test, raw.target[test_idx])
  # Fixed: rebuilding from scratch gives the same split.
  digits_lib.split_indices.cache_clear()
  digits_lib.source.cache_clear()
  np.testing.assert_array_equal(data.load_arrays('digits', 'test')[0], x_test)


def test_stacked_digits_label_formula():
  info = data.load_info('stacked_digits')
  assert (info.shape, info.num_classes, info.levels) == ((8, 8, 3), 1000, 17)
  for split in ('train', 'test'):
    x, label = data.load_arrays('stacked_digits', split, limit=300)
    pool_x, pool_label = data.load_arrays('digits', split)
    lookup = {}
    for image, y in zip(pool_x[..., 0], pool_label):
      lookup.setdefault(image.tobytes(), set()).add(int(y))
    for image, y in zip(x, label):
      a, b, c = (lookup[image[..., k].tobytes()] for k in range(3))  # KeyError: foreign digit
      assert any(100 * i + 10 * j + k == y for i in a for j in b for k in c)
  _, full = data.load_arrays('stacked_digits', 'train')
  assert len(full) == info.num_train and full.min() >= 0 and full.max() < 1000
  assert len(np.unique(full)) > 990  # 60 draws per mode on average


# ------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope='session')
def fashion_dir(tmp_path_factory):
  if not os.path.exists(FASHION_FILES):
    pytest.skip(f'needs `apt-get install {fashion_mnist.DEBIAN_PACKAGE}`')
  directory = str(tmp_path_factory.mktemp('tfds'))
  data.prepare('fashion_mnist', data_dir=directory)
  return directory


def _raw_idx(split, what):
  prefix = 'train' if split == 'train' else 't10k'
  ndim, offset = (3, 16) if what == 'images' else (1, 8)
  path = os.path.join(fashion_mnist.DEFAULT_IDX_DIR, f'{prefix}-{what}-idx{ndim}-ubyte.gz')
  with gzip.open(path, 'rb') as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset)


@pytest.mark.slow
def test_fashion_mnist_matches_the_debian_files(fashion_dir):
  info = data.load_info('fashion_mnist', data_dir=fashion_dir)
  assert (info.shape, info.levels, info.num_classes) == ((28, 28, 1), 256, 10)
  train = data.get_source('fashion_mnist', 'train', data_dir=fashion_dir)
  test = data.get_source('fashion_mnist', 'test', data_dir=fashion_dir)
  assert (len(train), len(test)) == (info.num_train, info.num_test) == (60_000, 10_000)
  x_test, label_test = data.load_arrays('fashion_mnist', 'test', data_dir=fashion_dir)
  raw_images = _raw_idx('test', 'images').reshape(10_000, 28, 28, 1)
  np.testing.assert_allclose(x_test, raw_images / 127.5 - 1.0, atol=1e-7)
  np.testing.assert_array_equal(label_test, _raw_idx('test', 'labels'))
  assert set(label_test) == set(range(10))
  raw_train, raw_train_labels = _raw_idx('train', 'images'), _raw_idx('train', 'labels')
  for i in (0, 12_345, 59_999):
    item = train[i]
    np.testing.assert_allclose(item['x'], raw_train[i * 784:(i + 1) * 784].reshape(28, 28, 1)
                               / 127.5 - 1.0, atol=1e-7)
    assert item['label'] == raw_train_labels[i]
  batch = next(data.train_iterator(train, global_batch_size=16, seed=0))
  assert batch['x'].shape == (16, 28, 28, 1) and batch['x'].dtype == np.float32


def test_fashion_missing_files_name_the_package(tmp_path, monkeypatch):
  monkeypatch.setenv(fashion_mnist.IDX_DIR_ENV, str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
    data.get_source('fashion_mnist', 'train', data_dir=str(tmp_path / 'tfds'))


def test_interrupted_fashion_preparation_leaves_nothing_loadable(tmp_path, monkeypatch):
  if not os.path.exists(FASHION_FILES):
    pytest.skip(f'needs `apt-get install {fashion_mnist.DEBIAN_PACKAGE}`')

  complete = fashion_mnist.FashionMnistIdx._generate_examples

  def interrupted(self, images, labels):
    for count, example in enumerate(complete(self, images, labels)):
      if count == 5:
        raise RuntimeError('simulated interruption')
      yield example

  monkeypatch.setattr(fashion_mnist.FashionMnistIdx, '_generate_examples', interrupted)
  directory = str(tmp_path / 'tfds')
  with pytest.raises(RuntimeError, match='simulated interruption'):
    data.prepare('fashion_mnist', data_dir=directory)
  assert not fashion_mnist.FashionMnistIdx(data_dir=directory).is_prepared()
  with pytest.raises(ValueError, match='not prepared'):
    tfds_source.open_split(fashion_mnist.TFDS_NAME, 'train', directory)


# ------------------------------------------------------------------------ TFDS


class _BatchedReadMock(tfds.testing.PickableDataSourceMock):
  """tfds 4.9.10's mock stores ``__getitems__`` as a plain attribute whose
  function still expects ``self`` (only ``__getitem__`` gets bound as a magic
  method), so batched reads fail with a TypeError; bind it here."""

  def __setattr__(self, name, value):
    if name == '__getitems__':
      value = functools.partial(value, self)
    super().__setattr__(name, value)


def _mock_array_record():
  mock = _BatchedReadMock()
  mock.return_value = _BatchedReadMock()
  return mock


def test_tfds_by_name_with_mock_data(tmp_path):
  with tfds.testing.mock_data(num_examples=12,
                              mock_array_record_data_source=_mock_array_record()):
    info = data.load_info('tfds:mnist', data_dir=str(tmp_path))
    assert (info.name, info.shape, info.kind, info.levels) == ('tfds:mnist', (28, 28, 1),
                                                               'image', 256)
    assert (info.num_classes, info.num_train, info.num_test) == (10, 12, 12)
    source = data.get_source('tfds:mnist', 'train', data_dir=str(tmp_path))
    raw = tfds.data_source('mnist', split='train', data_dir=str(tmp_path))
    for i in range(len(source)):
      item = source[i]
      assert item['x'].dtype == np.float32 and item['label'].dtype == np.int32
      np.testing.assert_allclose(item['x'], raw[i]['image'] / 127.5 - 1.0, atol=1e-7)
      assert item['label'] == raw[i]['label']
    batch = next(data.train_iterator(source, global_batch_size=4, seed=0))
    assert batch['x'].shape == (4, 28, 28, 1)
    x, label = data.load_arrays('tfds:mnist', 'test', data_dir=str(tmp_path), limit=5)
    assert x.shape == (5, 28, 28, 1) and label.shape == (5,)


def test_tfds_not_prepared_says_how_to_prepare(tmp_path):
  with pytest.raises(ValueError, match='not prepared.*tfds build mnist'):
    data.get_source('tfds:mnist', 'train', data_dir=str(tmp_path))
  with pytest.raises(ValueError, match='not a TFDS dataset'):
    data.load_info('tfds:no_such_dataset_xyz', data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="no 'image' image feature"):
    data.load_info('tfds:imdb_reviews', data_dir=str(tmp_path))
  with pytest.raises(ValueError, match=r'\(None, None, 3\).*fixed \(H, W, C\)'):
    data.load_info('tfds:oxford_flowers102', data_dir=str(tmp_path))


# ------------------------------------------------------------------ user arrays


def test_register_array_points_split_90_10():
  x = np.stack([np.arange(50.0), -np.arange(50.0)], axis=1)
  info = data.register_array('my_points', x, labels=np.arange(50) % 3)
  assert (info.name, info.kind, info.shape, info.num_classes) == ('my_points', 'points',
                                                                  (2,), 3)
  assert (info.num_train, info.num_test, info.levels) == (45, 5, None)
  x_train, y_train = data.load_arrays('my_points', 'train')
  x_test, y_test = data.load_arrays('my_points', 'test')
  ids = np.concatenate([x_train[:, 0], x_test[:, 0]]).astype(int)
  np.testing.assert_array_equal(np.sort(ids), np.arange(50))
  np.testing.assert_array_equal(np.concatenate([y_train, y_test]), ids % 3)


def test_npz_uint8_images_with_test_split(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
  path = tmp_path / 'mine.npz'
  np.savez(path, x=images, label=np.array([0, 1, 2, 3, 4, 5]),
           x_test=images[:2], label_test=np.array([7, 1]))
  name = f'npz:{path}'
  info = data.load_info(name)
  assert (info.shape, info.kind, info.levels, info.num_classes) == ((4, 4, 3), 'image', 256, 8)
  x, label = data.load_arrays(name, 'train')
  np.testing.assert_allclose(x, images / 127.5 - 1.0, atol=1e-7)
  np.testing.assert_array_equal(data.load_arrays(name, 'test')[1], [7, 1])
  item = data.get_source(name, 'test')[0]
  assert item['x'].dtype == np.float32 and item['label'] == 7


@pytest.mark.parametrize('kwargs, match', [
    (dict(x=np.zeros((10, 4, 4))), r'add a channel axis'),
    (dict(x=np.zeros((10, 2), np.int64)), 'dtype int64'),
    (dict(x=np.full((10, 2, 2, 1), 3.0)), r'expected \[-1, 1\]'),
    (dict(x=np.zeros((10, 2)), labels=np.zeros(9, int)), r'expected \(10,\)'),
    (dict(x=np.zeros((10, 2)), labels=np.zeros(10)), 'expected integers'),
    (dict(x=np.zeros((10, 2)), x_test=np.zeros((3, 5))), 'same shape'),
    (dict(x=np.zeros((5, 2))), 'too few'),
])
def test_register_array_rejects_bad_arrays(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.register_array('bad', **kwargs)


def test_clear_errors_for_names_files_and_splits(tmp_path):
  with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*tfds:mnist"):
    data.load_info('mnist')
  with pytest.raises(FileNotFoundError, match='np.savez'):
    data.get_source(f'npz:{tmp_path}/absent.npz', 'train')
  np.savez(tmp_path / 'typo.npz', x=np.zeros((10, 2)), labels=np.zeros(10, int))
  with pytest.raises(ValueError, match="expected .*'label'"):
    data.load_info(f'npz:{tmp_path}/typo.npz')
  with pytest.raises(ValueError, match='split must be one of'):
    data.get_source('ring8', 'validation')
  with pytest.raises(ValueError, match='built-in'):
    data.register_array('digits', np.zeros((10, 2)))
  with pytest.raises(ValueError, match='limit'):
    data.load_arrays('ring8', 'test', limit=0)
