r"""Trains (or checks) the feature network of one dataset and caches it.

  python experiments/train_classifier.py --dataset=fashion_mnist [--cache_dir=DIR] [--retrain]
  python experiments/train_classifier.py --dataset=digits --retrain --export

Without --retrain the package's shipped weights (digits) or an existing
checkpoint are loaded and re-checked. --export writes the network into the
package (trilemma_jax/metrics/feature_nets/<dataset>.npz and .json: the source
tree of an editable install), where every later job on any machine loads it
instead of training (metrics/features.py); stacked_digits exports its base,
digits. Either way the script prints the test accuracy and exits with an error
when it is below the accuracy the quality metrics require. Run it once before a
multi-process job on a dataset whose network does not ship: feature networks
are trained in a single process only.
"""

import json
import logging as std_logging
import time

from absl import app, flags, logging

from trilemma_jax import metrics
from trilemma_jax.metrics import features

_DATASET = flags.DEFINE_string(
    'dataset', None, f'One of {", ".join(sorted(metrics.MIN_TEST_ACCURACY))}.')
_CACHE_DIR = flags.DEFINE_string(
    'cache_dir', None, 'Feature-network cache; default $TRILEMMA_CACHE_DIR/feature_nets or '
    '~/.cache/trilemma_jax/feature_nets.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
_RETRAIN = flags.DEFINE_bool('retrain', False, 'Train even if a checkpoint exists.')
_SEED = flags.DEFINE_integer('seed', 0, 'Training seed.')
_EXPORT = flags.DEFINE_bool(
    'export', False, 'Write the network into the package as its shipped weights (needs '
    '--retrain, the default training and seed 0).')
flags.mark_flags_as_required(['dataset'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Progress of the training, without orbax's INFO line for every file it writes.
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger('trilemma_jax').setLevel(std_logging.INFO)
  base = features.PER_CHANNEL_BASE.get(_DATASET.value, _DATASET.value)
  if _EXPORT.value and not (_RETRAIN.value and _SEED.value == 0):
    raise app.UsageError('--export ships a network trained here with the default settings: '
                         'give --retrain, and no --seed other than 0.')
  if _EXPORT.value and base not in features.FEATURE_NET_SPECS:
    built_in = ', '.join(sorted(features.FEATURE_NET_SPECS))
    raise app.UsageError(f'--export ships built-in networks only ({built_in}), not '
                         f'{_DATASET.value!r}.')
  start = time.perf_counter()
  try:
    net = metrics.get_feature_net(_DATASET.value, cache_dir=_CACHE_DIR.value,
                                  data_dir=_DATA_DIR.value, retrain=_RETRAIN.value,
                                  seed=_SEED.value)
  except metrics.FeatureNetAccuracyError as e:
    raise SystemExit(f'FAILED: {e}') from e
  if _EXPORT.value:
    params, metadata = features.load_checkpoint(net.checkpoint, features.FEATURE_NET_SPECS[base])
    print(f'exported {features.export_shipped(base, params, metadata)}')
  print(json.dumps({
      'dataset': net.dataset, 'test_accuracy': round(net.test_accuracy, 4),
      'min_accuracy': net.min_accuracy, 'feature_dim': net.feature_dim,
      'checkpoint': net.checkpoint, 'seconds': round(time.perf_counter() - start, 1)}))


if __name__ == '__main__':
  app.run(main)
