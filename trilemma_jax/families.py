"""Build a :class:`~trilemma_jax.train_state.Family` from a validated config."""

from __future__ import annotations

import importlib

import ml_collections

from trilemma_jax.config import FAMILIES
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.train_state import Family


def build_family(config: ml_collections.ConfigDict, info: DatasetInfo) -> Family:
  """Imports ``trilemma_jax.<config.family>`` and calls its ``build_family``."""
  if config.family not in FAMILIES:
    raise ValueError(f'Unknown family {config.family!r}; expected one of {FAMILIES}.')
  module = importlib.import_module(f'trilemma_jax.{config.family}')
  return module.build_family(config, info)
