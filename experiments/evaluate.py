r"""Evaluates a trained run on quality, coverage and speed; writes DIR/eval.json.

  python experiments/evaluate.py --workdir runs/vae_digits [--num_samples 2000]

Uses the EMA weights where the family keeps them and one row per sampler of the
family (DDPM: ancestral and DDIM). Image data are scored in the features of a
project-trained classifier, which is trained and cached on first use and must
pass its test-accuracy gate first.
"""

import json

from absl import app, flags, logging

from trilemma_jax import evaluation, parallel, report

_WORKDIR = flags.DEFINE_string('workdir', None, 'A run trained by experiments/train.py.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 2000, 'Generated images scored for FD etc.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sampling keys.')
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  parallel.enable_compilation_cache()
  rows = evaluation.evaluate_run(_WORKDIR.value, num_samples=_NUM_SAMPLES.value,
                                 seed=_SEED.value)
  path = evaluation.write_eval(_WORKDIR.value, rows)
  print(report.markdown_table([report.aggregate([r]) for r in rows]))
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)
