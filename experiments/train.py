r"""Trains one family on one dataset.

  python experiments/train.py --config trilemma_jax/families/vae/config.py:digits \
      --workdir runs/vae_digits [--config.train.steps=4000 ...]

Any family's config file works, also one outside the library (its package must
be importable; see README 'Adding a family').

Running it again with the same --workdir resumes from the latest checkpoint; with
more steps configured it continues. SIGTERM saves a checkpoint and exits cleanly.
On a pod, run the same command with --distributed on every host: each process
loads its slice of the global batch and process 0 writes the outputs.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from trilemma_jax import parallel, train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config: trilemma_jax/families/<family>/config.py:<dataset>.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (resumed if it holds a run).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False,
    'Call jax.distributed.initialize() first (multi-process jobs, e.g. a TPU pod slice: '
    'run the same command on every host).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  parallel.enable_compilation_cache()
  if _DISTRIBUTED.value:
    import jax
    jax.distributed.initialize()
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
