"""The toy family's config (usable as ``--config tests/toy_family/config.py:<dataset>``)."""

import ml_collections

from trilemma_jax import data, validation
from trilemma_jax.config import base_config


def get_config(dataset='grid25'):
  c = base_config('toy_family', dataset, data.kind_of(dataset))
  c.optim.lr = 0.05
  c.train.steps = 200
  c.eval = ml_collections.ConfigDict({'batch_size': 100, 'num_examples': 500})
  return c


def validate(config, info):
  del info
  validation.check_config(config, {'optim.lr': validation.positive,
                                   'eval.batch_size': validation.positive_int,
                                   'eval.num_examples': validation.non_negative_int})
