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

With ``--from_x_t`` a DDGAN run also gets one row per step t = 1..T: the
same training images noised exactly to ``x_t ~ q(x_t | x_0)`` and taken back
to ``x_0`` by the generator's last t steps. The row at t says how much KL those
steps add on their own (t = 1 keeps every image's digits if the last step is
exact: the floor), so it shows at which step the digits are mis-drawn.

  .venv/bin/python experiments/investigations/stacked_modes.py \\
      --workdirs runs/coverage/runs/stacked_digits/ddgan/seed_0,... [--from_x_t] \\
      [--out stacked_modes.json]
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import app, flags

from trilemma_jax import data, evaluation, metrics, sampling
from trilemma_jax.families.ddgan import family as ddgan
from trilemma_jax.evaluation import speed

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Trained runs on stacked_digits.', required=True)
_OUT = flags.DEFINE_string('out', '', 'Optional JSON output.')
_FROM_X_T = flags.DEFINE_bool('from_x_t', False,
                              'DDGAN runs: also split the KL of samples drawn by the last t '
                              'steps from the training images noised to x_t, for every t.')


def _row(name: str, labels: np.ndarray) -> dict:
  parts = metrics.label_kl_parts(labels)
  return {'name': name, 'modes': parts['modes'], 'kl_uniform': parts['kl_uniform'],
          'channel_kl': parts['channel_kl'], 'dependence': parts['dependence'],
          'channel_shares': parts['channel_shares'].tolist()}


def from_x_t_rows(workdir: str, config, info, state, x0: np.ndarray, feature_net) -> list[dict]:
  """One row per step t: the generator's last t steps from ``x0`` noised to ``x_t``."""
  parts = ddgan.build_parts(config, info)
  g_params = state.ema[ddgan.GENERATOR]
  denoise = jax.jit(parts.denoise, static_argnums=2)
  rows = []
  for t in range(1, parts.schedule.num_steps + 1):
    drawn = []
    for start in range(0, len(x0), speed.SPEED_BATCH * 20):
      key = jax.random.fold_in(jax.random.PRNGKey(t), start)
      noise_key, chain_key = jax.random.split(key)
      x_t = parts.noised(x0[start:start + speed.SPEED_BATCH * 20], t, noise_key)
      drawn.append(np.asarray(denoise(g_params, x_t, t, chain_key)) / parts.data_scale)
    labels = np.asarray(feature_net.predict(np.clip(np.concatenate(drawn), -1.0, 1.0)))
    rows.append(_row(f'{workdir} (last {t} steps from exact x_{t})', labels))
  return rows


def run_rows(workdir: str, feature_net, x0: np.ndarray | None = None) -> list[dict]:
  config, info, family, state = evaluation.restore_run(workdir)
  if info.name != 'stacked_digits':
    raise ValueError(f'{workdir} trained on {info.name!r}; this script reads stacked_digits runs.')
  rows = []
  for sampler in family.samplers:
    x = sampling.draw(sampling.sampler_fn(family, sampler), state, info.protocol.mode_samples,
                      batch=speed.SPEED_BATCH)
    if not np.all(np.isfinite(x)):
      print(f'{workdir} ({sampler}): samples not finite, no mode figures (as in eval.json)')
      continue
    labels = np.asarray(feature_net.predict(np.clip(x, -1.0, 1.0)))
    rows.append(_row(f'{workdir} ({sampler})', labels))
  if x0 is not None and config.family == 'ddgan':
    rows += from_x_t_rows(workdir, config, info, state, x0, feature_net)
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
    rows += run_rows(w, feature_net, x if _FROM_X_T.value else None)
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
