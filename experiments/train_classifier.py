r"""Trains (or checks) the feature network of one dataset and caches it.

  python experiments/train_classifier.py --dataset=fashion_mnist [--cache_dir=DIR] [--retrain]

Without --retrain an existing checkpoint is loaded and re-checked. Either way
the script prints the test accuracy and exits with an error when it is below
the accuracy the quality metrics require. Run it once before a multi-process
job: feature networks are trained in a single process only.
"""

import json
import logging as std_logging
import time

from absl import app, flags, logging

from trilemma_jax import metrics

_DATASET = flags.DEFINE_string(
    'dataset', None, f'One of {", ".join(sorted(metrics.MIN_TEST_ACCURACY))}.')
_CACHE_DIR = flags.DEFINE_string(
    'cache_dir', None, 'Feature-network cache; default $TRILEMMA_CACHE_DIR/feature_nets or '
    '~/.cache/trilemma_jax/feature_nets.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
_RETRAIN = flags.DEFINE_bool('retrain', False, 'Train even if a checkpoint exists.')
_SEED = flags.DEFINE_integer('seed', 0, 'Training seed.')
flags.mark_flags_as_required(['dataset'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Progress of the training, without orbax's INFO line for every file it writes.
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger('trilemma_jax').setLevel(std_logging.INFO)
  start = time.perf_counter()
  try:
    net = metrics.get_feature_net(_DATASET.value, cache_dir=_CACHE_DIR.value,
                                  data_dir=_DATA_DIR.value, retrain=_RETRAIN.value,
                                  seed=_SEED.value)
  except metrics.FeatureNetAccuracyError as e:
    raise SystemExit(f'FAILED: {e}') from e
  print(json.dumps({
      'dataset': net.dataset, 'test_accuracy': round(net.test_accuracy, 4),
      'min_accuracy': net.min_accuracy, 'feature_dim': net.feature_dim,
      'checkpoint': net.checkpoint, 'seconds': round(time.perf_counter() - start, 1)}))


if __name__ == '__main__':
  app.run(main)
