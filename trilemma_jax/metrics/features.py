"""Feature networks for image data: small classifiers trained by the project.

ImageNet Inception weights cannot be downloaded here, so image quality is
measured in the penultimate layer of a classifier trained on the data itself
(docs/references.md: a "Fréchet LeNet distance"). Such scores are comparable within
this project only, and only between runs that used the same feature network.

>>> from trilemma_jax import metrics
>>> net = metrics.get_feature_net('digits')  # the shipped weights (see below)
>>> feats = net.features(x)                  # [N, 128] float32
>>> labels = metrics.get_feature_net('stacked_digits').predict(x3)  # [N, 3]

Every network carries the accuracy it reached on its dataset's test split, and
a :class:`FeatureNet` cannot exist below the required accuracy (the gate sits in
its constructor), so no score is ever computed from a network that fails it.
Required test accuracies (:data:`MIN_TEST_ACCURACY`): digits and stacked
digits 0.97 per channel (the StackedMNIST protocol trusts a mode count only
from then on), Fashion-MNIST 0.90, ``tfds:mnist`` 0.98, ``tfds:cifar10`` 0.80,
``tfds:svhn_cropped`` 0.90. The 32x32 TFDS specs have not been trained on
these CPU-only machines: they are meant for accelerators, and the gate checks
whatever they reach.

A trained network is cached as an orbax checkpoint (parameters plus JSON
metadata holding the test accuracy, architecture and training settings) under
``cache_dir/<dataset>``, by default ``$TRILEMMA_CACHE_DIR/feature_nets/<dataset>``
with ``$TRILEMMA_CACHE_DIR`` defaulting to ``~/.cache/trilemma_jax``. Orbax
writes into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that would load.

The digits network (also the per-channel classifier of stacked digits) ships
with the package (``feature_nets/digits.npz`` and its metadata ``.json``,
made by ``experiments/train_classifier.py --dataset=digits --retrain
--export``): every machine scores digits with the same features, and no job
trains it. Default calls use it whatever the cache holds, its test accuracy
checked again on the data here; ``retrain=True``, another ``seed`` or
``steps``, or ``shipped=False`` reach the cache as before. A spec changed
without re-exporting is refused with the command that re-exports it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from numpy.typing import ArrayLike

from trilemma_jax import caches, data, validation
from trilemma_jax.data import arrays as npz_arrays
from trilemma_jax.metrics.frechet import frechet_distance
from trilemma_jax.metrics.kid import kernel_distance
from trilemma_jax.metrics.manifold import prdc
from trilemma_jax.nets.classifier import Classifier
from trilemma_jax.train_state import TrainState, new_rng, new_state

CACHE_DIR_ENV = caches.CACHE_DIR_ENV
FORMAT_VERSION = 1
DEFAULT_BLOCK_SIZE = 512

_log = logging.getLogger(__name__)


class FeatureNetAccuracyError(ValueError):
  """A feature network's test accuracy is below the accuracy its scores require."""


@dataclasses.dataclass(frozen=True)
class FeatureNetSpec:
  """How the classifier of one dataset is built, trained and judged.

  Attributes:
    image_shape: ``(H, W, C)`` of the classifier's input.
    num_classes: number of labels.
    min_accuracy: required test accuracy, in ``[0, 1]``.
    channels, convs_per_stage, feature_dim, dropout_rate: the
      :class:`~trilemma_jax.nets.classifier.Classifier`.
    epochs: passes over the train split (rounded up to whole batches).
    batch_size: examples per step.
    learning_rate: peak Adam learning rate, cosine-decayed to 0.
    max_shift: random translation of up to this many pixels (augmentation).
    flip: random horizontal flips (augmentation; not for digits).
  """

  image_shape: tuple[int, int, int]
  num_classes: int
  min_accuracy: float
  channels: tuple[int, ...] = (32, 64)
  convs_per_stage: int = 1
  feature_dim: int = 128
  dropout_rate: float = 0.0
  epochs: int = 4
  batch_size: int = 128
  learning_rate: float = 1e-3
  max_shift: int = 0
  flip: bool = False

  def __post_init__(self):
    # Tuples keep the spec hashable: it keys the cache of compiled train steps.
    object.__setattr__(self, 'image_shape', tuple(self.image_shape))
    object.__setattr__(self, 'channels', tuple(self.channels))
    if len(self.image_shape) != 3 or min(self.image_shape) < 1:
      raise ValueError(f'image_shape must be (H, W, C), got {self.image_shape}.')
    if self.num_classes < 2 or not 0.0 <= self.min_accuracy <= 1.0:
      raise ValueError(
          f'Need num_classes >= 2 and min_accuracy in [0, 1], got {self.num_classes} and '
          f'{self.min_accuracy}.')

  def model(self) -> Classifier:
    return Classifier(num_classes=self.num_classes, channels=tuple(self.channels),
                      feature_dim=self.feature_dim, convs_per_stage=self.convs_per_stage,
                      dropout_rate=self.dropout_rate)

  def architecture(self) -> dict[str, Any]:
    """What the parameters' meaning depends on (stored and compared on load)."""
    return {'image_shape': list(self.image_shape), 'num_classes': self.num_classes,
            'channels': list(self.channels), 'convs_per_stage': self.convs_per_stage,
            'feature_dim': self.feature_dim}


FEATURE_NET_SPECS: dict[str, FeatureNetSpec] = {
    # 1,500 training digits: many short epochs, 1-pixel shifts and dropout.
    'digits': FeatureNetSpec((8, 8, 1), 10, 0.97, dropout_rate=0.3, epochs=60,
                             batch_size=64, max_shift=1),
    'fashion_mnist': FeatureNetSpec((28, 28, 1), 10, 0.90, epochs=4),
    'tfds:mnist': FeatureNetSpec((28, 28, 1), 10, 0.98, epochs=3),
    'tfds:cifar10': FeatureNetSpec((32, 32, 3), 10, 0.80, channels=(64, 128, 256),
                                   convs_per_stage=2, feature_dim=256, dropout_rate=0.3,
                                   epochs=30, max_shift=4, flip=True),
    'tfds:svhn_cropped': FeatureNetSpec((32, 32, 3), 10, 0.90, channels=(64, 128, 256),
                                        convs_per_stage=2, feature_dim=256, dropout_rate=0.3,
                                        epochs=8, max_shift=2),
}
# Datasets scored by another dataset's classifier applied to each channel.
PER_CHANNEL_BASE = {'stacked_digits': 'digits'}
MIN_TEST_ACCURACY = {**{name: s.min_accuracy for name, s in FEATURE_NET_SPECS.items()},
                     **{name: FEATURE_NET_SPECS[base].min_accuracy
                        for name, base in PER_CHANNEL_BASE.items()}}


# --------------------------------------------------------------------- inference


def _forward_impl(model: Classifier, params: Any, x: jax.Array,
                  per_channel: bool) -> tuple[jax.Array, jax.Array]:
  """``x [B, H, W, C] -> (features [B, F'], labels [B] or [B, C])``."""
  if per_channel:
    b, h, w, c = x.shape
    # Channel k of example i becomes image i * C + k of a grey batch.
    x = jnp.moveaxis(x, -1, 1).reshape(b * c, h, w, 1)
  logits, features = model.apply({'params': params}, x)
  labels = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if per_channel:
    features = features.reshape(b, c * features.shape[-1])
    labels = labels.reshape(b, c)
  return features, labels


_forward = jax.jit(_forward_impl, static_argnames=('model', 'per_channel'))


def _block_size_for(n: int, block_size: int) -> int:
  # Below one full block, round up to a power of two: few distinct shapes (few
  # compilations) without padding 10 images to 512.
  return block_size if n >= block_size else min(block_size, max(8, 1 << (n - 1).bit_length()))


def _apply_in_blocks(model: Classifier, params: Any, x: np.ndarray, per_channel: bool,
                     block_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Runs :func:`_forward` over fixed-size padded blocks; returns numpy arrays."""
  n = x.shape[0]
  block = _block_size_for(n, block_size)
  features, labels = [], []
  for start in range(0, n, block):
    chunk = x[start:start + block]
    valid = chunk.shape[0]
    if valid < block:
      chunk = np.concatenate([chunk, np.zeros((block - valid, *chunk.shape[1:]), chunk.dtype)])
    f, y = _forward(model, params, jnp.asarray(chunk), per_channel)
    # Device arrays are collected unread so the blocks queue up asynchronously.
    features.append(f[:valid])
    labels.append(y[:valid])
  features, labels = jax.device_get((features, labels))
  return np.concatenate(features), np.concatenate(labels)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNet:
  """A trained classifier that passed its accuracy gate, used as a feature map.

  Construction raises :class:`FeatureNetAccuracyError` when ``test_accuracy <
  min_accuracy``, so holding a FeatureNet means the gate was passed.

  Attributes:
    dataset: the dataset it scores (``'stacked_digits'`` for the per-channel
      digits classifier).
    model: the Flax classifier.
    params: its parameters.
    test_accuracy: accuracy on the dataset's test split (per channel for
      stacked digits).
    min_accuracy: the accuracy the gate required.
    input_shape: ``(H, W, C)`` of the images it accepts.
    per_channel: apply the grey classifier to each channel and concatenate.
    checkpoint: directory of the cached checkpoint, or the shipped weights
      file (:func:`shipped_path`); '' if none.
    block_size: images per compiled forward pass.
  """

  dataset: str
  model: Classifier
  params: Any
  test_accuracy: float
  min_accuracy: float
  input_shape: tuple[int, int, int]
  per_channel: bool = False
  checkpoint: str = ''
  block_size: int = DEFAULT_BLOCK_SIZE

  def __post_init__(self):
    if not self.test_accuracy >= self.min_accuracy:
      where = f' (checkpoint {self.checkpoint})' if self.checkpoint else ''
      kind = 'per-channel test accuracy' if self.per_channel else 'test accuracy'
      raise FeatureNetAccuracyError(
          f'The feature network of {self.dataset!r}{where} has {kind} '
          f'{self.test_accuracy:.4f}, below the required {self.min_accuracy:.2f}; scores '
          'from it would not be trustworthy. ' + (
              'These are the package\'s shipped weights: check that the data load '
              'correctly (they passed the gate when exported), or re-export them '
              '(experiments/train_classifier.py --retrain --export).'
              if self.checkpoint.endswith('.npz') else
              'Retrain it with the default budget (get_feature_net(..., retrain=True), or '
              'delete the checkpoint directory) and check that the data load correctly.'))

  @property
  def feature_dim(self) -> int:
    """Length of one example's feature vector."""
    channels = self.input_shape[-1] if self.per_channel else 1
    return self.model.feature_dim * channels

  def _check_images(self, x: ArrayLike, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
      raise ValueError(
          f'{what} has shape {x.shape}; the feature network of {self.dataset!r} expects '
          f'images [N, {", ".join(map(str, self.input_shape))}] (NHWC, values in [-1, 1]).')
    if x.shape[0] == 0:
      raise ValueError(f'{what} holds no images.')
    if x.dtype.kind != 'f':
      raise ValueError(
          f'{what} has dtype {x.dtype}; expected float images in [-1, 1] (as the data package '
          'returns them). Convert uint8 images with 2 * x / 255 - 1.')
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
      raise ValueError(f'{what} contains NaN or inf; a diverged sampler cannot be scored.')
    return x

  def features(self, x: ArrayLike) -> np.ndarray:
    """Penultimate-layer activations.

    Args:
      x: images ``[N, *input_shape]`` in ``[-1, 1]``.

    Returns:
      float32 ``[N, feature_dim]``; for per-channel nets the channels'
      features concatenated in channel order.
    """
    x = self._check_images(x, 'x')
    return _apply_in_blocks(self.model, self.params, x, self.per_channel, self.block_size)[0]

  def predict(self, x: ArrayLike) -> np.ndarray:
    """Predicted labels: int32 ``[N]``, or ``[N, C]`` per channel (stacked digits).

    The ``[N, C]`` form feeds :func:`trilemma_jax.metrics.label_mode_metrics`.
    """
    x = self._check_images(x, 'x')
    return _apply_in_blocks(self.model, self.params, x, self.per_channel, self.block_size)[1]


# ---------------------------------------------------------------------- training


def _augment(spec: FeatureNetSpec, x: jax.Array, rng: jax.Array) -> jax.Array:
  """Random translations (background -1 shifted in) and, if enabled, flips."""
  shift_rng, flip_rng = jax.random.split(rng)
  if spec.max_shift:
    s = spec.max_shift
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), constant_values=-1.0)
    offsets = jax.random.randint(shift_rng, (b, 2), 0, 2 * s + 1)
    x = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(
        padded, offsets)
  if spec.flip:
    flip = jax.random.bernoulli(flip_rng, 0.5, (x.shape[0], 1, 1, 1))
    x = jnp.where(flip, x[:, :, ::-1], x)
  return x


def _train_step(state: TrainState, batch: dict[str, jax.Array], *, spec: FeatureNetSpec,
                tx: optax.GradientTransformation) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on the mean cross-entropy of an augmented batch."""
  aug_rng, dropout_rng = jax.random.split(state.step_rng())
  x = _augment(spec, batch['x'], aug_rng)
  model = spec.model()

  def loss_fn(params):
    logits, _ = model.apply({'params': params}, x, train=True, rngs={'dropout': dropout_rng})
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    return per_example.mean(), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
  return state, {'loss': loss, 'accuracy': accuracy}


@functools.lru_cache(maxsize=8)
def _compiled_step(spec: FeatureNetSpec, steps: int):
  """The optimiser and jitted step of a run, shared by runs of the same length."""
  tx = optax.adam(optax.cosine_decay_schedule(spec.learning_rate, steps))
  return tx, jax.jit(functools.partial(_train_step, spec=spec, tx=tx), donate_argnums=(0,))


def default_steps(spec: FeatureNetSpec, num_train: int) -> int:
  """Steps of ``spec.epochs`` passes over ``num_train`` examples."""
  return math.ceil(spec.epochs * num_train / spec.batch_size)


def train_classifier(spec: FeatureNetSpec, x: np.ndarray, labels: np.ndarray, *,
                     seed: int = 0, steps: int | None = None) -> Any:
  """Trains the classifier of ``spec`` on in-memory examples; deterministic in ``seed``.

  Args:
    spec: architecture and training settings.
    x: float32 images ``[N, *spec.image_shape]`` in ``[-1, 1]``.
    labels: int32 ``[N]`` in ``[0, spec.num_classes)``.
    seed: seed of the initialisation, data order, augmentation and dropout.
    steps: number of updates; default :func:`default_steps`.

  Returns:
    The trained parameters.
  """
  x = np.asarray(x, np.float32)
  labels = np.asarray(labels, np.int32)
  if x.ndim != 4 or tuple(x.shape[1:]) != tuple(spec.image_shape):
    raise ValueError(
        f'Training images have shape {x.shape}; this spec expects [N, {spec.image_shape}].')
  if labels.shape != x.shape[:1] or labels.min() < 0 or labels.max() >= spec.num_classes:
    raise ValueError(
        f'Training labels must be [{x.shape[0]}] integers in [0, {spec.num_classes}), got '
        f'shape {labels.shape} and range [{labels.min()}, {labels.max()}].')
  steps = default_steps(spec, x.shape[0]) if steps is None else steps
  validation.positive_int('steps', steps)

  model = spec.model()
  init_rng, rng = jax.random.split(new_rng(seed))
  params = model.init(init_rng, jnp.zeros((1, *spec.image_shape), jnp.float32))['params']
  tx, step_fn = _compiled_step(spec, steps)
  state = new_state(params, tx.init(params), rng, ema={})
  # One process trains the whole network (it is small); process_count=1 keeps
  # the data order independent of the job's topology.
  batches = data.train_iterator(data.ArraySource(x, labels), global_batch_size=spec.batch_size,
                                seed=seed, process_index=0, process_count=1)
  log_every = max(1, steps // 10)
  for step in range(steps):
    state, metrics = step_fn(state, next(batches))
    if (step + 1) % log_every == 0:
      _log.info('feature net step %d/%d: loss %.4f, batch accuracy %.3f', step + 1, steps,
                float(metrics['loss']), float(metrics['accuracy']))
  return jax.device_get(state.params)


def classifier_accuracy(model: Classifier, params: Any, x: np.ndarray, labels: np.ndarray, *,
                  per_channel: bool = False, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
  """Fraction of correct predictions; ``labels`` ``[N]``, or ``[N, C]`` per channel."""
  predicted = _apply_in_blocks(model, params, np.asarray(x, np.float32), per_channel,
                               block_size)[1]
  return float(np.mean(predicted == np.asarray(labels)))


# -------------------------------------------------------------------- checkpoints


def cache_root(cache_dir: str | None = None) -> str:
  """``cache_dir``, else ``$TRILEMMA_CACHE_DIR/feature_nets``, else ``~/.cache/...``."""
  if cache_dir:
    return os.path.abspath(os.path.expanduser(cache_dir))
  return caches.cache_path('feature_nets')


def checkpoint_dir(dataset: str, cache_dir: str | None = None) -> str:
  """Directory of the cached classifier of ``dataset`` (not of a per-channel alias).

  An ``npz:`` file's directory also names a digest of its absolute path, size
  and modification time: two files whose paths read alike once sanitised, or a
  file rewritten in place, do not share a network.
  """
  key = re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)
  if dataset.startswith(npz_arrays.NPZ_PREFIX):
    path = npz_arrays.npz_path(dataset)
    stamp = path
    if os.path.exists(path):
      stat = os.stat(path)
      stamp += f':{stat.st_size}:{stat.st_mtime_ns}'
    key = f'npz_{os.path.basename(path)}-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}'
  return os.path.join(cache_root(cache_dir), key)


def _checkpointer() -> ocp.Checkpointer:
  return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_checkpoint(directory: str, params: Any, metadata: dict[str, Any], *,
                    force: bool = False) -> None:
  """Writes ``params`` and JSON ``metadata`` as one orbax checkpoint (atomic rename)."""
  _checkpointer().save(
      directory, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                         metadata=ocp.args.JsonSave(metadata)), force=force)


def has_builtin_feature_net(dataset: str) -> bool:
  """Whether ``dataset`` has a feature network spec of its own (else pass ``spec``)."""
  return PER_CHANNEL_BASE.get(dataset, dataset) in FEATURE_NET_SPECS


def load_checkpoint(directory: str, spec: FeatureNetSpec) -> tuple[Any, dict[str, Any]]:
  """Reads a checkpoint written by :func:`save_checkpoint` for ``spec``'s architecture.

  Returns:
    ``(params, metadata)``, params as numpy arrays.
  """
  ckptr = _checkpointer()
  metadata = ckptr.restore(directory, args=ocp.args.Composite(
      metadata=ocp.args.JsonRestore())).metadata
  if metadata.get('format_version') != FORMAT_VERSION or (
      metadata.get('architecture') != spec.architecture()):
    raise ValueError(
        f'The feature network checkpoint {directory} was made for architecture '
        f'{metadata.get("architecture")} (format {metadata.get("format_version")}); this code '
        f'builds {spec.architecture()} (format {FORMAT_VERSION}). Delete the directory, or '
        'call get_feature_net(..., retrain=True), to train the current one.')
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), _param_shapes(spec))
  params = ckptr.restore(directory, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(target))).params
  return params, metadata


# ------------------------------------------------------------------ shipped weights

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'feature_nets')


def shipped_path(dataset: str) -> str | None:
  """The package's weights file of ``dataset``'s network (``feature_nets/<name>.npz``), or None.

  Shipped networks were trained by the project's own command (see
  :func:`export_shipped`) with their spec's settings and seed 0; every machine
  then scores with the same features, as FID does with one set of Inception
  weights, and no job spends time training them.
  """
  path = os.path.join(SHIPPED_DIR, f'{_file_key(dataset)}.npz')
  return path if os.path.exists(path) else None


def _file_key(dataset: str) -> str:
  return re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)


def _shipped_training(spec: FeatureNetSpec, num_train: int) -> dict[str, Any]:
  """The training settings a shipped network of ``spec`` must have been made with.

  The gate (``min_accuracy``) is not one: it is checked on every load.
  """
  settings = {**dataclasses.asdict(spec), 'seed': 0, 'steps': default_steps(spec, num_train)}
  del settings['min_accuracy']
  return settings


def export_shipped(dataset: str, params: Any, metadata: dict[str, Any],
                   directory: str = SHIPPED_DIR) -> str:
  """Writes a trained network as ``directory/<dataset>.npz`` plus its metadata ``.json``.

  ``params`` and ``metadata`` are what :func:`get_feature_net` trained (or
  loaded from the cache); ``python experiments/train_classifier.py
  --dataset=digits --retrain --export`` does it all. Returns the ``.npz`` path.
  """
  flat = flax.traverse_util.flatten_dict(jax.device_get(params), sep='/')
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'{_file_key(dataset)}.npz')
  np.savez(path, **flat)
  with open(path[:-len('.npz')] + '.json', 'w') as f:
    json.dump(metadata, f, indent=2, sort_keys=True)
    f.write('\n')
  return path


def load_shipped(dataset: str, spec: FeatureNetSpec, num_train: int,
                 path: str | None = None) -> tuple[Any, dict[str, Any]]:
  """Reads the shipped network of ``dataset``, refusing one made for other settings.

  Returns:
    ``(params, metadata)``; params as numpy arrays.
  """
  path = path or shipped_path(dataset)
  if path is None:
    raise FileNotFoundError(f'The package ships no feature network for {dataset!r} (looked in '
                            f'{SHIPPED_DIR}).')
  with open(path[:-len('.npz')] + '.json') as f:
    metadata = json.load(f)
  expected = _shipped_training(spec, num_train)
  training = {k: metadata.get('training', {}).get(k) for k in expected}
  if (metadata.get('format_version') != FORMAT_VERSION or
      metadata.get('architecture') != spec.architecture() or
      json.loads(json.dumps(expected)) != training):
    raise ValueError(
        f'The shipped feature network {path} was made with architecture '
        f'{metadata.get("architecture")} and training {training}; the spec of {dataset!r} now '
        f'says {spec.architecture()} and {expected}. Re-export it: python '
        f'experiments/train_classifier.py --dataset={dataset} --retrain --export')
  with np.load(path) as arrays:
    stored = dict(arrays)
  target = flax.traverse_util.flatten_dict(_param_shapes(spec), sep='/')
  if set(target) != set(stored) or any(stored[k].shape != t.shape for k, t in target.items()):
    raise ValueError(f'The shipped feature network {path} does not hold the parameters of '
                     f'{spec.architecture()}; re-export it.')
  params = flax.traverse_util.unflatten_dict(
      {k: stored[k].astype(t.dtype) for k, t in target.items()}, sep='/')
  return params, metadata


def _param_shapes(spec: FeatureNetSpec) -> Any:
  """The parameter tree of ``spec``'s classifier, as shapes (nothing computed)."""
  return jax.eval_shape(spec.model().init, jax.random.key(0),
                        jnp.zeros((1, *spec.image_shape), jnp.float32))['params']


def _train_and_save(name: str, spec: FeatureNetSpec, directory: str, *, data_dir: str | None,
                    seed: int, steps: int | None, overwrite: bool) -> tuple[Any, dict]:
  if jax.process_count() > 1:
    raise RuntimeError(
        f'No feature network for {name!r} at {directory}, and training one inside a '
        f'{jax.process_count()}-process job is not supported. Train it first with '
        f'`python experiments/train_classifier.py --dataset={name} --cache_dir=<shared dir>`.')
  x, y = data.load_arrays(name, 'train', data_dir=data_dir)
  x_test, y_test = data.load_arrays(name, 'test', data_dir=data_dir)
  steps = default_steps(spec, x.shape[0]) if steps is None else steps
  _log.info('Training the feature network of %r (%d steps) into %s', name, steps, directory)
  start = time.perf_counter()
  params = train_classifier(spec, x, y, seed=seed, steps=steps)
  seconds = time.perf_counter() - start
  accuracy = classifier_accuracy(spec.model(), params, x_test, y_test)
  _log.info('Feature network of %r: test accuracy %.4f after %.1f s', name, accuracy, seconds)
  metadata = {
      'format_version': FORMAT_VERSION, 'dataset': name, 'test_accuracy': accuracy,
      'num_test': int(x_test.shape[0]), 'min_accuracy': spec.min_accuracy,
      'architecture': spec.architecture(),
      'training': {**dataclasses.asdict(spec), 'seed': seed, 'steps': steps,
                   'train_seconds': round(seconds, 2)},
      'versions': {'jax': jax.__version__, 'flax': flax.__version__},
  }
  os.makedirs(os.path.dirname(directory), exist_ok=True)
  try:
    save_checkpoint(directory, params, metadata, force=overwrite)
  except ValueError:
    if overwrite or not os.path.isdir(directory):
      raise
    # Another process finished the same (deterministic) training first.
    return load_checkpoint(directory, spec)
  return params, metadata


def get_feature_net(dataset: str, *, cache_dir: str | None = None,
                    data_dir: str | None = None, retrain: bool = False, seed: int = 0,
                    steps: int | None = None, spec: FeatureNetSpec | None = None,
                    block_size: int = DEFAULT_BLOCK_SIZE, shipped: bool = True) -> FeatureNet:
  """The gated feature network of ``dataset``: shipped, else cached, else trained and saved.

  The package's weights (:func:`shipped_path`, digits today) are used whenever
  they exist and the default training is asked for (``seed=0``, ``steps=None``,
  no ``retrain``), whatever the cache holds: every job scores with them.

  Args:
    dataset: ``'digits'``, ``'stacked_digits'``, ``'fashion_mnist'``, a name in
      :data:`FEATURE_NET_SPECS`, or any labelled image dataset if ``spec`` is given.
    cache_dir: directory of the cached networks (see the module docstring).
    data_dir: TFDS data directory (see :func:`trilemma_jax.data.load_info`).
    retrain: train and overwrite even if a checkpoint exists.
    seed: training seed (used only when training).
    steps: training steps (used only when training); default ``spec.epochs``
      epochs. Fewer steps give a network that will likely fail the gate.
    spec: architecture, training and threshold for a dataset without a built-in
      spec.
    block_size: images per compiled forward pass of the returned network.
    shipped: False ignores the shipped weights: the cached network, else a
      newly trained one.

  Returns:
    A :class:`FeatureNet`; stacked digits get the digits classifier applied
    per channel, gated on its per-channel accuracy on the stacked test split.

  Raises:
    FeatureNetAccuracyError: the test accuracy is below the requirement. The
      failing checkpoint stays in the cache, so later calls fail the same way
      until it is retrained.
  """
  base = PER_CHANNEL_BASE.get(dataset, dataset)
  if spec is not None and base in FEATURE_NET_SPECS and spec != FEATURE_NET_SPECS[base]:
    # Its cache directory holds the built-in network, which every other run is scored with.
    raise ValueError(
        f'{dataset!r} has a built-in feature network (gate {FEATURE_NET_SPECS[base].min_accuracy}'
        '); a spec is only for image datasets without one.')
  if spec is None:
    if base not in FEATURE_NET_SPECS:
      raise ValueError(
          f'No built-in feature network for {dataset!r}; built-in: '
          f'{", ".join(sorted([*FEATURE_NET_SPECS, *PER_CHANNEL_BASE]))}. For another '
          'labelled image dataset pass spec=FeatureNetSpec(image_shape, num_classes, '
          'min_accuracy, ...).')
    spec = FEATURE_NET_SPECS[base]
  info = data.load_info(base, data_dir=data_dir)
  if tuple(info.shape) != tuple(spec.image_shape) or info.num_classes != spec.num_classes:
    raise ValueError(
        f'{base!r} has images {info.shape} and {info.num_classes} classes, but the feature '
        f'network spec expects {spec.image_shape} and {spec.num_classes}.')
  directory = checkpoint_dir(base, cache_dir)
  package_file = shipped_path(base) if shipped else None
  if package_file and not retrain and seed == 0 and steps is None:
    x_test, y_test = data.load_arrays(base, 'test', data_dir=data_dir)
    params, metadata = load_shipped(base, spec, info.num_train, package_file)
    # Checked here, not taken from the file: the gate holds on this machine's data.
    metadata = {**metadata, 'num_test': int(x_test.shape[0]),
                'test_accuracy': classifier_accuracy(spec.model(), params, x_test, y_test,
                                                     block_size=block_size)}
    directory = package_file
  elif not retrain and os.path.isdir(directory):
    params, metadata = load_checkpoint(directory, spec)
  else:
    params, metadata = _train_and_save(base, spec, directory, data_dir=data_dir, seed=seed,
                                       steps=steps, overwrite=retrain)
  # On the device once, not copied with every block.
  params = jax.device_put(params)
  net = FeatureNet(dataset=base, model=spec.model(), params=params,
                   test_accuracy=float(metadata['test_accuracy']),
                   min_accuracy=spec.min_accuracy, input_shape=tuple(spec.image_shape),
                   checkpoint=directory, block_size=block_size)
  if dataset == base:
    return net
  # Per channel: the gate is the per-channel accuracy on this dataset's test split.
  x_test, y_test = data.load_arrays(dataset, 'test', data_dir=data_dir)
  channels = x_test.shape[-1]
  base_classes = spec.num_classes
  digits = (y_test[:, None] // base_classes ** np.arange(channels - 1, -1, -1)) % base_classes
  accuracy = classifier_accuracy(net.model, params, x_test, digits, per_channel=True,
                           block_size=block_size)
  return dataclasses.replace(net, dataset=dataset, test_accuracy=accuracy,
                             input_shape=tuple(x_test.shape[1:]), per_channel=True)


# ------------------------------------------------------------------------ scores


def image_quality_metrics(feature_net: FeatureNet, real_x: ArrayLike, fake_x: ArrayLike, *,
                          k_pr: int = 3, k_dc: int = 5, kid_subsets: int = 100,
                          kid_subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
  """Fréchet distance, KID and precision/recall/density/coverage in one feature space.

  Args:
    feature_net: a gated network from :func:`get_feature_net`.
    real_x: reference images ``[N, *input_shape]`` in ``[-1, 1]`` (e.g. the
      test split).
    fake_x: generated images ``[M, *input_shape]``, clipped to ``[-1, 1]`` by
      the caller as they would be for display.
    k_pr, k_dc: neighbour ranks of precision/recall and density/coverage.
    kid_subsets, kid_subset_size: KID subsets and their size.
    seed: seed of the KID subsets.

  Returns:
    ``{'fd', 'kid', 'kid_std', 'precision', 'recall', 'density', 'coverage'}``
    as Python floats; FD and KID are in this project's feature space only.
  """
  real = feature_net.features(real_x)
  fake = feature_net.features(fake_x)
  kid = kernel_distance(real, fake, num_subsets=kid_subsets, subset_size=kid_subset_size,
                        seed=seed)
  return {'fd': frechet_distance(real, fake), 'kid': kid['kid_mean'],
          'kid_std': kid['kid_std'], **prdc(real, fake, k_pr=k_pr, k_dc=k_dc)}
