"""Is a freshly compiled train step slower than the same program serialized and loaded again?

A cold main job (empty compilation cache) ran its steps slower than a warm one.
This script separates the executable from the machine: in one process, for
``--repeats`` rounds, it compiles the train step afresh, serializes and loads
that executable (what the persistent compilation cache does), and times
``--steps`` steps of each, one after the other, on the same prefetched batches.
Rounds alternate the two, so the machine's drift shows up in both columns.

  JAX_PLATFORMS=cpu .venv/bin/python experiments/investigations/compile_reload.py \\
      --config trilemma_jax/families/ddpm/config.py:digits \\
      --config.ddpm.timesteps=100 --config.ddpm.vb_terms=0
"""

from __future__ import annotations

import jax
from absl import app, flags
from jax.experimental import serialize_executable
from ml_collections import config_flags

from trilemma_jax import benchmark, parallel

_CONFIG = config_flags.DEFINE_config_file('config', None, 'family config file:dataset')
_STEPS = flags.DEFINE_integer('steps', 300, 'timed steps per executable and round')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'rounds (each compiles afresh)')
flags.mark_flag_as_required('config')

_WINDOW = 50


def main(argv):
  del argv
  if _STEPS.value < 3 * _WINDOW:
    raise app.UsageError(f'--steps={_STEPS.value}: need at least {3 * _WINDOW} for two windows.')
  family, mesh, state, iterator = benchmark.train_setup(_CONFIG.value)
  batches = [parallel.shard_batch(next(iterator), mesh) for _ in range(8)]
  for round_ in range(_REPEATS.value):
    jax.clear_caches()  # the jit below compiles afresh: this script never enables the disk cache
    fresh = parallel.jit_train_step(family.train_step, mesh).lower(state, batches[0]).compile()
    reloaded = serialize_executable.deserialize_and_load(*serialize_executable.serialize(fresh))
    state, a = benchmark.windowed_steps_per_second(fresh, state, batches, _STEPS.value, _WINDOW)
    state, b = benchmark.windowed_steps_per_second(reloaded, state, batches, _STEPS.value,
                                                   _WINDOW)
    print(f'round {round_}: fresh {a:.1f} steps/s, reloaded {b:.1f} steps/s, ratio {b / a:.2f}',
          flush=True)


if __name__ == '__main__':
  app.run(main)
