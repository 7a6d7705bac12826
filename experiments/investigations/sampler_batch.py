"""Samples/s of each sampler at several batch sizes, on an untrained state of a config.

Speed depends on the shapes, not the weights, so no training is needed. Used to
decide whether drawing the scored samples at a larger batch than the timed 100
would shorten an evaluation (docs/coverage.md). Each batch size is compiled,
then timed on ``--repeats`` calls (median).

  .venv/bin/python experiments/investigations/sampler_batch.py \\
      --config trilemma_jax/families/ddpm/config.py:stacked_digits \\
      --config.ddpm.timesteps=100 --config.ddpm.vb_terms=0 --config.ddpm.ddim_steps='(4,)' \\
      --batches 100,500,1000
"""

from __future__ import annotations

import statistics
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from trilemma_jax import checkpoints, data, families, parallel, sampling
from trilemma_jax.train_state import new_rng

_CONFIG = config_flags.DEFINE_config_file('config', None, 'family config file:dataset')
_BATCHES = flags.DEFINE_list('batches', ['100', '500', '1000'], 'batch sizes')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'timed calls per batch size')


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config is required, e.g. trilemma_jax/families/ddpm/config.py:digits')
  info = data.load_info(config.data.name)
  family = families.build(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = parallel.jit_init(family.init, mesh)(new_rng(0), checkpoints.example_batch(info))
  for name, (_, nfe) in family.samplers.items():
    fn = sampling.sampler_fn(family, name)
    for batch in (int(b) for b in _BATCHES.value):
      seconds = []
      for i in range(_REPEATS.value + 1):  # the first call compiles
        start = time.perf_counter()
        jax.block_until_ready(fn(state, jax.random.PRNGKey(i), batch))
        seconds.append(time.perf_counter() - start)
      print(f'{name} (NFE {nfe}) batch {batch}: {batch / statistics.median(seconds[1:]):,.1f} '
            f'samples/s, first call {seconds[0]:.1f} s', flush=True)


if __name__ == '__main__':
  app.run(main)
