"""Experiment configuration: the shared skeleton, its validation, and the resume rule.

A family's config (``trilemma_jax/families/<name>/config.py``) starts from
:func:`base_config` and adds its ``model``, ``optim`` and family sections. The
network keys live in a subsection named after the data's kind, ``model.points``
or ``model.image``, and a config carries only the one its dataset needs.
:func:`trilemma_jax.families.validate` checks a whole config once, at the edge,
before anything is built.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from trilemma_jax import validation
from trilemma_jax.data.info import KINDS, DatasetInfo

# What a resumed run may change: how long it trains (unless a schedule is laid over
# train.steps: check_resumable), how it logs and checkpoints,
# its evaluation, and where its data live. Anything else (family, dataset, seed,
# model, optimiser, batch size, family keys) belongs to another run.
RESUMABLE = ('train', 'eval', 'data.data_dir')

# The computation dtypes of the networks (config.model.compute_dtype). Parameters
# and optimiser state stay float32 under either; 'bfloat16' only changes the
# arithmetic inside the networks (see README, "Mixed precision").
COMPUTE_DTYPES = ('float32', 'bfloat16')

# Keys added after runs were saved, each with the value those older runs used
# without naming it. A saved config that lacks one reads as having that value,
# so the run stays resumable (changed_keys) and can still be built and
# evaluated from its config.json (setting).
ADDED_KEYS: dict[str, Any] = {
    'model.compute_dtype': 'float32',
    'ddgan.energy_weight': 0.0,
    'ddgan.energy_from_step': 1,  # the score at every step
    'ddgan.r1_gamma_start': 0.0,  # a constant R1 gamma
    'ddgan.pack': 1,
    'ddgan.spectral_norm': False,
    'ddgan.per_step_generator': False,
    'ddgan.t_weights': [],  # (as JSON) uniform t
    'ddgan.last_step_weight': 1.0,
    'ddgan.time_power': 1.0,  # the official uniform time grid
    'model.points.g_fourier_first_octave': 0,  # DDGAN's Fourier octaves from pi
    'model.points.d_fourier_first_octave': 0,
    'model.image.arch': 'unet',  # DDGAN's image networks
    'model.image.attn_resolutions': [],  # (as JSON) DDGAN's before NCSN++; DDPM always had it
    'model.image.noise_channels': 0,  # DDGAN's U-Net before its noise maps
    'model.image.latent_from_step': 1,  # the mapped latent at every step
    'ddpm.ancestral': True,
}


def base_config(family: str, dataset: str, kind: str) -> ml_collections.ConfigDict:
  """The keys every run has; the family adds ``model.<kind>``, ``optim`` and its own.

  Args:
    family: the family's registered name.
    dataset: the dataset name (``config.data.name``).
    kind: the dataset's kind (:func:`trilemma_jax.data.kind_of`), 'points' or 'image'.
  """
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
  c.train.num_samples = 1000 if kind == 'points' else 100
  c.train.progress = True  # tqdm bar on the console
  # Train steps per compiled call (a lax.scan over that many batches): fewer
  # dispatches for small models on accelerators; the same result for any value.
  c.train.steps_per_dispatch = 1

  c.ema = ml_collections.ConfigDict()
  # With the warm-up the decay is min(decay, (1 + s) / (10 + s)) at step s
  # (train_state.ema_decay_with_warmup), which stays below 0.999 until step
  # ~9,000 (0.997 at 3,000): a shorter run averages its weights with step j
  # weighted about as j^8 (half the weight on the last 7 % of the steps, 90 %
  # on the last 23 %), and a higher decay changes nothing (docs/ddgan_steps.md,
  # section 23).
  c.ema.decay = 0.999
  c.ema.warmup = True

  c.model = ml_collections.ConfigDict()
  # dtype of the networks' arithmetic: 'float32', or 'bfloat16' for mixed
  # precision (parameters, optimiser state, losses and samplers stay float32).
  c.model.compute_dtype = 'float32'
  c.model[kind] = ml_collections.ConfigDict()
  c.optim = ml_collections.ConfigDict()
  return c


def validate_shared(config: ml_collections.ConfigDict, info: DatasetInfo) -> None:
  """Checks the keys every run has and that ``model`` holds the section of ``info.kind``."""
  validation.check_config(config, {
      'data.batch_size': validation.positive_int,
      'train.steps': validation.positive_int,
      'train.log_every': validation.positive_int,
      'train.checkpoint_every': validation.positive_int,
      'train.max_to_keep': validation.positive_int,
      'train.num_samples': validation.positive_int,
      'train.steps_per_dispatch': validation.positive_int,
      'ema.decay': validation.in_range(0.0, 1.0, high_open=True),
      'ema.warmup': validation.boolean,
      'seed': validation.non_negative_int,
  })
  # Through setting(): the config.json of a run saved before the key existed lacks it.
  validation.one_of(COMPUTE_DTYPES)('config.model.compute_dtype',
                                    setting(config, 'model.compute_dtype'))
  sections = [k for k in KINDS if k in config.model]
  if sections != [info.kind]:
    raise ValueError(
        f'{info.name!r} is {info.kind} data, so config.model needs the section '
        f'model.{info.kind} (and no other kind), but it has {sections or "none"}. Build the '
        f"config for this dataset: families.get_config(family, {info.name!r}) or "
        f"config.py:{info.name}.")


def setting(config: Any, path: str) -> Any:
  """``config.<path>``, or for a key of :data:`ADDED_KEYS` missing from ``config`` (the
  config of a run saved before the key existed) the value that run used."""
  if path in ADDED_KEYS:
    try:
      return validation.config_value(config, path)
    except ValueError:
      return ADDED_KEYS[path]
  return validation.config_value(config, path)


def compute_dtype(config: Any) -> Any:
  """The numpy dtype the networks of ``config`` compute in (``model.compute_dtype``)."""
  return jnp.dtype(setting(config, 'model.compute_dtype'))


def load_config_file(spec: str, overrides: Mapping[str, Any] | None = None
                     ) -> ml_collections.ConfigDict:
  """Loads ``'path/to/config.py:<arg>'`` as the train script does, then applies overrides.

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
  return apply_overrides(config, overrides, origin=spec)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any] | None, *,
                    origin: str = 'the config') -> ml_collections.ConfigDict:
  """Sets ``{'a.b': value}`` in place; each key must already exist. Returns ``config``."""
  for key, value in (overrides or {}).items():
    node = config
    *parents, leaf = key.split('.')
    for part in parents:
      if part not in node:
        raise ValueError(f'Override {key!r}: {part!r} is not a key of {origin}.')
      node = node[part]
    if leaf not in node:
      raise ValueError(f'Override {key!r}: {leaf!r} is not a key of {origin}.')
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

  A key of :data:`ADDED_KEYS` missing from either side counts as the value
  runs used before the key existed, so only another value is a change.
  """
  old = {**ADDED_KEYS, **traverse_util.flatten_dict(dict(saved), sep='.')}
  new = {**ADDED_KEYS,
         **traverse_util.flatten_dict(json.loads(config.to_json_best_effort()), sep='.')}

  def free(key: str) -> bool:
    return any(key == p or key.startswith(p + '.') for p in may_change)

  return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if not free(k) and old.get(k) != new.get(k)]


def describe_changes(changes: Sequence[tuple[str, Any, Any]], most: int = 5) -> str:
  """``'ddpm.timesteps: 1000 -> 200, ...'`` for an error message."""
  text = ', '.join(f'{k}: {a!r} -> {b!r}' for k, a, b in changes[:most])
  return text + (', ...' if len(changes) > most else '')


def check_resumable(saved: Mapping[str, Any], config: ml_collections.ConfigDict,
                    workdir: str, step_schedules: Sequence[str] = ()) -> None:
  """Refuses to continue the run in ``workdir`` (saved config ``saved``) with other settings.

  The one rule for every entry point: only the sections of :data:`RESUMABLE`
  may differ, and ``train.steps`` only where no schedule is laid over it.

  Args:
    saved: the run's saved config (a nested dict).
    config: the config to continue it with.
    workdir: the run's directory (for the message).
    step_schedules: the keys of ``config`` that lay a schedule over
      ``train.steps`` (:func:`trilemma_jax.families.step_schedules`). With any,
      another ``train.steps`` is refused: a cosine decay over 9,600 steps
      resumed as one over 14,400 would be neither run.
  """
  changes = changed_keys(saved, config, may_change=RESUMABLE)
  if changes:
    raise ValueError(
        f'{workdir} holds a run of other settings ({describe_changes(changes)}). A resumed '
        f'run may change only {", ".join(RESUMABLE)}. Use a new workdir, or delete that run '
        f'to retrain it, or resume with the settings in {os.path.join(workdir, "config.json")}.')
  old_steps = (saved.get('train') or {}).get('steps')
  if step_schedules and old_steps is not None and old_steps != config.train.steps:
    keys = ', '.join(f'{k}={setting(config, k)!r}' for k in step_schedules)
    raise ValueError(
        f'{workdir} holds a run of train.steps={old_steps}, asked to run to '
        f'{config.train.steps}; but its config lays a schedule over train.steps ({keys}), '
        f'which would change under the steps already trained. Use a new workdir, or delete '
        f'that run to retrain it, or resume with train.steps={old_steps} (in a profile: the '
        f'budget that trained it).')
