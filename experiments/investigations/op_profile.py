"""Where a family's train step spends its time: XLA ops grouped by kind, per step.

Traces ``--steps`` calls of the compiled train step (after a warm-up) with
``jax.profiler`` and sums the durations of the executed XLA ops, grouped by
their name without the numeric suffix (``ynn_fusion.245`` counts as
``ynn_fusion``: YNNPACK's fused convolutions and dots on CPU); only trace events
that name an HLO op count. Op times on
several threads add up, so their sum can exceed the wall time per step, which
is printed beside it together with the host time of the calls (argument
handling: it grows with the number of arrays in the state). The trace stays
under ``--out`` for TensorBoard or Perfetto.

  .venv/bin/python experiments/investigations/op_profile.py \\
      --config trilemma_jax/families/ddgan/config.py:digits
  .venv/bin/python experiments/investigations/op_profile.py \\
      --config trilemma_jax/families/ddpm/config.py:digits --config.ddpm.timesteps=100 \\
      --config.ddpm.vb_terms=0
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import shutil
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from trilemma_jax import benchmark, parallel

_CONFIG = config_flags.DEFINE_config_file('config', None, 'family config file:dataset')
_STEPS = flags.DEFINE_integer('steps', 20, 'traced train steps')
_TOP = flags.DEFINE_integer('top', 20, 'op kinds listed')
_OUT = flags.DEFINE_string('out', 'runs/op_profile', 'trace directory (replaced)')

def op_times(trace_dir: str, steps: int) -> tuple[collections.Counter, collections.Counter]:
  """Microseconds and counts per op kind and step, from the Perfetto trace in ``trace_dir``."""
  (path,) = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
  with gzip.open(path) as f:
    events = json.load(f)['traceEvents']
  micros, counts = collections.Counter(), collections.Counter()
  for e in events:
    # XLA ops carry their HLO name in args; the runtime's spans and Python frames do not.
    if e.get('ph') == 'X' and 'dur' in e and 'hlo_op' in (e.get('args') or {}):
      kind = re.sub(r'[.\d]+$', '', e['name'])
      micros[kind] += e['dur'] / steps
      counts[kind] += 1 / steps
  return micros, counts


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config is required, e.g. trilemma_jax/families/ddgan/config.py:digits')
  family, mesh, state, iterator = benchmark.train_setup(config)
  batches = [parallel.shard_batch(next(iterator), mesh) for _ in range(4)]
  step = parallel.jit_train_step(family.train_step, mesh)
  for i in range(5):
    state, _ = step(state, batches[i % len(batches)])
  jax.block_until_ready(state)

  n = _STEPS.value
  start = time.perf_counter()
  for i in range(n):
    state, _ = step(state, batches[i % len(batches)])
  jax.block_until_ready(state)
  wall = (time.perf_counter() - start) / n

  shutil.rmtree(_OUT.value, ignore_errors=True)
  jax.profiler.start_trace(_OUT.value, create_perfetto_trace=True)
  host = 0.0
  for i in range(n):
    call = time.perf_counter()
    state, _ = step(state, batches[i % len(batches)])
    host += time.perf_counter() - call
  jax.block_until_ready(state)
  jax.profiler.stop_trace()

  micros, counts = op_times(_OUT.value, n)
  print(f'{config.family} on {config.data.name}: {1000 * wall:.1f} ms per step (untraced), '
        f'{len(jax.tree.leaves(state))} arrays in the state, {1000 * host / n:.1f} ms per call '
        f'on the host while traced')
  print(f'XLA op time summed over threads: {sum(micros.values()) / 1000:.1f} ms per step')
  for kind, us in micros.most_common(_TOP.value):
    print(f'{us / 1000:9.2f} ms {counts[kind]:7.1f} x  {kind} ({us / counts[kind] / 1000:.2f} ms each)')


if __name__ == '__main__':
  app.run(main)
