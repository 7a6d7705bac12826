"""Exact diffusion quantities of Gaussian-mixture data: Bayes' rule, the one-component
closed form, Monte Carlo draws of the forward chain, and the reverse chains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trilemma_jax import analytic, data, diffusion, metrics

GRID = data.load_info('grid25')
SCHEDULES = {'ddgan4': diffusion.ddgan_vp_schedule(4), 'linear1000': diffusion.linear_schedule(1000)}


def _mixture(k=5, d=2, seed=0):
  """Uneven weights, so a formula that assumed equal ones would fail."""
  rng = np.random.default_rng(seed)
  w = rng.uniform(0.2, 1.0, k)
  return analytic.IsotropicMixture(log_weights=jnp.log(jnp.asarray(w / w.sum(), jnp.float32)),
                                   means=jnp.asarray(rng.normal(0, 2, (k, d)), jnp.float32),
                                   variance=jnp.asarray(0.04, jnp.float32))


def _log_normal(x, mean, var):
  x, mean = np.asarray(x, np.float64), np.asarray(mean, np.float64)
  d = x.shape[-1]
  return -0.5 * (np.sum((x - mean) ** 2, -1) / var + d * np.log(2 * np.pi * var))


@pytest.mark.parametrize('name,t', [('ddgan4', 1), ('ddgan4', 2), ('ddgan4', 4),
                                    ('linear1000', 1), ('linear1000', 300)])
def test_denoising_is_bayes_rule_of_the_marginals_and_the_forward_step(name, t):
  s, mix = SCHEDULES[name], _mixture()
  rng = np.random.default_rng(1)
  x_t = jnp.asarray(rng.normal(0, 1.5, (7, 2)), jnp.float32)
  x_prev = jnp.asarray(rng.normal(0, 1.5, (7, 2)), jnp.float32)
  got = analytic.log_prob(analytic.denoising(s, mix, x_t, t), x_prev)
  # q(x_{t-1} | x_t) = q(x_{t-1}) q(x_t | x_{t-1}) / q(x_t).
  a, b = float(s.alphas[t]), float(s.betas[t])
  want = (np.asarray(analytic.log_prob(analytic.marginal(s, mix, t - 1), x_prev))
          + _log_normal(x_t, np.sqrt(a) * np.asarray(x_prev), b)
          - np.asarray(analytic.log_prob(analytic.marginal(s, mix, t), x_t)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize('t', [1, 2, 3, 4])
def test_one_component_is_the_conditional_of_a_joint_gaussian(t):
  s = SCHEDULES['ddgan4']
  mix = analytic.IsotropicMixture(log_weights=jnp.zeros((1,)), means=jnp.array([[0.7, -0.3]]),
                                  variance=jnp.asarray(0.3))
  x_t = jnp.array([[0.5, 1.0], [-2.0, 0.1]])
  got = analytic.denoising(s, mix, x_t, t)
  ab_prev, a, b = float(s.alpha_bars[t - 1]), float(s.alphas[t]), float(s.betas[t])
  m = np.sqrt(ab_prev) * np.array([0.7, -0.3])
  v = ab_prev * 0.3 + 1 - ab_prev
  # x_t = sqrt(a) x_{t-1} + sqrt(b) eps: Cov(x_{t-1}, x_t) = sqrt(a) v, Var(x_t) = a v + b.
  gain = np.sqrt(a) * v / (a * v + b)
  np.testing.assert_allclose(got.means[:, 0], m + gain * (np.asarray(x_t) - np.sqrt(a) * m),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got.variance, v - gain * np.sqrt(a) * v, rtol=1e-5)
  np.testing.assert_allclose(analytic.mean(got), got.means[:, 0], rtol=1e-6)


@pytest.mark.parametrize('t', [1, 2, 4])
def test_marginal_matches_draws_of_the_forward_chain(t):
  s, mix, n = SCHEDULES['ddgan4'], _mixture(), 200_000
  x0 = analytic.sample(mix, jax.random.PRNGKey(0), (n,))
  x_t = np.asarray(diffusion.q_sample(s, x0, jnp.full((n,), t), jax.random.normal(
      jax.random.PRNGKey(1), x0.shape)), np.float64)
  q = analytic.marginal(s, mix, t)
  w = np.exp(np.asarray(q.log_weights, np.float64))
  mu = np.asarray(q.means, np.float64)
  mean = w @ mu
  second = float(q.variance) * np.eye(2) + np.einsum('k,ki,kj->ij', w, mu, mu)
  tol = 5 * np.sqrt(np.max(np.diag(second)) / n)
  np.testing.assert_allclose(x_t.mean(0), mean, atol=tol)
  np.testing.assert_allclose(x_t.T @ x_t / n, second, atol=10 * tol * np.sqrt(second.max()))
  # Average log-likelihood of the draws under the formula vs under a wrong variance.
  ll = float(jnp.mean(analytic.log_prob(q, x_t)))
  wrong = q.replace(variance=q.variance * 1.5)
  assert ll > float(jnp.mean(analytic.log_prob(wrong, x_t)))


def test_sample_draws_components_by_weight_and_density_integrates_to_one():
  mix = _mixture(k=3)
  x = np.asarray(analytic.sample(mix, jax.random.PRNGKey(0), (60_000,)))
  nearest = np.argmin(((x[:, None] - np.asarray(mix.means)[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=3) / len(x),
                             np.exp(mix.log_weights), atol=0.01)
  s = SCHEDULES['ddgan4']
  post = analytic.denoising(s, mix, jnp.array([[0.3, -0.2]]), 3)[0]
  g = np.linspace(-6, 6, 601)
  xx, yy = np.meshgrid(g, g)
  dens = np.exp(np.asarray(analytic.log_prob(post, np.stack([xx, yy], -1))))
  assert dens.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-3)


def test_covariance_matches_draws_and_gaussian_gap_matches_quadrature():
  mix = _mixture(k=4)
  x = np.asarray(analytic.sample(mix, jax.random.PRNGKey(2), (100_000,)), np.float64)
  np.testing.assert_allclose(analytic.covariance(mix), np.cov(x.T), rtol=0.03, atol=0.03)
  # One component: the mixture is its own moment-matched Gaussian.
  one = analytic.IsotropicMixture(log_weights=jnp.zeros((1,)), means=jnp.array([[1.0, -2.0]]),
                                  variance=jnp.asarray(0.3))
  assert abs(float(analytic.gaussian_gap(one, jax.random.PRNGKey(0)))) < 1e-4
  # Two 1-D components at -+a, variance s2, weights 0.3 / 0.7, by quadrature.
  a, s2, w = 1.5, 0.2, np.array([0.3, 0.7])
  two = analytic.IsotropicMixture(log_weights=jnp.log(jnp.asarray(w, jnp.float32)),
                                  means=jnp.array([[-a], [a]]), variance=jnp.asarray(s2))
  g = np.linspace(-8, 8, 20_001)
  q = sum(wk * np.exp(-(g - m) ** 2 / (2 * s2)) / np.sqrt(2 * np.pi * s2)
          for wk, m in zip(w, (-a, a)))
  mu = w @ np.array([-a, a])
  var = s2 + w @ np.array([a * a, a * a]) - mu ** 2
  gauss = np.exp(-(g - mu) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)
  want = np.sum(q * np.log(q / gauss)) * (g[1] - g[0])
  got = float(analytic.gaussian_gap(two, jax.random.PRNGKey(1), 40_000))
  assert got == pytest.approx(want, rel=0.05)
  # Batched: one figure per mixture; DDGAN's last step is far from Gaussian, a DDPM step is not.
  ddgan_step = analytic.denoising(SCHEDULES['ddgan4'], analytic.data_mixture(GRID),
                                  jnp.array([[1.0, 1.0], [0.0, 2.0]]), 1)
  gaps = analytic.gaussian_gap(ddgan_step, jax.random.PRNGKey(3))
  assert gaps.shape == (2,) and float(gaps.min()) > 1.0
  ddpm_step = analytic.denoising(SCHEDULES['linear1000'], analytic.data_mixture(GRID),
                                 jnp.array([[1.0, 1.0]]), 250)
  assert float(analytic.gaussian_gap(ddpm_step, jax.random.PRNGKey(3))[0]) < 0.01


def test_exact_reverse_chain_samples_the_data_and_gaussian_steps_do_not_at_t4():
  s = SCHEDULES['ddgan4']
  mix = analytic.data_mixture(GRID)
  x_T = analytic.sample(analytic.marginal(s, mix, 4), jax.random.PRNGKey(0), (2500,))
  exact = analytic.reverse_chain(s, mix, x_T, jax.random.PRNGKey(1))
  assert exact.shape == (5, 2500, 2)
  np.testing.assert_array_equal(exact[0], x_T)
  m = metrics.mode_metrics(np.asarray(exact[-1]), GRID.means, GRID.std)
  # 3 std in 2-D holds 1 - exp(-4.5) = 98.9% of a Gaussian.
  assert m['modes'] == 25 and m['hq_fraction'] > 0.97 and m['reverse_kl'] < 0.02
  gauss = analytic.reverse_chain(s, mix, x_T, jax.random.PRNGKey(1), gaussian=True)
  assert metrics.mode_metrics(np.asarray(gauss[-1]), GRID.means, GRID.std)['hq_fraction'] < 0.2
  # With 1000 small steps the Gaussian step is nearly exact (Ho et al.'s premise).
  s1000 = SCHEDULES['linear1000']
  x_T = analytic.sample(analytic.marginal(s1000, mix, 1000), jax.random.PRNGKey(0), (2500,))
  fine = analytic.reverse_chain(s1000, mix, x_T, jax.random.PRNGKey(1), gaussian=True)[-1]
  m = metrics.mode_metrics(np.asarray(fine), GRID.means, GRID.std)
  assert m['modes'] == 25 and m['hq_fraction'] > 0.97


def test_data_mixture_scales_and_indexes():
  mix = analytic.data_mixture(GRID, scale=0.5)
  np.testing.assert_allclose(mix.means, GRID.means * 0.5)
  assert float(mix.variance) == pytest.approx((0.05 * 0.5) ** 2)
  post = analytic.denoising(SCHEDULES['ddgan4'], mix, jnp.zeros((3, 2)), 2)
  assert post.batch_shape == (3,) and post[1].batch_shape == ()
  np.testing.assert_allclose(np.exp(post.log_weights).sum(-1), 1.0, rtol=1e-5)


def test_bad_input_is_refused_with_what_was_expected():
  s, mix = SCHEDULES['ddgan4'], analytic.data_mixture(GRID)
  with pytest.raises(ValueError, match=r'in 1\.\.4'):
    analytic.denoising(s, mix, jnp.zeros((2, 2)), 0)
  with pytest.raises(ValueError, match=r'in 0\.\.4'):
    analytic.marginal(s, mix, 5)
  with pytest.raises(ValueError, match=r'x_t must be \[B, 2\]'):
    analytic.denoising(s, mix, jnp.zeros((2, 3)), 1)
  with pytest.raises(ValueError, match=r'x_T must be \[B, 2\]'):
    analytic.reverse_chain(s, mix, jnp.zeros((2,)), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match='not a Gaussian mixture'):
    analytic.data_mixture(data.load_info('digits'))
  with pytest.raises(IndexError):
    mix[0]
