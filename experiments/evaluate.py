r"""Evaluates a trained run on quality, coverage and speed; writes DIR/eval.json.

  python experiments/evaluate.py --workdir runs/vae_digits [--num_samples 2000]

Uses the EMA weights where the family keeps them and one row per sampler of the
family (DDPM: ancestral and DDIM). Image data are scored in the features of a
project-trained classifier, which ships with the package (digits, stacked
digits) or is trained and cached on first use, and must pass its test-accuracy
gate first. Datasets without a built-in classifier (a
labelled npz file, another TFDS dataset) get one with --feature_min_accuracy:
it is trained on the run's dataset and must reach that test accuracy; without
the flag their FD/KID/PRDC are left out and the speed and likelihood remain.
"""

import json

from absl import app, flags, logging

from trilemma_jax import evaluation, parallel, report

_WORKDIR = flags.DEFINE_string('workdir', None, 'A run trained by experiments/train.py.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 2000, 'Generated images scored for FD etc.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sampling keys.')
_FEATURE_MIN_ACCURACY = flags.DEFINE_float(
    'feature_min_accuracy', None,
    'For an image dataset without a built-in feature network: train one on the dataset\'s '
    'labels (default classifier) and require this test accuracy in [0, 1].')
flags.mark_flag_as_required('workdir')
flags.register_validator('feature_min_accuracy', lambda v: v is None or 0.0 <= v <= 1.0,
                         message='--feature_min_accuracy is a test accuracy in [0, 1].')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  parallel.enable_compilation_cache()
  spec = None
  if _FEATURE_MIN_ACCURACY.value is not None:
    spec = evaluation.feature_spec_for_run(_WORKDIR.value, _FEATURE_MIN_ACCURACY.value)
  rows = evaluation.evaluate_run(_WORKDIR.value, num_samples=_NUM_SAMPLES.value,
                                 seed=_SEED.value, feature_spec=spec)
  path = evaluation.write_eval(_WORKDIR.value, rows)
  print(report.markdown_table([report.aggregate([r]) for r in rows]))
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)
