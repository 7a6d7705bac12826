"""Where a trained DDGAN's mode weights go wrong, step by step (grid25 / ring8 runs).

For each run, and each t in 1..T, the chain starts from exact draws of q(x_t)
(trilemma_jax.analytic) and runs only the generator's last t steps
(``Parts.denoise``); t = T is the sampler itself up to the start (q(x_T) instead
of N(0, I)). The error of the mode figures as t grows says which steps put the
mode weights off. The per-mode histogram of the full chain is split by the
position of the mode (corner, edge, interior of the grid) to show whether the
unevenness follows the geometry, and the sampler's distances to the nearest
mean are set beside those of exact data draws (a too-wide core, or a tail
between the modes). Last, for each step on its own, it compares
the generator's one-step distribution p(x_{t-1} | x_t) with the exact
q(x_{t-1} | x_t), for exact draws of x_t and many latents per x_t: the ratio of
the conditional variances (below 1: the generator's step is too narrow, it
ignores z) and the shift of the conditional mean, also along the direction
away from the grid's centre (negative: pulled inwards).

  .venv/bin/python experiments/investigations/ddgan_step_errors.py \\
      --workdirs runs/tsweep/runs/grid25/ddgan_T4/seed_0,... [--out step_errors.json]
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from trilemma_jax import analytic, evaluation, metrics
from trilemma_jax.families.ddgan import family as ddgan

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Trained DDGAN runs on grid25 or ring8.',
                              required=True)
_SAMPLES = flags.DEFINE_integer('samples', 2500, 'Samples per chain (the mode protocol uses 2,500).')
_OUT = flags.DEFINE_string('out', '', 'Optional JSON output.')


def mode_shares(x: np.ndarray, info) -> np.ndarray:
  """Share of the high-quality samples per mode (nearest mean within 3 std)."""
  d = np.linalg.norm(x[:, None, :] - info.means[None], axis=-1)
  nearest, hq = d.argmin(1), d.min(1) <= 3 * info.std
  counts = np.bincount(nearest[hq], minlength=len(info.means)).astype(np.float64)
  return counts / max(counts.sum(), 1.0)


def grid_position(means: np.ndarray) -> np.ndarray:
  """'corner' / 'edge' / 'interior' of each mean on a square grid ('ring' otherwise)."""
  lo, hi = means.min(0), means.max(0)
  on_border = (np.isclose(means, lo) | np.isclose(means, hi)).sum(1)
  if len(means) != 25:
    return np.array(['ring'] * len(means))
  return np.array(['interior', 'edge', 'corner'])[on_border]


def distance_quantiles(x: np.ndarray, info) -> dict:
  """Distance to the nearest mean in units of the mode std: median, 90th percentile, beyond 5."""
  d = np.linalg.norm(x[:, None, :] - info.means[None], axis=-1).min(1) / info.std
  return {'median': float(np.median(d)), 'p90': float(np.percentile(d, 90)),
          'beyond_5_std': float((d > 5).mean())}


def conditional_spread(parts, g_params, mix, t: int, key: jax.Array, *, num_x: int = 400,
                       num_z: int = 64) -> dict:
  """One generator step from exact x_t against the exact q(x_{t-1} | x_t)."""
  x_t = analytic.sample(analytic.marginal(parts.schedule, mix, t), key, (num_x,))
  x_rep = jnp.repeat(x_t, num_z, axis=0)
  tb = jnp.full((num_x * num_z,), t, jnp.int32)
  z = jax.random.normal(jax.random.fold_in(key, 1), (num_x * num_z, parts.latent_dim))
  x0_hat = parts.generator.apply({'params': g_params}, x_rep, z, tb)
  x_prev = ddgan.fake_prev(parts.schedule, x0_hat, x_rep, tb, jax.random.fold_in(key, 2))
  x_prev = np.asarray(x_prev).reshape(num_x, num_z, -1)
  exact = analytic.denoising(parts.schedule, mix, x_t, t)
  m_star = np.asarray(analytic.mean(exact))
  var_star = np.trace(np.asarray(analytic.covariance(exact)), axis1=1, axis2=2)
  m_g = x_prev.mean(1)
  var_g = ((x_prev - m_g[:, None]) ** 2).sum(-1).sum(1) / (num_z - 1)
  outward = m_star / (np.linalg.norm(m_star, axis=1, keepdims=True) + 1e-9)
  return {'variance_ratio': float(var_g.mean() / var_star.mean()),
          'mean_shift_rms': float(np.sqrt(((m_g - m_star) ** 2).sum(1).mean())),
          'mean_shift_outward': float(((m_g - m_star) * outward).sum(1).mean()),
          'exact_std': float(np.sqrt(var_star.mean() / m_star.shape[1]))}


def analyse(workdir: str, n: int) -> dict:
  config, info, family, state = evaluation.restore_run(workdir)
  parts = ddgan.build_parts(config, info)
  g = state.ema[ddgan.GENERATOR]
  mix = analytic.data_mixture(info, parts.data_scale)
  T = parts.schedule.num_steps
  out = {'workdir': workdir, 'seed': int(config.seed), 'T': T, 'from_exact_x_t': {}}
  for t in range(1, T + 1):
    x_t = analytic.sample(analytic.marginal(parts.schedule, mix, t), jax.random.PRNGKey(t), (n,))
    x0 = np.asarray(parts.denoise(g, x_t, t, jax.random.PRNGKey(100 + t))) / parts.data_scale
    out['from_exact_x_t'][t] = metrics.mode_metrics(x0, info.means, info.std)
  sampler = np.asarray(family.sample(state, jax.random.PRNGKey(7), n))
  out['sampler'] = metrics.mode_metrics(sampler, info.means, info.std)
  rng = np.random.default_rng(0)
  exact = info.means[rng.integers(len(info.means), size=n)] + info.std * rng.normal(
      size=(n, info.means.shape[1]))
  out['distance_in_std'] = {'sampler': distance_quantiles(sampler, info),
                            'data': distance_quantiles(exact, info)}
  shares = mode_shares(sampler, info)
  where = grid_position(info.means)
  out['share_x_modes_by_position'] = {
      str(pos): float(shares[where == pos].mean() * len(shares)) for pos in sorted(set(where))}
  out['share_x_modes_min_max'] = [float(shares.min() * len(shares)),
                                  float(shares.max() * len(shares))]
  out['one_step'] = {t: conditional_spread(parts, g, mix, t, jax.random.PRNGKey(200 + t))
                     for t in range(T, 0, -1)}
  return out


def main(argv):
  del argv
  results = [analyse(w, _SAMPLES.value) for w in _WORKDIRS.value]
  for r in results:
    print(f"{r['workdir']} (seed {r['seed']}, T = {r['T']})")
    for t, m in r['from_exact_x_t'].items():
      print(f"  generator's last {t} step(s) from exact x_{t}: {m['modes']}/{m['max_modes']} "
            f"modes, {100 * m['hq_fraction']:.1f} %HQ, reverse KL {m['reverse_kl']:.3f}")
    m = r['sampler']
    print(f"  sampler (x_T ~ N(0, I)): {m['modes']}/{m['max_modes']} modes, "
          f"{100 * m['hq_fraction']:.1f} %HQ, reverse KL {m['reverse_kl']:.3f}")
    q = r['distance_in_std']
    print('  distance to the nearest mean / std, sampler (data): median '
          f"{q['sampler']['median']:.2f} ({q['data']['median']:.2f}), 90th percentile "
          f"{q['sampler']['p90']:.2f} ({q['data']['p90']:.2f}), beyond 5 std "
          f"{100 * q['sampler']['beyond_5_std']:.1f} % ({100 * q['data']['beyond_5_std']:.1f} %)")
    print('  mode share x K by position (1 = fair):',
          {k: round(v, 2) for k, v in r['share_x_modes_by_position'].items()},
          'min / max', [round(v, 2) for v in r['share_x_modes_min_max']])
    for t, m in r['one_step'].items():
      print(f"  one step from exact x_{t}: variance {m['variance_ratio']:.3f} x exact "
            f"(exact std {m['exact_std']:.3f}), mean shift rms {m['mean_shift_rms']:.3f}, "
            f"outward {m['mean_shift_outward']:+.3f}")
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main)
