r"""Speed of every family's train step and samplers, and of the DDPM U-Net alone.

  python experiments/benchmark.py [--profile default] [--families ddgan --datasets grid25] \
      [--precision --precision_steps 100] [--out runs/benchmark.json]
  python experiments/benchmark.py --paper [--paper_families ddgan,ddpm] [--paper_batch 8] \
      [--paper_sample_batch 4] [--paper_max_nfe 100] [--out runs/benchmark_paper.json]

For each family and dataset of the profile (with the profile's settings): train
steps/s and examples/s (median over timed windows after a warm-up), compile
seconds apart, achieved GFLOP/s from XLA's cost analysis and its share of a
float32 matmul peak measured in the same run, and samples/s at batch 100 per
sampler; then the DDPM U-Net at 28x28 (widths 32, 64, 64) and 8x8 (32, 64),
batch 128; with --reference_python also diffusers' UNet2DModel on the same
shapes (experiments/reference/setup.sh). With --precision every family and
dataset of the profile is also trained --precision_steps steps in float32 and in
bfloat16 (model.compute_dtype), same seed and batches, and the JSON gets a
"precision" list: final losses both ways and their difference, the mean
absolute difference of samples drawn with the same key (and the mode figures of
2-D mixtures), train steps/s both ways. Results go to --out as JSON. Timings on
a shared machine are noisy: compare figures of one run as ratios.

With --paper the profile is not timed; instead each family's paper-scale
CIFAR-10 config (DDGAN's official NCSN++ run, Ho et al.'s DDPM, the wide GAN
and VAE; docs/paper_scale.md) is timed on one device with random 32x32x3
batches: train steps/s and examples/s at the config's batch (or --paper_batch),
compile seconds apart, parameters per network, and seconds per sampler call at
a batch of 100 (or --paper_sample_batch), the unit of the DDGAN paper's Table
1. Samplers with more network evaluations than --paper_max_nfe are skipped. On
a CPU the configs' batches take minutes per step: pass small batches there.
"""

import json
import os

from absl import app, flags, logging

from trilemma_jax import benchmark, profiles

_PROFILE = flags.DEFINE_string('profile', 'default', 'Profile whose cases are timed.')
_FAMILIES = flags.DEFINE_list('families', None, "Subset of the profile's families.")
_DATASETS = flags.DEFINE_list('datasets', None, "Subset of the profile's datasets.")
_UNET = flags.DEFINE_bool('unet', True, 'Also time the DDPM U-Net at 28x28 and 8x8.')
_SAMPLERS = flags.DEFINE_bool('samplers', True, 'Also time every sampler at batch 100.')
_WINDOWS = flags.DEFINE_integer('windows', 5, 'Timed windows per case (the median is kept).')
_STEPS_PER_DISPATCH = flags.DEFINE_integer(
    'steps_per_dispatch', 1, 'Train steps per compiled call (train.steps_per_dispatch).',
    lower_bound=1)
_PRECISION = flags.DEFINE_bool(
    'precision', False,
    'Also train every case in float32 and in bfloat16 and compare losses, samples and speed.')
_PRECISION_STEPS = flags.DEFINE_integer(
    'precision_steps', 100, 'Train steps of each run of the precision comparison.',
    lower_bound=1)
_REFERENCE = flags.DEFINE_string(
    'reference_python', None,
    'Python with PyTorch and diffusers (experiments/reference/setup.sh makes '
    '.venv-reference/bin/python): also time diffusers\' UNet2DModel on the U-Net cases.')
_PAPER = flags.DEFINE_bool(
    'paper', False, "Time the paper-scale CIFAR-10 configs instead of the profile's cases.")
_PAPER_FAMILIES = flags.DEFINE_list('paper_families', list(benchmark.PAPER_FAMILIES),
                                    'Families of the paper-scale section.')
_PAPER_BATCH = flags.DEFINE_integer('paper_batch', None,
                                    "Train batch of the paper-scale configs (default: theirs).",
                                    lower_bound=1)
_PAPER_SAMPLE_BATCH = flags.DEFINE_integer(
    'paper_sample_batch', None, 'Batch of each timed sampler call (default: 100).',
    lower_bound=1)
_PAPER_MAX_NFE = flags.DEFINE_integer(
    'paper_max_nfe', None, 'Skip samplers with more network evaluations (default: none).',
    lower_bound=1)
_OUT = flags.DEFINE_string('out', 'runs/benchmark.json', 'Where the JSON result goes.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  if _PAPER.value:
    try:
      benchmark.check_paper_families(_PAPER_FAMILIES.value)
    except ValueError as e:
      raise app.UsageError(f'--paper_families: {e}') from None
    if _PRECISION.value:
      raise app.UsageError('--paper times the paper-scale configs only; run --precision apart.')
    result = benchmark.run_paper(_PAPER_FAMILIES.value, batch_size=_PAPER_BATCH.value,
                                 sample_batch=_PAPER_SAMPLE_BATCH.value,
                                 max_nfe=_PAPER_MAX_NFE.value, windows=_WINDOWS.value)
    _write(result)
    return
  try:
    profiles.get_profile(_PROFILE.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  result = benchmark.run(profile_name=_PROFILE.value, family_names=_FAMILIES.value,
                         datasets=_DATASETS.value, unet=_UNET.value, samplers=_SAMPLERS.value,
                         windows=_WINDOWS.value, steps_per_dispatch=_STEPS_PER_DISPATCH.value,
                         reference_python=_REFERENCE.value, precision=_PRECISION.value,
                         precision_steps=_PRECISION_STEPS.value)
  _write(result)


def _write(result) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
