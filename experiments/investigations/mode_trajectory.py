"""Mode figures along training: does a 2-D run reach sharp modes and lose them, or never reach them?

Trains ``--config`` (a family config and its 2-D dataset, overridden with
``--config.<key>=<value>`` as for ``experiments/train.py``) once per seed,
keeping a checkpoint every ``--every`` steps. Then it scores each checkpoint's
first sampler on 2,500 samples: modes, %HQ and reverse KL. The EMA weights are
used where the family keeps them; ``--raw`` scores the trained weights as
well. Prints one line per checkpoint and writes them as JSON to ``--out``.

  .venv/bin/python experiments/investigations/mode_trajectory.py \\
      --config trilemma_jax/families/ddgan/config.py:ring8 --config.train.steps=6000 \\
      --seeds 0,1,2 --every 500 --workdir runs/trajectory --out runs/trajectory/ring8_ddgan.json
"""

from __future__ import annotations

import json
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from trilemma_jax import checkpoints, data, families, metrics, parallel, sampling, train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'family config file:dataset',
                                          lock_config=False)
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'seeds')
_EVERY = flags.DEFINE_integer('every', 500, 'steps between scored checkpoints')
_RAW = flags.DEFINE_bool('raw', False, 'also score the trained (non-EMA) weights')
_WORKDIR = flags.DEFINE_string('workdir', None, 'where the runs go', required=True)
_OUT = flags.DEFINE_string('out', None, 'JSON of the figures per checkpoint')
_SAMPLES = 2500


def _figures(family, state, info) -> dict:
  m = metrics.mode_metrics(sampling.draw_samples(family, state, _SAMPLES, seed=0),
                           info.means, info.std)
  return {'modes': int(m['modes']), 'hq_percent': 100 * float(m['hq_fraction']),
          'reverse_kl': float(m['reverse_kl'])}


def trajectory(config, every: int, workdir: str, raw: bool = False) -> list[dict]:
  """Trains ``config`` in ``workdir`` and scores every checkpoint; one dict per checkpoint."""
  info = data.load_info(config.data.name)
  if info.means is None:
    raise ValueError(f'{info.name!r} has no mode means: expected a 2-D mixture such as ring8.')
  config.train.checkpoint_every = every
  config.train.max_to_keep = config.train.steps // every + 1
  config.train.progress = False
  train.train_and_evaluate(config, workdir)
  family = families.build(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  with checkpoints.checkpoint_manager(workdir) as mngr:
    saved = sorted(mngr.all_steps())
  out = []
  for step in saved:
    state = checkpoints.restore_state(workdir, family, info, mesh, step=step)
    row = {'seed': int(config.seed), 'step': int(step), **_figures(family, state, info)}
    if raw:
      row['raw'] = _figures(family, state.replace(ema=state.params), info)
    out.append(row)
    line = (f"seed {row['seed']} step {step:6d}  modes {row['modes']}/{len(info.means)}  "
            f"%HQ {row['hq_percent']:5.1f}  reverse KL {row['reverse_kl']:.3f}")
    if raw:
      r = row['raw']
      line += f"  | raw: {r['modes']} / {r['hq_percent']:.1f} / {r['reverse_kl']:.3f}"
    print(line, flush=True)
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config is required, e.g. trilemma_jax/families/ddgan/config.py:ring8')
  rows = []
  for seed in (int(s) for s in _SEEDS.value):
    config.seed = seed
    name = f'{config.data.name}_{config.family}_{seed}'
    rows += trajectory(config, _EVERY.value, os.path.join(_WORKDIR.value, name), _RAW.value)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  app.run(main)
