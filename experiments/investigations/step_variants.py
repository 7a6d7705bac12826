r"""Investigation: ways to run a family's train steps, timed against the plain step.

  .venv/bin/python experiments/investigations/step_variants.py --family ddgan --dataset digits \
      [--variants scan,vmap_seeds,cond_r1] [--k 8] [--seeds 3]

For one family and dataset (default config) it times, alternating with the plain
jitted step in the same process (medians of several windows after a warm-up):

* ``scan``: K steps in one ``lax.scan`` (``train.steps_per_dispatch``), and
  whether the parameters after K steps are bitwise those of K plain steps;
* ``vmap_seeds``: the steps of S seeds as one ``vmap`` over stacked states, against
  S plain steps one after another;
* ``cond_r1``: the lazily applied R1 penalty (GAN, DDGAN) skipped off schedule
  with ``lax.cond``, against computing it on every update.

Figures and what they decided: docs/performance.md.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from trilemma_jax import checkpoints, data, families, perf
from trilemma_jax.train_state import new_rng


def _timed(fn, windows):
  out = []
  for _ in range(windows):
    start = time.perf_counter()
    fn()
    out.append(time.perf_counter() - start)
  return statistics.median(out)


# The digits DDGAN as these figures were measured (docs/performance.md, section 9):
# batch 64 and lazy R1, the digits default before docs/ddgan_steps.md section 28.
_MEASURED = {('ddgan', 'digits'): {'data.batch_size': 64, 'ddgan.r1_gamma': 0.02}}


def setup(family_name, dataset, seeds):
  config = families.get_config(family_name, dataset, _MEASURED.get((family_name, dataset)))
  info = data.load_info(dataset)
  family = families.build(config, info)
  states = [jax.jit(family.init)(new_rng(s), checkpoints.example_batch(info))
            for s in range(seeds)]
  batches = []
  for s in range(seeds):
    it = data.train_iterator(data.get_source(dataset, 'train'),
                             global_batch_size=config.data.batch_size, seed=s)
    batches.append([next(it) for _ in range(8)])
  return config, info, family, states, batches


def scan_variant(family, state, batches, k, windows):
  single = jax.jit(family.train_step)
  multi = jax.jit(lambda s, b: jax.lax.scan(family.train_step, s, b))
  stacked = jax.tree.map(lambda *v: np.stack(v), *[batches[i % len(batches)] for i in range(k)])
  a = state
  for i in range(k):
    a, _ = single(a, batches[i % len(batches)])
  b, _ = multi(state, stacked)
  same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  def run_single():
    s = state
    for i in range(k):
      s, _ = single(s, batches[i % len(batches)])
    jax.block_until_ready(s)

  def run_multi():
    jax.block_until_ready(multi(state, stacked))

  t1, tk = _timed(run_single, windows) / k, _timed(run_multi, windows) / k
  return f'scan K={k}: bitwise equal {same}; plain {1e3 * t1:.1f} ms/step, scanned {1e3 * tk:.1f} ms/step'


def vmap_variant(family, states, batches, windows):
  seeds = len(states)
  single = jax.jit(family.train_step)
  vmapped = jax.jit(jax.vmap(family.train_step))
  stacked = jax.tree.map(lambda *v: jnp.stack(v), *states)
  stacked_batch = jax.tree.map(lambda *v: np.stack(v), *[b[0] for b in batches])
  jax.block_until_ready(vmapped(stacked, stacked_batch))

  def run_single():
    jax.block_until_ready([single(states[s], batches[s][0]) for s in range(seeds)])

  def run_vmapped():
    jax.block_until_ready(vmapped(stacked, stacked_batch))

  ts, tv = _timed(run_single, windows), _timed(run_vmapped, windows)
  return (f'vmap over {seeds} seeds: one step each, sequential {1e3 * ts:.1f} ms, vmapped '
          f'{1e3 * tv:.1f} ms ({ts / tv:.2f}x)')


def cond_variant(config, info, state, batches, windows):
  times = {}
  original = perf.lazy_penalty_uses_cond
  try:
    for use_cond in (False, True):
      perf.lazy_penalty_uses_cond = lambda v=use_cond: v
      step = jax.jit(families.build(config, info).train_step)
      jax.block_until_ready(step(state, batches[0]))

      def run(step=step):
        s = state
        for i in range(len(batches)):
          s, _ = step(s, batches[i])
        jax.block_until_ready(s)

      times[use_cond] = _timed(run, windows) / len(batches)
  finally:
    perf.lazy_penalty_uses_cond = original
  return (f'lazy R1: unconditional {1e3 * times[False]:.1f} ms/step, lax.cond '
          f'{1e3 * times[True]:.1f} ms/step')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--family', default='ddgan')
  parser.add_argument('--dataset', default='grid25')
  parser.add_argument('--variants', default='scan,vmap_seeds,cond_r1')
  parser.add_argument('--k', type=int, default=8)
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--windows', type=int, default=5)
  args = parser.parse_args()
  config, info, family, states, batches = setup(args.family, args.dataset, args.seeds)
  for variant in args.variants.split(','):
    if variant == 'scan':
      print(scan_variant(family, states[0], batches[0], args.k, args.windows), flush=True)
    elif variant == 'vmap_seeds':
      print(vmap_variant(family, states, batches, args.windows), flush=True)
    elif variant == 'cond_r1' and args.family in ('gan', 'ddgan'):
      print(cond_variant(config, info, states[0], batches[0], args.windows), flush=True)


if __name__ == '__main__':
  main()
