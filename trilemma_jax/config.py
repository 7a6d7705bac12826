"""Experiment configuration: the shared skeleton and its validation at the edge.

Each ``experiments/configs/<family>.py`` starts from :func:`base_config`, fills in
its ``model`` / ``optim`` / family sections per dataset, and the train script
calls :func:`validate` before anything is built, so a bad value fails in the
first second with a message naming the key.
"""

from __future__ import annotations

import ml_collections

FAMILIES = ('vae', 'gan', 'ddpm', 'ddgan')


def base_config(family: str, dataset: str) -> ml_collections.ConfigDict:
  """The keys every run has; families add ``model``, ``optim`` and their own."""
  c = ml_collections.ConfigDict()
  c.family = family
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = dataset
  c.data.batch_size = 128  # global batch, split over all devices of all processes
  c.data.data_dir = ''  # '' -> the dataset's default location

  c.train = ml_collections.ConfigDict()
  c.train.steps = 2000
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.max_to_keep = 2
  # Samples drawn for the picture written at the end (a scatter plot needs more).
  c.train.num_samples = 1000 if dataset in ('ring8', 'grid25') else 100
  c.train.progress = True  # tqdm bar on the console

  c.ema = ml_collections.ConfigDict()
  c.ema.decay = 0.999
  c.ema.warmup = True

  c.model = ml_collections.ConfigDict()
  c.optim = ml_collections.ConfigDict()
  return c


def _positive_int(config, path: str) -> None:
  value = config
  for key in path.split('.'):
    value = value[key]
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f'config.{path} must be a positive integer, got {value!r}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the shared keys; raises ``ValueError`` naming the key and the fix."""
  if config.family not in FAMILIES:
    raise ValueError(
        f'config.family={config.family!r} is not a family of trilemma_jax; '
        f'expected one of {FAMILIES}.')
  for path in ('data.batch_size', 'train.steps', 'train.log_every',
               'train.checkpoint_every', 'train.max_to_keep', 'train.num_samples'):
    _positive_int(config, path)
  if not 0.0 <= config.ema.decay < 1.0:
    raise ValueError(f'config.ema.decay must be in [0, 1), got {config.ema.decay}.')
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ValueError(f'config.seed must be a non-negative integer, got {config.seed!r}.')
