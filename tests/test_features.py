"""Feature networks: gated classifiers, their cache, features and composed quality scores."""

import dataclasses
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from trilemma_jax import data, metrics
from trilemma_jax.data import fashion_mnist
from trilemma_jax.data.info import quantised_to_unit
from trilemma_jax.metrics import features as features_lib


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('feature_nets'))


@pytest.fixture(scope='module')
def train_calls():
  """Counts calls of the training function for the whole module."""
  calls = []
  original = features_lib.train_classifier

  def counting(*args, **kwargs):
    calls.append(args[0])
    return original(*args, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(features_lib, 'train_classifier', counting)
    yield calls


@pytest.fixture(scope='module')
def digits_net(cache_dir, train_calls):
  """Trained here (the package ships one too; see the shipped-weights tests)."""
  net = metrics.get_feature_net('digits', cache_dir=cache_dir, retrain=True)
  assert len(train_calls) == 1
  return net


@pytest.fixture(scope='module')
def digits_test():
  return data.load_arrays('digits', 'test')


@pytest.mark.slow
def test_digits_classifier_reaches_the_required_accuracy(digits_net, digits_test, cache_dir):
  x, y = digits_test
  independent = float(np.mean(digits_net.predict(x) == y))
  assert digits_net.test_accuracy == independent
  assert independent >= 0.97
  assert digits_net.min_accuracy == metrics.MIN_TEST_ACCURACY['digits'] == 0.97
  # The accuracy is stored with the checkpoint as JSON metadata.
  directory = os.path.join(cache_dir, 'digits')
  assert digits_net.checkpoint == directory
  _, stored = features_lib.load_checkpoint(directory, metrics.FEATURE_NET_SPECS['digits'])
  assert stored['test_accuracy'] == independent
  assert stored['num_test'] == x.shape[0]


@pytest.mark.slow
def test_second_call_loads_the_cache_and_gives_identical_features(
    digits_net, digits_test, cache_dir, train_calls):
  calls_before = len(train_calls)
  mtime = os.stat(os.path.join(cache_dir, 'digits')).st_mtime_ns
  loaded = metrics.get_feature_net('digits', cache_dir=cache_dir, shipped=False)
  assert len(train_calls) == calls_before
  assert os.stat(os.path.join(cache_dir, 'digits')).st_mtime_ns == mtime
  x = digits_test[0]
  np.testing.assert_array_equal(loaded.features(x), digits_net.features(x))
  assert loaded.test_accuracy == digits_net.test_accuracy


@pytest.mark.slow
def test_features_shape_dtype_and_blocking(digits_net, digits_test):
  x = digits_test[0]
  feats = digits_net.features(x)
  assert feats.shape == (x.shape[0], 128) == (x.shape[0], digits_net.feature_dim)
  assert feats.dtype == np.float32
  assert np.all(feats >= 0)  # ReLU layer
  # Blocks of 64 (with a padded last block) give the rows of one whole pass.
  blocked = dataclasses.replace(digits_net, block_size=64)
  np.testing.assert_allclose(blocked.features(x), feats, rtol=1e-5, atol=1e-5)
  # Rows do not depend on their neighbours (no batch statistics).
  np.testing.assert_allclose(digits_net.features(x[:7]), feats[:7], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_no_recompile_across_blocks_and_calls(digits_net, digits_test, monkeypatch):
  x = digits_test[0]
  net = dataclasses.replace(digits_net, block_size=32)
  forward = features_lib._forward_impl  # pylint: disable=protected-access
  counted = jax.jit(chex.assert_max_traces(forward, n=1), static_argnames=('model', 'per_channel'))
  monkeypatch.setattr(features_lib, '_forward', counted)
  # 297 images = 9 full blocks and a padded tenth; then again, reversed, and 40
  # images (a full block and a padded one): a single compilation.
  net.features(x)
  net.predict(x[::-1])
  net.features(x[:40])
  with pytest.raises(AssertionError, match='traced'):
    net.features(x[:5])  # below one block: a smaller block, a new trace


@pytest.mark.slow
def test_stacked_digits_per_channel_labels(cache_dir, train_calls, digits_net):
  calls_before = len(train_calls)
  net = metrics.get_feature_net('stacked_digits', cache_dir=cache_dir, shipped=False)
  assert len(train_calls) == calls_before  # reuses the digits classifier
  assert net.dataset == 'stacked_digits' and net.per_channel
  x, y = data.load_arrays('stacked_digits', 'test')
  predicted = net.predict(x)
  assert predicted.shape == (x.shape[0], 3) and predicted.dtype == np.int32
  truth = np.stack([y // 100, y // 10 % 10, y % 10], axis=1)
  per_channel = float(np.mean(predicted == truth))
  assert per_channel >= 0.97
  assert net.test_accuracy == pytest.approx(per_channel, abs=1e-12)
  # Channel k of the stacked image is the digits classifier applied to that channel.
  np.testing.assert_array_equal(predicted[:, 1], digits_net.predict(x[..., 1:2]))
  feats = net.features(x[:50])
  assert feats.shape == (50, 3 * 128) == (50, net.feature_dim)
  np.testing.assert_allclose(feats[:, 256:], digits_net.features(x[:50, ..., 2:3]),
                             rtol=1e-5, atol=1e-5)
  # The labels feed the mode metrics directly; the test split covers most of 1,000 modes.
  modes = metrics.label_mode_metrics(predicted)
  assert modes['max_modes'] == 1000
  assert modes['modes'] == len(np.unique(predicted @ np.array([100, 10, 1])))


def test_shipped_digits_net_is_loaded_without_training(tmp_path, train_calls, digits_test):
  calls = len(train_calls)
  net = metrics.get_feature_net('digits', cache_dir=str(tmp_path))
  stacked = metrics.get_feature_net('stacked_digits', cache_dir=str(tmp_path))
  assert len(train_calls) == calls
  assert os.listdir(tmp_path) == []  # nothing trained, nothing cached
  assert net.checkpoint == stacked.checkpoint == features_lib.shipped_path('digits')
  assert net.checkpoint.startswith(features_lib.SHIPPED_DIR)
  x, y = digits_test
  # The accuracy is measured on the data here, and passes the gate.
  assert net.test_accuracy == float(np.mean(net.predict(x) == y)) >= 0.97
  assert stacked.test_accuracy >= 0.97


@pytest.mark.slow
def test_shipped_digits_net_is_what_the_project_trains(digits_net, digits_test, cache_dir):
  """The shipped weights are the default training's (seed 0) result, up to float rounding."""
  # The cache holds the network trained here; a default call still takes the shipped one.
  shipped = metrics.get_feature_net('digits', cache_dir=cache_dir)
  assert shipped.checkpoint == features_lib.shipped_path('digits') != digits_net.checkpoint
  x, _ = digits_test
  agree = float(np.mean(shipped.predict(x) == digits_net.predict(x)))
  assert agree >= 0.98, agree
  assert abs(shipped.test_accuracy - digits_net.test_accuracy) <= 0.02


def test_shipped_net_of_other_settings_is_refused(tmp_path, digits_test):
  spec = metrics.FEATURE_NET_SPECS['digits']
  num_train = data.load_info('digits').num_train
  params, metadata = features_lib.load_shipped('digits', spec, num_train)
  assert metadata['training']['seed'] == 0
  assert metadata['training']['steps'] == features_lib.default_steps(spec, num_train)
  # A spec edited without re-exporting the weights: refused, with the command that re-exports.
  for changed in (dataclasses.replace(spec, epochs=spec.epochs - 1),
                  dataclasses.replace(spec, feature_dim=64)):
    with pytest.raises(ValueError, match='train_classifier.py --dataset=digits --retrain --export'):
      features_lib.load_shipped('digits', changed, num_train)
  # Export and load are inverse.
  path = features_lib.export_shipped('digits', params, metadata, str(tmp_path))
  again, meta_again = features_lib.load_shipped('digits', spec, num_train, path)
  chex.assert_trees_all_equal(again, params)
  assert meta_again == metadata
  # Parameters that do not fit the architecture are refused too.
  np.savez(path, **{'Dense_0/kernel': np.zeros((3, 3), np.float32)})
  with pytest.raises(ValueError, match='does not hold the parameters'):
    features_lib.load_shipped('digits', spec, num_train, path)


def test_accuracy_gate_raises_and_is_rechecked_on_load(tmp_path, train_calls):
  cache = str(tmp_path)
  with pytest.raises(metrics.FeatureNetAccuracyError, match=r"'digits'.*below the required 0\.97"):
    metrics.get_feature_net('digits', cache_dir=cache, steps=2)
  calls = len(train_calls)
  # The failing network was saved with its honest accuracy; loading it fails the same way.
  with pytest.raises(metrics.FeatureNetAccuracyError, match='retrain=True'):
    metrics.get_feature_net('digits', cache_dir=cache, shipped=False)
  assert len(train_calls) == calls
  # So does the per-channel use of it (its base network fails first).
  with pytest.raises(metrics.FeatureNetAccuracyError, match="'digits'"):
    metrics.get_feature_net('stacked_digits', cache_dir=cache, shipped=False)
  # Default calls score with the shipped network, whatever the cache holds.
  assert metrics.get_feature_net('digits', cache_dir=cache).checkpoint.endswith('digits.npz')


def test_gate_applies_to_a_checkpoint_with_bad_weights(tmp_path):
  spec = metrics.FEATURE_NET_SPECS['digits']
  params = spec.model().init(jax.random.key(1), np.zeros((1, 8, 8, 1), np.float32))['params']
  x, y = data.load_arrays('digits', 'test')
  accuracy = features_lib.classifier_accuracy(spec.model(), params, x, y)
  assert accuracy < 0.5  # an untrained network
  directory = features_lib.checkpoint_dir('digits', str(tmp_path))
  features_lib.save_checkpoint(directory, params, {
      'format_version': features_lib.FORMAT_VERSION, 'test_accuracy': accuracy,
      'architecture': spec.architecture()})
  with pytest.raises(metrics.FeatureNetAccuracyError, match=f'{accuracy:.4f}'):
    metrics.get_feature_net('digits', cache_dir=str(tmp_path), shipped=False)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
  spec = metrics.FEATURE_NET_SPECS['digits']
  other = dataclasses.replace(spec, feature_dim=16)
  params = other.model().init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32))['params']
  features_lib.save_checkpoint(features_lib.checkpoint_dir('digits', str(tmp_path)), params, {
      'format_version': features_lib.FORMAT_VERSION, 'test_accuracy': 1.0,
      'architecture': other.architecture()})
  with pytest.raises(ValueError, match='architecture.*retrain=True'):
    metrics.get_feature_net('digits', cache_dir=str(tmp_path), shipped=False)


def test_cache_location(monkeypatch, tmp_path):
  monkeypatch.setenv(features_lib.CACHE_DIR_ENV, str(tmp_path))
  assert features_lib.checkpoint_dir('tfds:cifar10') == str(tmp_path / 'feature_nets' /
                                                             'tfds_cifar10')
  monkeypatch.delenv(features_lib.CACHE_DIR_ENV)
  assert features_lib.checkpoint_dir('digits') == os.path.expanduser(
      '~/.cache/trilemma_jax/feature_nets/digits')
  assert features_lib.checkpoint_dir('digits', str(tmp_path)) == str(tmp_path / 'digits')


def test_training_is_deterministic():
  spec = metrics.FEATURE_NET_SPECS['digits']
  x, y = data.load_arrays('digits', 'train', limit=256)
  a = features_lib.train_classifier(spec, x, y, seed=3, steps=4)
  b = features_lib.train_classifier(spec, x, y, seed=3, steps=4)
  c = features_lib.train_classifier(spec, x, y, seed=4, steps=4)
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a['Dense_0']['kernel'], c['Dense_0']['kernel'])


def _untrained_net(spec, **kwargs):
  params = spec.model().init(jax.random.key(0), np.zeros((1, *spec.image_shape),
                                                          np.float32))['params']
  return features_lib.FeatureNet(dataset='test', model=spec.model(), params=params,
                                 test_accuracy=1.0, min_accuracy=0.0,
                                 input_shape=spec.image_shape, **kwargs)


def test_bad_inputs_are_refused_at_the_edge():
  net = _untrained_net(metrics.FEATURE_NET_SPECS['digits'])
  with pytest.raises(ValueError, match=r'expects images \[N, 8, 8, 1\]'):
    net.features(np.zeros((4, 8, 8), np.float32))
  with pytest.raises(ValueError, match='uint8'):
    net.features(np.zeros((4, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match='NaN'):
    net.features(np.full((4, 8, 8, 1), np.nan, np.float32))
  with pytest.raises(ValueError, match='No built-in feature network'):
    metrics.get_feature_net('grid25')


def test_image_quality_metrics_compose_the_metric_functions():
  net = _untrained_net(metrics.FEATURE_NET_SPECS['digits'])
  x, _ = data.load_arrays('digits', 'train')
  real, fake = x[:600], x[600:1100]
  scores = metrics.image_quality_metrics(net, real, fake, kid_subsets=5, kid_subset_size=200,
                                         seed=1)
  assert set(scores) == {'fd', 'kid', 'kid_std', 'precision', 'recall', 'density',
                         'coverage'}
  fr, ff = net.features(real), net.features(fake)
  assert scores['fd'] == metrics.frechet_distance(fr, ff)
  kid = metrics.kernel_distance(fr, ff, num_subsets=5, subset_size=200, seed=1)
  assert (scores['kid'], scores['kid_std']) == (kid['kid_mean'], kid['kid_std'])
  assert {k: scores[k] for k in ('precision', 'recall', 'density', 'coverage')} == (
      metrics.prdc(fr, ff, k_pr=3, k_dc=5))
  # Noise images are far from digits in any feature space, digits close.
  noise = np.random.default_rng(0).uniform(-1, 1, fake.shape).astype(np.float32)
  worse = metrics.image_quality_metrics(net, real, noise, kid_subsets=5, kid_subset_size=200)
  assert worse['fd'] > 10 * scores['fd']
  assert worse['precision'] < scores['precision']


@pytest.mark.slow
def test_fashion_mnist_spec_trains_and_gives_features():
  # Shapes only, on 512 images read straight from the IDX files (no TFDS
  # preparation): the full training (minutes) is run by
  # experiments/train_classifier.py --dataset=fashion_mnist.
  try:
    images, labels = fashion_mnist.read_split(fashion_mnist.idx_dir(), 'test')
  except FileNotFoundError:
    pytest.skip(f'needs `apt-get install {fashion_mnist.DEBIAN_PACKAGE}`')
  x = quantised_to_unit(images[:512, :, :, None], 256)
  y = labels[:512].astype(np.int32)
  spec = metrics.FEATURE_NET_SPECS['fashion_mnist']
  assert spec.min_accuracy == metrics.MIN_TEST_ACCURACY['fashion_mnist'] == 0.90
  params = features_lib.train_classifier(spec, x, y, steps=3)
  net = features_lib.FeatureNet(dataset='fashion_mnist', model=spec.model(), params=params,
                                test_accuracy=0.0, min_accuracy=0.0,
                                input_shape=(28, 28, 1))
  assert net.features(x[:10]).shape == (10, 128)
  assert net.predict(x[:10]).shape == (10,)


def test_a_user_spec_cannot_replace_a_built_in_network(tmp_path):
  weaker = dataclasses.replace(metrics.FEATURE_NET_SPECS['digits'], min_accuracy=0.5)
  for name in ('digits', 'stacked_digits'):
    with pytest.raises(ValueError, match=f"'{name}' has a built-in feature network"):
      metrics.get_feature_net(name, cache_dir=str(tmp_path), spec=weaker)
  assert not os.listdir(tmp_path)  # nothing trained, nothing cached


def test_export_needs_the_default_training_of_a_built_in_network():
  script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'experiments', 'train_classifier.py')
  for args, message in ((['--dataset=digits', '--export'], 'with the default settings'),
                        (['--dataset=digits', '--export', '--retrain', '--seed=1'],
                         'with the default settings'),
                        (['--dataset=npz:/tmp/x.npz', '--export', '--retrain'],
                         'ships built-in networks only')):
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and message in out.stderr, (args, out.stderr[-500:])


def test_shipped_file_names_and_the_gate_message(tmp_path, monkeypatch):
  spec = metrics.FEATURE_NET_SPECS['digits']
  num_train = data.load_info('digits').num_train
  params, metadata = features_lib.load_shipped('digits', spec, num_train)
  path = features_lib.export_shipped('tfds:mnist', params, metadata, str(tmp_path))
  assert os.path.basename(path) == 'tfds_mnist.npz' and (tmp_path / 'tfds_mnist.json').exists()
  monkeypatch.setattr(features_lib, 'SHIPPED_DIR', str(tmp_path))
  assert features_lib.shipped_path('tfds:mnist') == path
  # Shipped weights failing the gate point at the data and the export, not a cache directory.
  with pytest.raises(metrics.FeatureNetAccuracyError, match='shipped weights.*--export'):
    features_lib.FeatureNet(dataset='digits', model=spec.model(), params=params,
                            test_accuracy=0.5, min_accuracy=0.97, input_shape=(8, 8, 1),
                            checkpoint=path)
