"""Metrics against independent references: the PyPI prdc package, scipy sqrtm,
float64 numpy MMD, closed forms and hand-counted histograms."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import prdc as prdc_reference
import pytest
import scipy.linalg
import scipy.spatial.distance

from trilemma_jax import data, metrics
from trilemma_jax.evaluation import coverage
from trilemma_jax.metrics import manifold


def _gaussian(seed, n, d, shift=0.0):
  return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ------------------------------------------------------ precision, recall, density, coverage


@pytest.mark.parametrize('block_size', [64, 4096])
@pytest.mark.parametrize('k', [3, 5])
def test_prdc_matches_prdc_package(block_size, k):
  # 300 and 250 are not multiples of 64: padding and several blocks per axis.
  real = _gaussian(0, 300, 16)
  fake = _gaussian(1, 250, 16, shift=0.3)
  expected = prdc_reference.compute_prdc(real, fake, nearest_k=k)
  got = metrics.prdc(real, fake, k_pr=k, k_dc=k, block_size=block_size)
  assert set(got) == {'precision', 'recall', 'density', 'coverage'}
  for name in got:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)


def test_pieces_match_prdc_package_with_different_ks():
  real = _gaussian(2, 200, 8)
  fake = _gaussian(3, 180, 8, shift=0.5)
  ref_pr = prdc_reference.compute_prdc(real, fake, nearest_k=3)
  ref_dc = prdc_reference.compute_prdc(real, fake, nearest_k=5)
  pr = metrics.precision_recall(real, fake, k=3, block_size=50)
  dc = metrics.density_coverage(real, fake, k=5, block_size=50)
  both = metrics.prdc(real, fake, k_pr=3, k_dc=5, block_size=50)
  for name in ('precision', 'recall'):
    np.testing.assert_allclose(pr[name], ref_pr[name], rtol=1e-12)
    assert both[name] == pr[name]
  for name in ('density', 'coverage'):
    np.testing.assert_allclose(dc[name], ref_dc[name], rtol=1e-12)
    assert both[name] == dc[name]


def _brute_force_manifold(real, fake, k_pr, k_dc):
  """Full float64 distance matrices; the (k+1)-th smallest row entry includes self."""
  d_rr = scipy.spatial.distance.cdist(real, real)
  d_ff = scipy.spatial.distance.cdist(fake, fake)
  d_rf = scipy.spatial.distance.cdist(real, fake)  # [N, M]
  r_pr = np.sort(d_rr, axis=1)[:, k_pr]
  r_dc = np.sort(d_rr, axis=1)[:, k_dc]
  f_pr = np.sort(d_ff, axis=1)[:, k_pr]
  return {
      'precision': np.mean(np.any(d_rf <= r_pr[:, None], axis=0)),
      'recall': np.mean(np.any(d_rf <= f_pr[None, :], axis=1)),
      'density': np.sum(d_rf < r_dc[:, None]) / (k_dc * fake.shape[0]),
      'coverage': np.mean(d_rf.min(axis=1) < r_dc),
  }


def test_ties_and_duplicates_follow_the_definitions():
  # Small integer points: every squared distance is exact in float32, so ties are
  # real ties. Duplicated reals have neighbours at distance 0; fakes sit exactly
  # on reals and on ball boundaries. The negated copy makes the real mean exactly
  # 0, so centring keeps the coordinates integer.
  rng = np.random.default_rng(4)
  half = rng.integers(-3, 4, size=(40, 3))
  half = np.concatenate([half, half[:10]])  # duplicates
  real = np.concatenate([half, -half]).astype(np.float32)
  fake = np.concatenate([real[:30], rng.integers(-4, 5, size=(50, 3))]).astype(np.float32)
  expected = _brute_force_manifold(real.astype(np.float64), fake.astype(np.float64), 3, 5)
  got = metrics.prdc(real, fake, k_pr=3, k_dc=5, block_size=16)
  for name in got:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)
  # Boundary ties exist in this data, so the test sees the operators: ``<`` for
  # precision would count fewer fakes, ``<=`` for density more.
  d_rf = scipy.spatial.distance.cdist(real, fake)
  sorted_rr = np.sort(scipy.spatial.distance.cdist(real, real), axis=1)
  assert np.mean(np.any(d_rf < sorted_rr[:, 3:4], axis=0)) < got['precision']
  assert np.sum(d_rf <= sorted_rr[:, 5:6]) / (5 * fake.shape[0]) > got['density']


def test_radii_exclude_self_and_count_duplicates():
  x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]], np.float32)
  # Neighbours of point 0 (self excluded): its twin at 0, then 1, 3, 7.
  np.testing.assert_array_equal(metrics.nearest_neighbour_radii(x, 1, block_size=2),
                                [0.0, 0.0, 1.0, 2.0, 4.0])
  np.testing.assert_array_equal(metrics.nearest_neighbour_radii(x, 2, block_size=3),
                                [1.0, 1.0, 1.0, 3.0, 6.0])


def test_radii_match_brute_force_for_every_block_size():
  x = _gaussian(5, 97, 5).astype(np.float32)
  expected = np.sort(scipy.spatial.distance.cdist(x, x), axis=1)[:, 4]
  for block_size in (1, 10, 97, 1000):
    got = metrics.nearest_neighbour_radii(x, 4, block_size=block_size)
    np.testing.assert_allclose(got, expected, rtol=2e-5, err_msg=f'block_size={block_size}')


@pytest.mark.parametrize('k', [3, 5])
def test_same_gaussian_gives_density_one_and_coverage_one_minus_two_to_minus_k(k):
  real = _gaussian(6, 2000, 8)
  fake = _gaussian(7, 2000, 8)
  same = metrics.density_coverage(real, fake, k=k)
  # Binomial std of coverage at N=2000 is <= 0.008; density's spread across seeds
  # is about 0.02 here.
  assert abs(same['density'] - 1.0) < 0.08
  assert abs(same['coverage'] - (1.0 - 2.0 ** -k)) < 0.025
  shifted = metrics.density_coverage(real, _gaussian(7, 2000, 8, shift=1.0), k=k)
  assert shifted['density'] < 0.6 and shifted['coverage'] < 0.8


def test_cross_pass_never_holds_an_n_by_m_matrix():
  n, d, block = 8192, 64, 512
  blocks = jax.ShapeDtypeStruct((n // block, block, d), jnp.float32)
  per_point = jax.ShapeDtypeStruct((n // block, block), jnp.float32)
  valid = jax.ShapeDtypeStruct((n // block, block), jnp.bool_)
  compiled = manifold._cross_pass.lower(
      blocks, per_point, per_point, blocks, valid, per_point).compile()
  analysis = compiled.memory_analysis()
  if analysis is None:
    pytest.skip('this backend reports no memory analysis')
  assert analysis.temp_size_in_bytes < n * n * 4 / 16


def test_prdc_rejects_bad_input():
  real, fake = _gaussian(0, 10, 4), _gaussian(1, 10, 4)
  with pytest.raises(ValueError, match='k_dc=10 needs at least 11 real'):
    metrics.prdc(real, fake, k_dc=10)
  with pytest.raises(ValueError, match='Feature dimensions differ'):
    metrics.prdc(real, fake[:, :3])
  with pytest.raises(ValueError, match='NaN or inf'):
    metrics.prdc(real, np.full_like(fake, np.nan))
  with pytest.raises(ValueError, match='2-D'):
    metrics.precision_recall(real[None], fake)
  with pytest.raises(ValueError, match='block_size'):
    metrics.density_coverage(real, fake, block_size=0)


# ------------------------------------------------------------------------------ Fréchet distance


def test_frechet_matches_scipy_sqrtm():
  x = _gaussian(8, 400, 6)
  y = _gaussian(9, 300, 6) @ np.random.default_rng(10).normal(size=(6, 6)) + 0.7
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
  np.testing.assert_allclose(metrics.frechet_distance(x, y), expected, rtol=1e-9)
  np.testing.assert_allclose(
      metrics.frechet_distance(x.astype(np.float32), y.astype(np.float32)), expected, rtol=1e-5)


def test_feature_statistics_match_numpy():
  x = _gaussian(11, 9000, 5, shift=100.0)  # > one chunk, large offset
  mu, sigma = metrics.feature_statistics(x)
  np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10)


def test_frechet_diagonal_closed_form_including_rank_deficient():
  mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
  a, b = np.array([1.0, 0.0, 4.0]), np.array([0.0, 0.0, 9.0])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(
      metrics.frechet_distance_from_statistics(mu1, np.diag(a), mu2, np.diag(b)), expected,
      rtol=1e-12)
  # A rotation of both covariances leaves the distance unchanged (to sqrt(eps),
  # since the rotated zero eigenvalues come back as round-off under a sqrt).
  q, _ = np.linalg.qr(np.random.default_rng(12).normal(size=(3, 3)))
  np.testing.assert_allclose(
      metrics.frechet_distance_from_statistics(
          q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T), expected, rtol=1e-7)


def test_frechet_of_a_set_with_itself_is_zero():
  x = _gaussian(13, 200, 50)
  assert abs(metrics.frechet_distance(x, x)) < 1e-10
  # With fewer samples than dimensions the covariance is singular; its zero
  # eigenvalues come out as ±1e-16 and their square roots as 1e-8, so the result
  # is zero to about sqrt(eps) of the trace, not to eps.
  x = x[:20]
  scale = np.trace(np.cov(x, rowvar=False))
  assert abs(metrics.frechet_distance(x, x)) < 1e-6 * scale


def test_frechet_rejects_bad_input():
  with pytest.raises(ValueError, match='Feature dimensions differ'):
    metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match='not symmetric'):
    metrics.frechet_distance_from_statistics(
        np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------------------------- KID


def _mmd2_unbiased_float64(x, y):
  d = x.shape[1]
  k_xx = (x @ x.T / d + 1) ** 3
  k_yy = (y @ y.T / d + 1) ** 3
  k_xy = (x @ y.T / d + 1) ** 3
  m = x.shape[0]
  return ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy))
          / (m * (m - 1)) - 2 * k_xy.mean())


def test_kid_matches_float64_mmd_when_subsets_are_whole_sets():
  # With subset_size = N = M every subset is a permutation of the whole set, and the
  # unbiased estimator does not depend on the order.
  x = _gaussian(14, 120, 10)
  y = _gaussian(15, 120, 10, shift=0.4)
  expected = _mmd2_unbiased_float64(x, y)
  got = metrics.kernel_distance(x, y, num_subsets=3, subset_size=1000)
  np.testing.assert_allclose(got['kid_mean'], expected, rtol=1e-5)
  assert got['kid_std'] < 1e-5 * abs(expected)


def test_kid_is_near_zero_for_the_same_distribution_and_seeded():
  x = _gaussian(16, 1500, 16)
  same = metrics.kernel_distance(x, _gaussian(17, 1500, 16), num_subsets=20, subset_size=500)
  shifted = metrics.kernel_distance(
      x, _gaussian(17, 1500, 16, shift=0.3), num_subsets=20, subset_size=500)
  assert abs(same['kid_mean']) < 2 * same['kid_std']
  assert shifted['kid_mean'] > 20 * max(abs(same['kid_mean']), same['kid_std'])
  again = metrics.kernel_distance(x, _gaussian(17, 1500, 16), num_subsets=20, subset_size=500)
  assert again == same
  other_seed = metrics.kernel_distance(
      x, _gaussian(17, 1500, 16), num_subsets=20, subset_size=500, seed=1)
  assert other_seed != same


def test_kid_rejects_bad_input():
  with pytest.raises(ValueError, match='Feature dimensions differ'):
    metrics.kernel_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match='at least 2 points'):
    metrics.kernel_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------------------------- mode metrics


def _ring_means(n=8, radius=1.0):
  angles = np.linspace(0, 2 * np.pi, n + 1)[:-1]
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _grid_means():
  return np.array([(x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)], np.float64)


def test_mode_metrics_hand_built_ring():
  means, std = _ring_means(), 0.01
  samples = np.concatenate([
      np.repeat(means[:1], 10, axis=0),
      np.repeat(means[1:2] + [2.9 * std, 0.0], 10, axis=0),  # just inside 3 std
      np.repeat(means[2:3], 5, axis=0),
      np.repeat(means[3:4] + [0.0, 3.1 * std], 7, axis=0),  # just outside: not HQ
      np.zeros((3, 2)),  # the centre, far from every mode
  ])
  got = metrics.mode_metrics(samples, means, std)
  p = np.array([10, 10, 5]) / 25
  assert got['modes'] == 3 and got['max_modes'] == 8
  assert got['hq_fraction'] == 25 / 35
  np.testing.assert_allclose(got['reverse_kl'], np.sum(p * np.log(p * 8)), rtol=1e-12)
  # = log K − H(p̂)
  np.testing.assert_allclose(got['reverse_kl'], math.log(8) + np.sum(p * np.log(p)), rtol=1e-12)


def test_mode_metrics_uniform_grid_has_zero_reverse_kl():
  means = _grid_means()
  offsets = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, -0.1], [-0.05, 0.05]])
  samples = (means[:, None, :] + offsets[None]).reshape(-1, 2)
  got = metrics.mode_metrics(samples, means, 0.05)
  assert got == {'modes': 25, 'max_modes': 25, 'hq_fraction': 1.0,
                 'reverse_kl': pytest.approx(0.0, abs=1e-12)}
  collapsed = metrics.mode_metrics(np.repeat(means[7:8], 100, axis=0), means, 0.05)
  assert collapsed['modes'] == 1
  np.testing.assert_allclose(collapsed['reverse_kl'], math.log(25), rtol=1e-12)


def test_mode_metrics_without_high_quality_samples_is_nan():
  means = _grid_means()
  samples = np.concatenate([means + 1.0, [[np.nan, 0.0]], [[np.inf, np.inf]]])
  got = metrics.mode_metrics(samples, means, 0.05)
  assert got['modes'] == 0 and got['hq_fraction'] == 0.0
  assert math.isnan(got['reverse_kl'])


def test_mode_metrics_per_component_std():
  means = _ring_means(4)
  samples = means + [0.05, 0.0]
  # Each sample is 0.05 from its mean; 3 * 0.016 = 0.048 misses, 3 * 0.017 reaches.
  got = metrics.mode_metrics(samples, means, np.array([0.01, 0.016, 0.017, 0.1]))
  assert got['modes'] == 2 and got['hq_fraction'] == 0.5


def test_mode_metrics_rejects_bad_input():
  with pytest.raises(ValueError, match='same D'):
    metrics.mode_metrics(np.zeros((5, 3)), _grid_means(), 0.05)
  with pytest.raises(ValueError, match='positive'):
    metrics.mode_metrics(np.zeros((5, 2)), _grid_means(), 0.0)


def test_label_mode_metrics_hand_built_histogram():
  digits = np.array([[1, 2, 3]] * 6 + [[0, 0, 7]] * 3 + [[9, 9, 9]] * 1)
  p = np.array([6, 3, 1]) / 10
  expected_kl = np.sum(p * np.log(p * 1000))
  per_channel = metrics.label_mode_metrics(digits, 1000)
  flat = metrics.label_mode_metrics(100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2], 1000)
  assert per_channel == flat
  assert flat['modes'] == 3 and flat['max_modes'] == 1000
  np.testing.assert_allclose(flat['kl_uniform'], expected_kl, rtol=1e-12)


def test_label_mode_metrics_uniform_and_collapsed():
  uniform = metrics.label_mode_metrics(np.tile(np.arange(1000), 26), 1000)
  assert uniform['modes'] == 1000
  assert abs(uniform['kl_uniform']) < 1e-12
  collapsed = metrics.label_mode_metrics(np.full(50, 123), 1000)
  assert collapsed['modes'] == 1
  np.testing.assert_allclose(collapsed['kl_uniform'], math.log(1000), rtol=1e-12)


def test_label_kl_parts_separates_channel_imbalance_from_dependence():
  # Every label once: nothing to split.
  every = np.stack(np.unravel_index(np.arange(1000), (10, 10, 10)), axis=1)
  parts = metrics.label_kl_parts(every)
  assert abs(parts['kl_uniform']) < 1e-12 and abs(parts['dependence']) < 1e-12
  assert (parts['modes'], parts['max_modes']) == (1000, 1000)
  np.testing.assert_allclose(parts['channel_kl'], 0.0, atol=1e-12)
  np.testing.assert_allclose(parts['channel_shares'], 0.1, rtol=1e-12)

  # The same digit in all three channels: each channel is uniform, and all the KL
  # (10 of the 1000 labels, each at p = 0.1: log(1000 / 10)) is the channels'
  # dependence, 2 log 10.
  same = np.repeat(np.tile(np.arange(10), 7)[:, None], 3, axis=1)
  parts = metrics.label_kl_parts(same)
  np.testing.assert_allclose(parts['channel_kl'], 0.0, atol=1e-12)
  np.testing.assert_allclose(parts['dependence'], 2 * math.log(10), rtol=1e-12)
  np.testing.assert_allclose(parts['kl_uniform'], math.log(100), rtol=1e-12)
  assert parts['modes'] == 10

  # Independent channels, channel 0 unbalanced (3/4 zeros, 1/4 ones): the exact
  # product table has no dependence and channel 0 carries the whole KL.
  rows = [(a, b, c) for a in (0, 0, 0, 1) for b in range(10) for c in range(10)]
  parts = metrics.label_kl_parts(np.array(rows))
  expected = 0.75 * math.log(7.5) + 0.25 * math.log(2.5)
  np.testing.assert_allclose(parts['channel_kl'], [expected, 0.0, 0.0], atol=1e-12)
  assert abs(parts['dependence']) < 1e-12
  np.testing.assert_allclose(parts['kl_uniform'], expected, rtol=1e-12)
  np.testing.assert_allclose(parts['channel_shares'][0, :3], [0.75, 0.25, 0.0], rtol=1e-12)

  # A hand-built histogram: the dependence is sum_c H(p_c) - H(p), written out.
  digits = np.array([[1, 2, 3]] * 6 + [[0, 0, 7]] * 3 + [[9, 9, 9]] * 1)
  entropy = lambda p: -sum(q * math.log(q) for q in p)
  h_joint = entropy([0.6, 0.3, 0.1])  # every channel has the same three-way split
  parts = metrics.label_kl_parts(digits)
  np.testing.assert_allclose(parts['dependence'], 3 * h_joint - h_joint, rtol=1e-12)
  np.testing.assert_allclose(parts['channel_kl'], math.log(10) - h_joint, rtol=1e-12)
  np.testing.assert_allclose(parts['kl_uniform'], 3 * math.log(10) - h_joint, rtol=1e-12)

  with pytest.raises(ValueError, match=r'per-channel predictions \[N, C\]'):
    metrics.label_kl_parts(np.arange(10))
  with pytest.raises(ValueError, match=r'C >= 1, got shape \(5, 0\)'):
    metrics.label_kl_parts(np.zeros((5, 0), np.int32))
  with pytest.raises(ValueError, match='range'):
    metrics.label_kl_parts(np.array([[1, 2, 10]]))


class _FixedLabels:
  """A stand-in feature net that labels the i-th sample ``labels[i]``."""

  def __init__(self, labels):
    self.labels = np.asarray(labels)

  def predict(self, x):
    return self.labels[:len(x)]


def test_classifier_mode_figures_carry_the_kl_split_for_stacked_digits():
  info = data.load_info('stacked_digits')
  x = np.zeros((70, *info.shape), np.float32)
  same = np.repeat(np.tile(np.arange(10), 7)[:, None], 3, axis=1)
  got = coverage.mode_figures(info, x, _FixedLabels(same))
  assert (got['modes'], got['max_modes']) == (10, 1000)
  np.testing.assert_allclose(got['reverse_kl'], math.log(100), rtol=1e-12)
  np.testing.assert_allclose(got['kl_channels'], 0.0, atol=1e-12)
  np.testing.assert_allclose(got['kl_dependence'], 2 * math.log(10), rtol=1e-12)

  # Channel 0 always 0, the others independent and uniform: no dependence.
  rows = np.array([(0, b, c) for b in range(10) for c in range(10)])
  got = coverage.mode_figures(info, np.zeros((100, *info.shape), np.float32), _FixedLabels(rows))
  np.testing.assert_allclose(got['kl_channels'], math.log(10), rtol=1e-12)
  assert abs(got['kl_dependence']) < 1e-12
  np.testing.assert_allclose(got['reverse_kl'], got['kl_channels'] + got['kl_dependence'])

  # Labels of the wrong number of channels for the dataset's 1,000 modes.
  with pytest.raises(ValueError, match="give 100 modes; 'stacked_digits' has 1000"):
    coverage.mode_figures(info, x, _FixedLabels(same[:, :2]))


def test_label_mode_metrics_rejects_bad_input():
  with pytest.raises(ValueError, match='range'):
    metrics.label_mode_metrics(np.array([[1, 2, 10]]), 1000)
  with pytest.raises(ValueError, match='num_classes=100'):
    metrics.label_mode_metrics(np.array([[1, 2, 3]]), 100)
  with pytest.raises(ValueError, match='integers'):
    metrics.label_mode_metrics(np.array([1.0, 2.0]), 1000)


# ----------------------------------------------------------------------------------------- speed


def test_time_sampler_compiles_once_and_reports():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def sample(params, key):
    return jax.random.normal(key, (100, 4)) * params, jnp.int32(1)

  calls = []

  def counted(*args):
    calls.append(1)
    return sample(*args)

  result = metrics.time_sampler(counted, jnp.float32(2.0), jax.random.key(0), batch=100,
                                repeats=3, warmup=2)
  assert len(calls) == 1 + 2 + 3
  assert set(result) == {'samples_per_second', 'seconds_per_batch', 'compile_seconds',
                         'device_kind', 'platform', 'device_count', 'batch', 'repeats'}
  assert result['seconds_per_batch'] > 0 and result['compile_seconds'] > 0
  np.testing.assert_allclose(result['samples_per_second'] * result['seconds_per_batch'], 100)
  assert result['platform'] == jax.devices()[0].platform
  with pytest.raises(ValueError, match='batch=64'):
    metrics.time_sampler(sample, jnp.float32(2.0), jax.random.key(0), batch=64, repeats=1)


def test_stacked_latent_mi_sees_channels_drawn_together_and_not_independent_ones():
  """experiments/investigations/stacked_latent_mi.py's statistic (docs/ddgan_steps.md, 34)."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).parents[1] / 'experiments/investigations/stacked_latent_mi.py'
  spec = importlib.util.spec_from_file_location('stacked_latent_mi_under_test', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rng = np.random.default_rng(0)
  # Per x_t two candidate digits per channel; independent draws, or one coin for all channels.
  options = rng.integers(0, 10, size=(200, 2, 3))
  coins = rng.integers(0, 2, size=(200, 64, 3))
  pick = lambda c: np.take_along_axis(options, c, axis=1)
  independent = module.latent_mi(pick(coins), np.random.default_rng(1))
  together = module.latent_mi(pick(np.repeat(coins[:, :, :1], 3, axis=2)), np.random.default_rng(1))
  assert abs(independent['excess']) < 3 * independent['excess_stderr'] + 1e-3
  # Where a channel's two options differ the coin is a full bit (log 2) shared by the pair.
  differ = (options[:, 0] != options[:, 1])
  expected = np.mean(sum(differ[:, a] & differ[:, b] for a, b in module._PAIRS)) * math.log(2)
  assert together['excess'] > 20 * together['excess_stderr']
  assert together['mi_given_x_t'] == pytest.approx(expected, rel=0.1)
  assert 1.0 < together['digits_per_channel'] <= 2.0
