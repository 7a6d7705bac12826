"""Diffusion maths against independent float64 numpy computations of the formulas."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from trilemma_jax import diffusion as dm

# ------------------------------------------------------------ float64 references


def ref_linear_betas(T):
  return np.linspace(1e-4 * 1000 / T, min(0.02 * 1000 / T, 0.999), T)


def ref_cosine_betas(T, s=0.008):
  f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
  return np.array([min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)])


def ref_ddgan_alpha_bars(T, beta_min=0.1, beta_max=20.0, eps=1e-3, power=1.0):
  """alpha_bar_0..T of the official DDGAN code, renormalised so alpha_bar_0 = 1
  (``power`` != 1: the same on the time grid (i / T)**power)."""
  tau = np.array([(i / T) ** power * (1 - eps) + eps for i in range(T + 1)])
  var = 1 - np.exp(-0.5 * tau ** 2 * (beta_max - beta_min) - tau * beta_min)
  return (1 - var) / (1 - var[0])


def ref_coefficients(betas_1_to_T):
  """Every coefficient by the formulas of docs/references.md, looping in float64."""
  T = len(betas_1_to_T)
  beta = [0.0] + list(betas_1_to_T)
  alpha = [1 - b for b in beta]
  abar = [1.0]
  for t in range(1, T + 1):
    abar.append(abar[-1] * alpha[t])
  out = {'betas': beta, 'alphas': alpha, 'alpha_bars': abar,
         'sqrt_alpha_bars': [math.sqrt(a) for a in abar],
         'sqrt_one_minus_alpha_bars': [math.sqrt(1 - a) for a in abar]}
  var, c0, ct = [0.0], [1.0], [0.0]
  for t in range(1, T + 1):
    var.append((1 - abar[t - 1]) / (1 - abar[t]) * beta[t])
    c0.append(math.sqrt(abar[t - 1]) * beta[t] / (1 - abar[t]))
    ct.append(math.sqrt(alpha[t]) * (1 - abar[t - 1]) / (1 - abar[t]))
  out.update(posterior_variance=var, posterior_mean_coef_x0=c0, posterior_mean_coef_xt=ct)
  return {k: np.array(v) for k, v in out.items()}


def assert_schedule_matches(schedule, betas):
  ref = ref_coefficients(betas)
  assert schedule.num_steps == len(betas)
  for name, want in ref.items():
    got = np.asarray(getattr(schedule, name), np.float64)
    assert got.dtype == np.float64 and got.shape == (len(betas) + 1,), name
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9, err_msg=name)


# -------------------------------------------------------------------- schedules


@pytest.mark.parametrize('T', [1, 10, 1000])
def test_linear_schedule_matches_reference(T):
  s = dm.linear_schedule(T)
  if T == 1:
    np.testing.assert_allclose(float(s.betas[1]), 0.999, rtol=1e-6)
  else:
    assert_schedule_matches(s, ref_linear_betas(T))


def test_linear_schedule_is_ho_at_1000():
  s = dm.linear_schedule(1000)
  np.testing.assert_allclose([float(s.betas[1]), float(s.betas[1000])], [1e-4, 0.02], rtol=1e-6)
  # Ho et al.: alpha_bar_T ~ 4e-5, so x_T is close to N(0, I).
  assert 3e-5 < float(s.alpha_bars[-1]) < 5e-5


@pytest.mark.parametrize('T', [4, 1000])
def test_cosine_schedule_matches_reference(T):
  assert_schedule_matches(dm.cosine_schedule(T), ref_cosine_betas(T))


@pytest.mark.parametrize('T', [1, 2, 4, 8, 100])
def test_ddgan_schedule_matches_official_discretisation(T):
  s = dm.ddgan_vp_schedule(T)
  abar = ref_ddgan_alpha_bars(T)
  np.testing.assert_allclose(np.asarray(s.alpha_bars, np.float64), abar, rtol=2e-6, atol=1e-10)
  assert_schedule_matches(s, 1 - abar[1:] / abar[:-1])


@pytest.mark.parametrize('power', [1.5, 2.0, 3.0])
def test_ddgan_schedule_time_power(power):
  s = dm.ddgan_vp_schedule(8, time_power=power)
  abar = ref_ddgan_alpha_bars(8, power=power)
  np.testing.assert_allclose(np.asarray(s.alpha_bars, np.float64), abar, rtol=2e-6, atol=1e-10)
  assert_schedule_matches(s, 1 - abar[1:] / abar[:-1])
  # The power moves the inner steps only: same end point, a smaller first step.
  official = dm.ddgan_vp_schedule(8)
  np.testing.assert_allclose(float(s.alpha_bars[8]), float(official.alpha_bars[8]), rtol=1e-6)
  assert float(s.alpha_bars[1]) > float(official.alpha_bars[1])
  for bad in (0.0, -1.0, float('inf'), float('nan')):
    with pytest.raises(ValueError, match='time_power'):
      dm.ddgan_vp_schedule(8, time_power=bad)


def test_ddgan_schedule_time_power_one_is_the_official_grid_bit_for_bit():
  # The float64 betas of the official grid, written out as before time_power existed.
  T, t_min, beta_min, beta_max = 8, 1e-3, 0.1, 20.0
  tau = np.arange(T + 1, dtype=np.float64) / T * (1.0 - t_min) + t_min
  log_alpha_bar = -0.5 * tau ** 2 * (beta_max - beta_min) - tau * beta_min
  expected = dm.schedule_from_betas(-np.expm1(log_alpha_bar[1:] - log_alpha_bar[:-1]))
  got = dm.ddgan_vp_schedule(T, time_power=1.0)
  for field in ('betas', 'alphas', 'alpha_bars'):
    np.testing.assert_array_equal(np.asarray(getattr(got, field)),
                                  np.asarray(getattr(expected, field)), err_msg=field)


def test_ddgan_t4_end_point():
  # At tau = 1: log alpha_bar = -(20 - 0.1) / 2 - 0.1 = -10.05 (relative to tau = 1e-3).
  s = dm.ddgan_vp_schedule(4)
  tau0 = 1e-3
  log_ab0 = -0.5 * tau0 ** 2 * 19.9 - tau0 * 0.1
  np.testing.assert_allclose(math.log(float(s.alpha_bars[4])), -10.05 - log_ab0, rtol=1e-5)


@pytest.mark.parametrize('bad', [0, -3, 2.5, True])
def test_schedule_rejects_bad_step_count(bad):
  with pytest.raises(ValueError, match='positive integer'):
    dm.linear_schedule(bad)


def test_schedule_from_betas_rejects_out_of_range():
  with pytest.raises(ValueError, match=r'\(0, 1\]'):
    dm.schedule_from_betas(np.array([0.1, 1.5]))
  with pytest.raises(ValueError, match='Unknown noise schedule'):
    dm.get_schedule('quadratic', 10)


def test_schedule_is_a_pytree_usable_under_jit():
  s = dm.linear_schedule(10)
  f = jax.jit(lambda sched, x: dm.q_sample(sched, x, jnp.array([3]), jnp.ones_like(x)))
  out = f(s, jnp.zeros((1, 2)))
  np.testing.assert_allclose(out, np.full((1, 2), float(s.sqrt_one_minus_alpha_bars[3])))


# ------------------------------------------------------- forward and posterior


@pytest.fixture(params=['linear', 'cosine', 'ddgan_vp'])
def schedule_and_ref(request):
  T = 4 if request.param == 'ddgan_vp' else 50
  s = dm.get_schedule(request.param, T)
  return s, ref_coefficients(np.asarray(s.betas, np.float64)[1:])


def _draw(shape, seed):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_q_sample_matches_reference(schedule_and_ref):
  s, ref = schedule_and_ref
  x0, noise = _draw((6, 3, 2), 0), _draw((6, 3, 2), 1)
  t = np.array([0, 1, 2, s.num_steps, 3, 1])
  got = dm.q_sample(s, x0, t, noise)
  ab = ref['alpha_bars'][t][:, None, None]
  want = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * noise
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got[0], x0[0])  # t = 0 is the data


def test_posterior_matches_reference_formulas(schedule_and_ref):
  s, ref = schedule_and_ref
  x0, xt = _draw((5, 4), 2), _draw((5, 4), 3)
  t = np.array([1, 2, 3, s.num_steps, s.num_steps - 1])
  mean, var, log_var = dm.posterior_mean_variance(s, x0, xt, t)
  beta, abar = ref['betas'][t], ref['alpha_bars']
  ab_t, ab_prev = abar[t], abar[t - 1]
  want_mean = (np.sqrt(ab_prev) * beta / (1 - ab_t))[:, None] * x0 + (
      np.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t))[:, None] * xt
  want_var = (1 - ab_prev) / (1 - ab_t) * beta
  np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var[:, 0], want_var, rtol=1e-5, atol=1e-12)
  np.testing.assert_allclose(np.exp(log_var[1:, 0]), want_var[1:], rtol=1e-5)
  assert var.shape == (5, 1)


def test_posterior_is_gaussian_conditioning_of_the_forward_chain(schedule_and_ref):
  """Derived independently: condition the joint Gaussian of (x_{t-1}, x_t) given x_0."""
  s, ref = schedule_and_ref
  abar, alpha = ref['alpha_bars'], ref['alphas']
  x0, xt = _draw((3, 2), 4), _draw((3, 2), 5)
  for t in range(2, s.num_steps + 1):
    # x_{t-1} = sqrt(ab_{t-1}) x0 + sqrt(1 - ab_{t-1}) e1;  x_t = sqrt(a_t) x_{t-1} + sqrt(1 - a_t) e2.
    m1, m2 = math.sqrt(abar[t - 1]) * x0, math.sqrt(abar[t]) * x0
    v1, v2 = 1 - abar[t - 1], alpha[t] * (1 - abar[t - 1]) + (1 - alpha[t])
    cov = math.sqrt(alpha[t]) * v1
    want_mean = m1 + cov / v2 * (xt - m2)
    want_var = v1 - cov ** 2 / v2
    mean, var, _ = dm.posterior_mean_variance(s, x0, xt, np.full(3, t))
    np.testing.assert_allclose(mean, want_mean, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(var[:, 0], want_var, rtol=2e-5, atol=1e-12)


def test_posterior_at_t1_returns_x0_exactly(schedule_and_ref):
  s, _ = schedule_and_ref
  x0, xt, noise = _draw((4, 3), 6), _draw((4, 3), 7), _draw((4, 3), 8)
  got = dm.posterior_sample(s, x0, xt, np.ones(4, np.int32), noise)
  np.testing.assert_allclose(got, x0, rtol=0, atol=1e-7)


def test_posterior_sample_is_mean_plus_std_noise(schedule_and_ref):
  s, ref = schedule_and_ref
  x0, xt, noise = _draw((4, 3), 9), _draw((4, 3), 10), _draw((4, 3), 11)
  t = np.array([2, 3, 4, 2])
  mean, var, _ = dm.posterior_mean_variance(s, x0, xt, t)
  got = dm.posterior_sample(s, x0, xt, t, noise)
  np.testing.assert_allclose(got, mean + np.sqrt(ref['posterior_variance'][t])[:, None] * noise,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('t', [1, 7])
def test_q_sample_pair_matches_q_sample_in_distribution(t):
  """x_t from x_{t-1} has the mean and variance of q(x_t | x_0) (moments, float64)."""
  s = dm.linear_schedule(20)
  n = 200_000
  x0 = np.full((n, 1), 0.7, np.float32)
  prev, xt = dm.q_sample_pair(s, x0, np.full(n, t), _draw((n, 1), 12), _draw((n, 1), 13))
  np.testing.assert_allclose(prev, dm.q_sample(s, x0, np.full(n, t - 1), _draw((n, 1), 12)))
  xt = np.asarray(xt, np.float64)
  ab = float(s.alpha_bars[t])
  assert abs(xt.mean() - math.sqrt(ab) * 0.7) < 5 * math.sqrt((1 - ab) / n)
  assert abs(xt.var() - (1 - ab)) < 5 * (1 - ab) * math.sqrt(2 / n)


def test_time_index_shape_is_checked():
  s = dm.linear_schedule(10)
  with pytest.raises(ValueError, match=r'shape \[B\]'):
    dm.q_sample(s, jnp.zeros((2, 3)), jnp.array(3), jnp.zeros((2, 3)))


# ------------------------------------------------------------ parameterisations


@pytest.mark.parametrize('prediction', dm.PREDICTIONS)
def test_parameterisations_round_trip(prediction):
  s = dm.cosine_schedule(100)
  x0, noise = _draw((5, 3), 14), _draw((5, 3), 15)
  t = np.array([1, 10, 50, 90, 100])
  xt = dm.q_sample(s, x0, t, noise)
  target = dm.prediction_target(s, prediction, x0, t, noise)
  x0_hat, eps_hat = dm.x0_eps_from_output(s, prediction, xt, t, target)
  np.testing.assert_allclose(x0_hat, x0, atol=2e-3)  # 1/sqrt(ab_100) amplifies rounding
  np.testing.assert_allclose(eps_hat, noise, atol=2e-3)


def test_clip_x0_recomputes_eps():
  s = dm.linear_schedule(10)
  xt, out = _draw((4, 2), 16), 3.0 * _draw((4, 2), 17)
  t = np.array([2, 5, 7, 10])
  x0_hat, eps_hat = dm.x0_eps_from_output(s, 'x0', xt, t, out, clip_x0=True)
  np.testing.assert_array_equal(x0_hat, np.clip(out, -1, 1))
  np.testing.assert_allclose(dm.q_sample(s, x0_hat, t, eps_hat), xt, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='prediction type'):
    dm.x0_eps_from_output(s, 'score', xt, t, out)


# ------------------------------------------------------------- likelihood terms


def test_normal_kl_matches_scipy_closed_form():
  m1, m2 = _draw((7,), 18), _draw((7,), 19)
  lv1, lv2 = _draw((7,), 20), _draw((7,), 21)
  got = dm.normal_kl(m1, lv1, m2, lv2)
  s1, s2 = np.exp(0.5 * lv1.astype(np.float64)), np.exp(0.5 * lv2.astype(np.float64))
  want = np.log(s2 / s1) + (s1 ** 2 + (m1 - m2.astype(np.float64)) ** 2) / (2 * s2 ** 2) - 0.5
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('levels', [2, 17, 256])
@pytest.mark.parametrize('mean,log_scale', [(0.1, -1.0), (-0.93, -4.6), (0.5, 1.0), (0.999, -6.0)])
def test_discretized_gaussian_matches_scipy_and_sums_to_one(levels, mean, log_scale):
  width = 2.0 / (levels - 1)
  grid = np.linspace(-1.0, 1.0, levels)
  got = np.asarray(dm.discretized_gaussian_log_likelihood(
      jnp.asarray(grid, jnp.float32), mean, log_scale, width), np.float64)
  scale = math.exp(log_scale)
  upper = np.where(grid > 1 - width / 2, np.inf, grid + width / 2)
  lower = np.where(grid < -1 + width / 2, -np.inf, grid - width / 2)
  want = stats.norm.cdf(upper, mean, scale) - stats.norm.cdf(lower, mean, scale)
  big = want > 1e-30
  np.testing.assert_allclose(np.exp(got[big]), want[big], rtol=2e-3, atol=1e-7)
  np.testing.assert_allclose(np.exp(got).sum(), 1.0, rtol=1e-4)


def test_discretized_gaussian_keeps_precision_in_the_tails():
  # Bin [0.9375, 1] of N(0, 0.01²) ~ Φ(-93.75): far below float32's smallest normal number.
  got = float(dm.discretized_gaussian_log_likelihood(jnp.array([1.0]), 0.0, math.log(0.01), 0.125)[0])
  np.testing.assert_allclose(got, stats.norm.logsf(0.9375, 0, 0.01), rtol=1e-3)


def test_prior_kl_matches_reference():
  s = dm.linear_schedule(1000)
  x0 = _draw((3, 4), 22)
  ab = float(np.asarray(s.alpha_bars, np.float64)[-1])
  m, v = math.sqrt(ab) * x0.astype(np.float64), 1 - ab
  want = np.sum(0.5 * (v + m ** 2 - 1 - math.log(v)), axis=1)
  np.testing.assert_allclose(dm.prior_kl(s, x0), want, rtol=1e-3, atol=1e-8)


# --------------------------------------------------------------------- samplers


def _delta_denoiser(point):
  """The exact x0-predictor for data that are a single point."""
  def denoise(xt, t, key):
    del key
    x0 = jnp.broadcast_to(point, xt.shape)
    return x0, dm.predict_eps_from_x0(schedule, xt, t, x0)
  return denoise


schedule = dm.linear_schedule(40)


def test_samplers_recover_a_point_mass_and_count_nfe():
  point = jnp.array([0.3, -0.6])
  x_T = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
  log_var = dm.reverse_log_variance(schedule, 'beta')
  x, nfe = jax.jit(lambda x, k: dm.ancestral_sample(
      schedule, _delta_denoiser(point), x, k, log_variance=log_var))(x_T, jax.random.PRNGKey(1))
  assert int(nfe) == 40
  np.testing.assert_allclose(x, np.broadcast_to(point, (5, 2)), atol=1e-6)
  for steps, eta in [(1, 0.0), (4, 0.0), (7, 1.0), (40, 0.5)]:
    x, nfe = dm.ddim_sample(schedule, _delta_denoiser(point), x_T, jax.random.PRNGKey(2),
                            steps=steps, eta=eta)
    assert int(nfe) == steps
    np.testing.assert_allclose(x, np.broadcast_to(point, (5, 2)), atol=1e-5)


def _noisy_denoiser(xt, t, key):
  """A stand-in network whose output depends on x_t, t and its own randomness."""
  x0 = jnp.tanh(0.5 * xt + 0.01 * t[:, None]) + 0.1 * jax.random.normal(key, xt.shape)
  return x0, dm.predict_eps_from_x0(schedule, xt, t, x0)


def test_ddim_eta1_full_chain_equals_ancestral_with_posterior_variance():
  x_T = jax.random.normal(jax.random.PRNGKey(3), (6, 2))
  key = jax.random.PRNGKey(4)
  a, _ = dm.ancestral_sample(schedule, _noisy_denoiser, x_T, key,
                             log_variance=dm.reverse_log_variance(schedule, 'beta_tilde'))
  b, _ = dm.ddim_sample(schedule, _noisy_denoiser, x_T, key, steps=40, eta=1.0)
  np.testing.assert_allclose(a, b, atol=1e-4)


def test_ddim_eta0_is_deterministic_given_x_T():
  def det_denoiser(xt, t, key):
    del key
    x0 = jnp.tanh(0.5 * xt + 0.01 * t[:, None])
    return x0, dm.predict_eps_from_x0(schedule, xt, t, x0)
  x_T = jax.random.normal(jax.random.PRNGKey(5), (6, 2))
  a, _ = dm.ddim_sample(schedule, det_denoiser, x_T, jax.random.PRNGKey(6), steps=10, eta=0.0)
  b, _ = dm.ddim_sample(schedule, det_denoiser, x_T, jax.random.PRNGKey(7), steps=10, eta=0.0)
  np.testing.assert_array_equal(a, b)
  c, _ = dm.ddim_sample(schedule, det_denoiser, x_T, jax.random.PRNGKey(7), steps=10, eta=1.0)
  assert not np.allclose(a, c)


def test_ddim_timesteps():
  np.testing.assert_array_equal(dm.ddim_timesteps(1000, 4), [0, 250, 500, 750, 1000])
  for T, steps in [(1000, 50), (1000, 999), (7, 3), (4, 4)]:
    taus = dm.ddim_timesteps(T, steps)
    assert taus[0] == 0 and taus[-1] == T and len(taus) == steps + 1
    assert np.all(np.diff(taus) >= 1)
  with pytest.raises(ValueError, match='DDIM needs'):
    dm.ddim_timesteps(10, 11)


def test_sampler_compiles_once():
  log_var = dm.reverse_log_variance(schedule, 'beta')

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x, key):
    return dm.ancestral_sample(schedule, _noisy_denoiser, x, key, log_variance=log_var)[0]

  for i in range(3):
    run(jnp.zeros((4, 2)), jax.random.PRNGKey(i))


def test_ancestral_with_posterior_variance_is_a_chain_of_posterior_samples():
  """DDGAN's sampler: x_{t-1} ~ q(x_{t-1} | x_t, x0_hat(x_t)) for t = T..1."""
  sched = dm.ddgan_vp_schedule(4)

  def gen(xt, t, key):
    x0 = jnp.tanh(xt) + 0.1 * jax.random.normal(key, xt.shape)
    return x0, dm.predict_eps_from_x0(sched, xt, t, x0)

  x_T = jax.random.normal(jax.random.PRNGKey(8), (5, 3))
  rng = jax.random.PRNGKey(9)
  got, nfe = dm.ancestral_sample(sched, gen, x_T, rng,
                                 log_variance=dm.reverse_log_variance(sched, 'beta_tilde'))
  x = x_T
  for t in range(4, 0, -1):
    key_model, key_noise = jax.random.split(jax.random.fold_in(rng, t))
    tb = jnp.full((5,), t, jnp.int32)
    x = dm.posterior_sample(sched, gen(x, tb, key_model)[0], x, tb,
                            jax.random.normal(key_noise, x.shape))
  assert int(nfe) == 4
  np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-5)
