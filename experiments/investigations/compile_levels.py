"""What XLA:CPU's optimisation settings trade between a train step's compile time and speed.

A cold main job spends about a sixth of its time compiling (docs/budgets.md,
session 22), most of it in the train steps. This script lowers ``--config``'s
train step once and compiles it under each setting of ``--variants``: the
defaults, XLA's backend optimisation levels, the fast-compile preset, LLVM's
expensive passes off. For each it reports the compile's wall and CPU seconds
(``resource.getrusage``: XLA compiles on several threads), the steps/s of the
compiled program in rounds that alternate the variants on the same prefetched
batches (median window per round), and how far ``--check_steps`` steps from the
same initial state land from those of the first variant listed (``default``
unless told otherwise; the largest absolute difference over the parameters, 0
meaning bit for bit). The first variant is also the first compiled, which may
cost it some seconds of one-off set-up.

  JAX_PLATFORMS=cpu .venv/bin/python experiments/investigations/compile_levels.py \\
      --config trilemma_jax/families/ddgan/config.py:digits
"""

from __future__ import annotations

import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from trilemma_jax import benchmark, parallel

_CONFIG = config_flags.DEFINE_config_file('config', None, 'family config file:dataset')
_VARIANTS = flags.DEFINE_list(
    'variants', ['default', 'O1', 'O0', 'fast_compile', 'no_expensive'],
    'settings to compile under (names of _OPTIONS)')
_STEPS = flags.DEFINE_integer('steps', 200, 'timed steps per variant and round')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'timing rounds (the variants alternate in each)')
_CHECK_STEPS = flags.DEFINE_integer('check_steps', 20, 'steps of the agreement check')
flags.mark_flag_as_required('config')

_OPTIONS = {
    'default': None,
    'O2': {'xla_backend_optimization_level': 2},
    'O1': {'xla_backend_optimization_level': 1},
    'O0': {'xla_backend_optimization_level': 0},
    'fast_compile': {'xla_cpu_opt_preset': 'CPU_OPT_PRESET_FAST_COMPILE'},
    'no_expensive': {'xla_llvm_disable_expensive_passes': True},
}
_WINDOW = 25


def _cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def _fresh(state):
  """A copy of ``state``: the train step donates (deletes) the state it is given."""
  return jax.tree.map(jnp.copy, state)


def _params(state):
  return jax.tree_util.tree_leaves(jax.device_get(state.params))


def main(argv):
  del argv
  unknown = [v for v in _VARIANTS.value if v not in _OPTIONS]
  if unknown:
    raise app.UsageError(f'--variants: unknown {unknown}; expected names from {list(_OPTIONS)}.')
  if _STEPS.value < 3 * _WINDOW:
    raise app.UsageError(f'--steps={_STEPS.value}: need at least {3 * _WINDOW}.')
  family, mesh, state, iterator = benchmark.train_setup(_CONFIG.value)
  batches = [parallel.shard_batch(next(iterator), mesh) for _ in range(8)]
  lowered = parallel.jit_train_step(family.train_step, mesh).lower(state, batches[0])
  compiled, rows = {}, {}
  for name in _VARIANTS.value:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    compiled[name] = lowered.compile(compiler_options=_OPTIONS[name])
    rows[name] = {'compile_wall': time.perf_counter() - wall, 'compile_cpu': _cpu_seconds() - cpu,
                  'steps_per_second': []}
    print(f'{name}: compiled in {rows[name]["compile_wall"]:.1f} s wall, '
          f'{rows[name]["compile_cpu"]:.1f} s CPU', flush=True)

  reference = None
  for name in _VARIANTS.value:
    s = _fresh(state)
    for i in range(_CHECK_STEPS.value):
      s, _ = compiled[name](s, batches[i % len(batches)])
    leaves = _params(s)
    if reference is None:
      reference = leaves
    rows[name]['max_abs_diff'] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                     for a, b in zip(leaves, reference))

  for round_ in range(_ROUNDS.value):
    order = _VARIANTS.value if round_ % 2 == 0 else _VARIANTS.value[::-1]
    for name in order:
      _, sps = benchmark.windowed_steps_per_second(compiled[name], _fresh(state), batches,
                                                   _STEPS.value, _WINDOW)
      rows[name]['steps_per_second'].append(sps)

  base = statistics.median(rows[_VARIANTS.value[0]]['steps_per_second'])
  print(f'\n{"variant":14s} {"compile wall s":>14s} {"compile CPU s":>13s} '
        f'{"steps/s per round":>24s} {"median":>7s} {"ratio":>6s} {"max |diff| after":>18s}')
  for name in _VARIANTS.value:
    r = rows[name]
    med = statistics.median(r['steps_per_second'])
    rounds = ' '.join(f'{x:.1f}' for x in r['steps_per_second'])
    print(f'{name:14s} {r["compile_wall"]:14.1f} {r["compile_cpu"]:13.1f} {rounds:>24s} '
          f'{med:7.1f} {med / base:6.2f} {r["max_abs_diff"]:12.2e} ({_CHECK_STEPS.value} steps)')


if __name__ == '__main__':
  app.run(main)
