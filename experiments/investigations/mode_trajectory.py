"""Mode figures along training: does a 2-D run reach sharp modes and lose them, or never reach them?

Trains ``--family`` on ``--dataset`` (the family's config with ``--set``
overrides, for each seed) keeping a checkpoint every ``--every`` steps, then scores each
checkpoint's first sampler (EMA weights where the family keeps them) on 2,500
samples: modes, %HQ and reverse KL. Prints one line per checkpoint and writes
them as JSON to ``--out``.

  .venv/bin/python experiments/investigations/mode_trajectory.py \\
      --family ddgan --dataset ring8 --seeds 0,1,2 --steps 6000 --every 500 \\
      --workdir runs/trajectory --out runs/trajectory/ring8_ddgan.json
"""

from __future__ import annotations

import ast
import json
import os

import jax
from absl import app, flags

from trilemma_jax import checkpoints, data, families, harness, metrics, parallel, sampling, train

_FAMILY = flags.DEFINE_string('family', 'ddgan', 'family name')
_DATASET = flags.DEFINE_string('dataset', 'ring8', 'a 2-D mixture (grid25, ring8)')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'seeds')
_STEPS = flags.DEFINE_integer('steps', 6000, 'training steps')
_EVERY = flags.DEFINE_integer('every', 500, 'steps between scored checkpoints')
_WORKDIR = flags.DEFINE_string('workdir', None, 'where the runs go', required=True)
_OUT = flags.DEFINE_string('out', None, 'JSON of the figures per checkpoint')
_SET = flags.DEFINE_multi_string('set', [], 'config override key=value (Python literal), repeatable')
_SAMPLES = 2500


def trajectory(family_name: str, dataset: str, seed: int, steps: int, every: int,
               workdir: str, overrides: dict | None = None) -> list[dict]:
  info = data.load_info(dataset)
  if info.means is None:
    raise ValueError(f'{dataset!r} has no mode means: expected a 2-D mixture such as ring8.')
  config = harness.family_config(family_name, dataset, seed, {
      **(overrides or {}), 'train.steps': steps, 'train.checkpoint_every': every,
      'train.max_to_keep': steps // every + 1})
  train.train_and_evaluate(config, workdir)
  family = families.build(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  with checkpoints.checkpoint_manager(workdir) as mngr:
    saved = sorted(mngr.all_steps())
  out = []
  for step in saved:
    state = checkpoints.restore_state(workdir, family, info, mesh, step=step)
    x = sampling.draw_samples(family, state, _SAMPLES, seed=0)
    m = metrics.mode_metrics(x, info.means, info.std)
    out.append({'seed': seed, 'step': int(step), 'modes': int(m['modes']),
                'hq_percent': 100 * float(m['hq_fraction']),
                'reverse_kl': float(m['reverse_kl'])})
    print(f"seed {seed} step {step:6d}  modes {m['modes']}/{m['max_modes']}  "
          f"%HQ {100 * m['hq_fraction']:5.1f}  reverse KL {m['reverse_kl']:.3f}", flush=True)
  return out


def main(argv):
  del argv
  overrides = {}
  for item in _SET.value:
    key, sep, value = item.partition('=')
    if not sep:
      raise app.UsageError(f'--set {item!r}: expected key=value')
    overrides[key] = ast.literal_eval(value)
  rows = []
  for seed in (int(s) for s in _SEEDS.value):
    rows += trajectory(_FAMILY.value, _DATASET.value, seed, _STEPS.value, _EVERY.value,
                       os.path.join(_WORKDIR.value, f'{_DATASET.value}_{_FAMILY.value}_{seed}'),
                       overrides)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  app.run(main)
