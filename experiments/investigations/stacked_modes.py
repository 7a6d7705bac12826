"""Where a stacked-digits run's KL to uniform comes from: each channel, or the channels together.

For each run and sampler it draws the 26,000 samples the evaluation draws (same
keys and batches, so its modes and KL are the run's ``eval.json`` figures when
the run was evaluated with the default sampling seed 0, as the harness does),
labels every channel with the digits classifier, and splits the KL with
:func:`trilemma_jax.metrics.label_kl_parts`: each channel's own imbalance of
digit classes, and the dependence between the channels. It prints every class's
share of each channel times 10 (1 = fair). Two reference rows come first: the
first 26,000 training images, labelled by the classifier and by their true
labels: the KL that 26,000 draws of the data itself score, this protocol's
floor.

  .venv/bin/python experiments/investigations/stacked_modes.py \\
      --workdirs runs/coverage/runs/stacked_digits/ddgan/seed_0,... [--out stacked_modes.json]
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import app, flags

from trilemma_jax import checkpoints, data, evaluation, families, metrics, parallel, sampling
from trilemma_jax.evaluation import speed

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Trained runs on stacked_digits.', required=True)
_OUT = flags.DEFINE_string('out', '', 'Optional JSON output.')


def _row(name: str, labels: np.ndarray) -> dict:
  parts = metrics.label_kl_parts(labels)
  return {'name': name, 'modes': parts['modes'], 'kl_uniform': parts['kl_uniform'],
          'channel_kl': parts['channel_kl'], 'dependence': parts['dependence'],
          'channel_shares': parts['channel_shares'].tolist()}


def run_rows(workdir: str, feature_net) -> list[dict]:
  config = evaluation.load_config(workdir)
  info = data.load_info(config.data.name, data_dir=config.data.data_dir or None)
  if info.name != 'stacked_digits':
    raise ValueError(f'{workdir} trained on {info.name!r}; this script reads stacked_digits runs.')
  family = families.build(config, info)
  state = checkpoints.restore_state(workdir, family, info, parallel.make_mesh(jax.devices()[:1]))
  rows = []
  for sampler in family.samplers:
    x = sampling.draw(sampling.sampler_fn(family, sampler), state, info.protocol.mode_samples,
                      batch=speed.SPEED_BATCH)
    if not np.all(np.isfinite(x)):
      print(f'{workdir} ({sampler}): samples not finite, no mode figures (as in eval.json)')
      continue
    labels = np.asarray(feature_net.predict(np.clip(x, -1.0, 1.0)))
    rows.append(_row(f'{workdir} ({sampler})', labels))
  return rows


def main(argv):
  del argv
  feature_net = metrics.get_feature_net('stacked_digits')
  n = data.load_info('stacked_digits').protocol.mode_samples
  x, label = data.load_arrays('stacked_digits', 'train', limit=n)
  true = np.stack([label // 100, label // 10 % 10, label % 10], axis=1)
  rows = [_row('training images, classifier labels', np.asarray(feature_net.predict(x))),
          _row('training images, true labels', true)]
  for w in _WORKDIRS.value:
    rows += run_rows(w, feature_net)
  for r in rows:
    print(f"{r['name']}: {r['modes']} modes, KL {r['kl_uniform']:.3f} = channels "
          f"{' + '.join(f'{v:.3f}' for v in r['channel_kl'])} + dependence {r['dependence']:.3f}")
    for c, shares in enumerate(r['channel_shares']):
      print(f'  channel {c}, class share x 10 (0..9):', ' '.join(f'{10 * s:.2f}' for s in shares))
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  app.run(main)
