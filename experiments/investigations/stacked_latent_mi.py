"""Do a stacked-digits DDGAN's latents tie its channels' digits together?

The channels of a stacked-digits image are independent, and so are their noises
in ``x_t ~ q(x_t | x_0)``: given ``x_t``, an exact sampler draws each channel's
digit independently. This script noises ``--images`` training images to ``x_t``,
runs the generator's last t steps ``--draws`` times from each ``x_t`` (fresh
latents and posterior noises each time), labels every channel with the digits
classifier, and for each ``x_t`` computes the mutual information of the labels of
each channel pair over its draws. The same statistic after shuffling each
channel's labels independently across the draws of that ``x_t`` is the control:
what independent channels with the same per-``x_t`` label frequencies score (the
plug-in estimate's bias). The excess over the control, with its standard error
over the ``x_t``, is the dependence the generator's own randomness puts between
the channels.

  .venv/bin/python experiments/investigations/stacked_latent_mi.py \\
      --workdirs runs/stacked/runs/stacked_digits/ddgan/seed_0,... --t 2 [--out latent_mi.json]
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from trilemma_jax import data, evaluation, metrics
from trilemma_jax.families.ddgan import family as ddgan

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'DDGAN runs on stacked_digits.', required=True)
_T = flags.DEFINE_integer('t', 2, 'Start the chain at exact x_t (1..T).')
_IMAGES = flags.DEFINE_integer('images', 400, 'Training images noised to x_t.')
_DRAWS = flags.DEFINE_integer('draws', 64, 'Chains run from each x_t.')
_OUT = flags.DEFINE_string('out', '', 'Optional JSON output.')

_PAIRS = ((0, 1), (0, 2), (1, 2))


def pair_mi(a: np.ndarray, b: np.ndarray, base: int = 10) -> float:
  """Plug-in mutual information (nats) of two label vectors."""
  joint = np.zeros((base, base))
  np.add.at(joint, (a, b), 1.0)
  joint /= joint.sum()
  outer = np.outer(joint.sum(1), joint.sum(0))
  seen = joint > 0
  return float((joint[seen] * np.log(joint[seen] / outer[seen])).sum())


def latent_mi(labels: np.ndarray, rng: np.random.Generator) -> dict:
  """``labels [images, draws, 3]`` -> per-pair MI given x_t, the shuffled control, the excess."""
  given, control = [], []
  for per_x in labels:
    shuffled = np.stack([rng.permutation(per_x[:, c]) for c in range(per_x.shape[1])], axis=1)
    given.append([pair_mi(per_x[:, a], per_x[:, b]) for a, b in _PAIRS])
    control.append([pair_mi(shuffled[:, a], shuffled[:, b]) for a, b in _PAIRS])
  excess = np.sum(given, axis=1) - np.sum(control, axis=1)  # summed over the 3 pairs
  return {'mi_given_x_t': float(np.sum(np.mean(given, axis=0))),
          'control': float(np.sum(np.mean(control, axis=0))),
          'excess': float(excess.mean()),
          'excess_stderr': float(excess.std(ddof=1) / np.sqrt(len(excess))),
          'digits_per_channel': float(np.mean([len(set(per_x[:, c])) for per_x in labels
                                               for c in range(per_x.shape[1])]))}


def run(workdir: str, x0: np.ndarray, t: int, draws: int, feature_net) -> dict:
  config, info, _, state = evaluation.restore_run(workdir)
  if info.name != 'stacked_digits' or config.family != 'ddgan':
    raise ValueError(f'{workdir} is a {config.family} run on {info.name!r}; this script reads '
                     'DDGAN runs on stacked_digits.')
  parts = ddgan.build_parts(config, info)
  if not 1 <= t <= parts.schedule.num_steps:
    raise ValueError(f'--t={t} is outside 1..{parts.schedule.num_steps} (the run\'s T).')
  repeated = jnp.repeat(parts.noised(x0, t, jax.random.PRNGKey(t)), draws, axis=0)
  denoise = jax.jit(parts.denoise, static_argnums=2)
  drawn = np.asarray(denoise(state.ema[ddgan.GENERATOR], repeated, t,
                             jax.random.PRNGKey(100 + t))) / parts.data_scale
  labels = np.asarray(feature_net.predict(np.clip(drawn, -1.0, 1.0)))
  out = latent_mi(labels.reshape(x0.shape[0], draws, -1), np.random.default_rng(0))
  return {'workdir': workdir, 't': t, **out}


def main(argv):
  del argv
  feature_net = metrics.get_feature_net('stacked_digits')
  x0, _ = data.load_arrays('stacked_digits', 'train', limit=_IMAGES.value)
  rows = []
  for w in _WORKDIRS.value:
    r = run(w, x0, _T.value, _DRAWS.value, feature_net)
    rows.append(r)
    print(f"{w} from x_{r['t']}: MI of channel pairs given x_t (3 pairs summed) "
          f"{r['mi_given_x_t']:.4f}, shuffled control {r['control']:.4f}, excess "
          f"{r['excess']:.4f} ± {r['excess_stderr']:.4f}; digits per channel per x_t "
          f"{r['digits_per_channel']:.2f}", flush=True)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  app.run(main)
