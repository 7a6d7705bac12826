"""The families, registered in one place, and how a config becomes a :class:`Family`.

A family is a package that defines ``FAMILY``, a :class:`FamilyDef`: its name,
its config (``get_config(dataset)``), the validation of its config sections,
and ``build(config, info) -> Family`` (the functions the train loop and the
harness call). The built-in ones live in ``trilemma_jax/families/<name>/`` and
are listed in :data:`BUILTIN`. Any other importable package works the same way:
its name is its import path (``config.family = 'my_project.my_family'``), so a
run, its evaluation and the trilemma job find it with no edit here.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import ml_collections

from trilemma_jax import config as config_lib
from trilemma_jax import data as data_lib
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.train_state import Family

# The built-in families, in the order reports list them.
BUILTIN = ('vae', 'gan', 'ddpm', 'ddgan')


@dataclasses.dataclass(frozen=True)
class FamilyDef:
  """What registers a family.

  Attributes:
    name: the family's name: for a built-in one its folder's name, for any
      other the import path of the package that defines it.
    get_config: ``dataset -> ConfigDict``, the family's defaults for a dataset
      (starting from :func:`trilemma_jax.config.base_config`).
    validate: ``(config, info) -> None``; checks the family's own keys and
      raises ``ValueError`` naming the key. The shared keys are checked before.
    build: ``(validated config, info) -> Family``.
    marker: matplotlib marker of the family in the trilemma figure.
    step_schedules: ``config -> keys``: the config keys that, in this config,
      lay a schedule over ``train.steps`` (a cosine learning-rate decay, say).
      A run with any cannot be resumed with another ``train.steps``: the
      schedule would change under the trained steps (see
      :func:`trilemma_jax.config.check_resumable`). Default: none.
  """

  name: str
  get_config: Callable[[str], ml_collections.ConfigDict]
  validate: Callable[[ml_collections.ConfigDict, DatasetInfo], None]
  build: Callable[[ml_collections.ConfigDict, DatasetInfo], Family]
  marker: str = 'o'
  step_schedules: Callable[[ml_collections.ConfigDict], tuple[str, ...]] = (
      lambda config: ())  # none: a run may resume with any train.steps


def module_name(name: str) -> str:
  """The package that defines family ``name``."""
  return f'trilemma_jax.families.{name}' if name in BUILTIN else name


def get(name: str) -> FamilyDef:
  """The :class:`FamilyDef` of a built-in family or of an importable family package."""
  if not isinstance(name, str) or not name:
    raise ValueError(f'A family name must be a non-empty string, got {name!r}.')
  path = module_name(name)
  try:
    module = importlib.import_module(path)
  except ModuleNotFoundError as e:
    if e.name is None or not path.startswith(e.name):
      raise  # the family's package exists but one of its own imports is missing
    raise ValueError(
        f'Unknown family {name!r}: expected one of {BUILTIN}, or the import path of a '
        f'package that defines FAMILY = trilemma_jax.families.FamilyDef(...) (not importable '
        f'here: {e}).') from None
  family = getattr(module, 'FAMILY', None)
  if not isinstance(family, FamilyDef):
    raise ValueError(f'{path} defines no FAMILY (a trilemma_jax.families.FamilyDef).')
  if family.name != name:
    raise ValueError(f'{path} registers its family as {family.name!r}, not {name!r}; a '
                     'family outside the package is named by its import path.')
  return family


def step_schedules(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The keys of ``config`` that lay a schedule over ``train.steps`` (see :class:`FamilyDef`)."""
  keys = get(config.family).step_schedules(config)
  return (keys,) if isinstance(keys, str) else tuple(keys)


def check_resumable(saved: Mapping[str, Any], config: ml_collections.ConfigDict,
                    workdir: str) -> None:
  """:func:`trilemma_jax.config.check_resumable` with the family's step schedules: the
  resume rule every entry point applies."""
  config_lib.check_resumable(saved, config, workdir, step_schedules=step_schedules(config))


def get_config(name: str, dataset: str, overrides: Mapping[str, Any] | None = None
               ) -> ml_collections.ConfigDict:
  """Family ``name``'s config for ``dataset`` with ``{'train.steps': ..., ...}`` applied.

  The importable form of ``experiments/train.py --config <config file>:<dataset>``
  for notebooks and scripts; the result is not validated yet.
  """
  config = get(name).get_config(dataset)
  return config_lib.apply_overrides(config, overrides, origin=f'the {name} config for {dataset}')


def validate(config: ml_collections.ConfigDict, info: DatasetInfo) -> FamilyDef:
  """The one validation pass of a run's config: shared keys, then the family's own.

  Returns:
    The family's :class:`FamilyDef`.
  """
  if config.data.name != info.name:
    raise ValueError(f'config.data.name is {config.data.name!r} but the dataset given is '
                     f'{info.name!r}.')
  family = get(config.family)
  config_lib.validate_shared(config, info)
  family.validate(config, info)
  return family


def build(config: ml_collections.ConfigDict, info: DatasetInfo | None = None) -> Family:
  """Validates ``config`` and builds its family on ``info`` (default: the config's dataset)."""
  if info is None:
    info = data_lib.load_info(config.data.name, data_dir=config.data.data_dir or None)
  return validate(config, info).build(config, info)
