"""Experiment configuration: the shared skeleton and its validation at the edge.

Each ``experiments/configs/<family>.py`` starts from :func:`base_config`, fills in
its ``model`` / ``optim`` / family sections per dataset, and the train script
calls :func:`validate` before anything is built, so a bad value fails in the
first second with a message naming the key.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Mapping, Sequence

import ml_collections
from flax import traverse_util

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


def load_config_file(spec: str, overrides: Mapping[str, Any] | None = None
                     ) -> ml_collections.ConfigDict:
  """Loads ``'path/to/<family>.py:<arg>'`` as the train script does, then applies overrides.

  Args:
    spec: a config file path, optionally followed by ``:<arg>`` passed to its
      ``get_config`` (the dataset for the family configs).
    overrides: ``{'train.steps': 100, ...}``; each key must already exist.

  Returns:
    The config (unlocked), not yet validated.
  """
  path, _, arg = spec.partition(':')
  if not os.path.exists(path):
    raise FileNotFoundError(f'Config file {path} does not exist (from {spec!r}).')
  name = 'trilemma_config_' + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  for key, value in (overrides or {}).items():
    node = config
    *parents, leaf = key.split('.')
    for part in parents:
      if part not in node:
        raise ValueError(f'Override {key!r}: {part!r} is not a key of the config {spec!r}.')
      node = node[part]
    if leaf not in node:
      raise ValueError(f'Override {key!r}: {leaf!r} is not a key of the config {spec!r}.')
    node[leaf] = value
  return config


def changed_keys(saved: Mapping[str, Any], config: ml_collections.ConfigDict, *,
                 may_change: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
  """``(key, saved value, current value)`` for every flattened key that differs.

  Args:
    saved: a run's saved config as plain JSON (``config.json`` or the
      checkpoint's copy).
    config: the config about to be used on that run.
    may_change: keys, or whole sections (``'train'`` covers ``train.*``),
      left out of the comparison.
  """
  old = traverse_util.flatten_dict(dict(saved), sep='.')
  new = traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep='.')

  def free(key: str) -> bool:
    return any(key == p or key.startswith(p + '.') for p in may_change)

  return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if not free(k) and old.get(k) != new.get(k)]


def describe_changes(changes: Sequence[tuple[str, Any, Any]], most: int = 5) -> str:
  """``'ddpm.timesteps: 1000 -> 200, ...'`` for an error message."""
  text = ', '.join(f'{k}: {a!r} -> {b!r}' for k, a, b in changes[:most])
  return text + (', ...' if len(changes) > most else '')
