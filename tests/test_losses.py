"""Loss primitives against their formulas, independent float64 references and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from trilemma_jax import losses


def _np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# ----------------------------------------------------------------------------- VAE


def test_gaussian_kl_matches_numerical_integral():
  # One dimension per example, so the sum over axes is the integral itself.
  mean = np.array([[0.0], [1.5], [-0.7]])
  log_var = np.array([[0.0], [-1.0], [0.8]])
  got = np.asarray(losses.gaussian_kl_standard_normal(jnp.asarray(mean, jnp.float32),
                                                      jnp.asarray(log_var, jnp.float32)))
  for i in range(3):
    q = stats.norm(mean[i, 0], math.exp(0.5 * log_var[i, 0]))
    p = stats.norm(0.0, 1.0)
    ref, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -30, 30)
    np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-6)
  assert got[0] == 0.0  # q = p


def test_gaussian_kl_sums_over_non_batch_axes():
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(4, 3, 2)).astype(np.float32)
  log_var = rng.normal(size=(4, 3, 2)).astype(np.float32)
  got = losses.gaussian_kl_standard_normal(mean, log_var)
  per_dim = 0.5 * (mean.astype(np.float64) ** 2 + np.exp(log_var.astype(np.float64))
                   - log_var - 1.0)
  np.testing.assert_allclose(got, per_dim.reshape(4, -1).sum(-1), rtol=1e-5)


def test_gaussian_log_probs_match_scipy():
  rng = np.random.default_rng(1)
  x, mean, log_var = (rng.normal(size=(5, 2, 3)) for _ in range(3))
  got = losses.gaussian_log_prob(*(jnp.asarray(a, jnp.float32) for a in (x, mean, log_var)))
  ref = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).reshape(5, -1).sum(-1)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  got_std = losses.standard_normal_log_prob(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got_std, stats.norm.logpdf(x).reshape(5, -1).sum(-1), rtol=1e-5)


def test_bernoulli_log_prob_matches_formula_and_is_stable():
  x = np.array([[0.0, 1.0, 0.3], [1.0, 0.0, 0.5]])
  logits = np.array([[-2.0, 0.5, 1.0], [3.0, -1.0, 0.0]])
  p = _np_sigmoid(logits)
  ref = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)
  got = losses.bernoulli_log_prob(jnp.asarray(x, jnp.float32), jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  # Confident and right: ~0; confident and wrong: ~-|logit|, finite.
  extreme = losses.bernoulli_log_prob(jnp.array([[1.0], [0.0]]), jnp.array([[100.0], [100.0]]))
  np.testing.assert_allclose(extreme, [0.0, -100.0], atol=1e-6)


def test_mse_per_example_is_mean_over_non_batch_axes():
  a = np.arange(12.0).reshape(2, 2, 3)
  b = np.ones_like(a)
  np.testing.assert_allclose(losses.mse_per_example(a, b), ((a - b) ** 2).reshape(2, -1).mean(-1))


# ----------------------------------------------------------------------------- GAN

REAL = np.array([0.0, 2.0, -3.0, 0.5])
FAKE = np.array([0.0, -1.0, 4.0, -2.0])


def test_minimax_d_loss_is_cross_entropy_of_d():
  got = losses.d_loss_minimax(jnp.asarray(REAL, jnp.float32), jnp.asarray(FAKE, jnp.float32))
  ref = -np.log(_np_sigmoid(REAL)) - np.log(1.0 - _np_sigmoid(FAKE))
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  np.testing.assert_allclose(got[0], 2.0 * math.log(2.0), rtol=1e-6)  # D = 1/2 on both


def test_generator_losses_match_their_formulas():
  f = jnp.asarray(FAKE, jnp.float32)
  np.testing.assert_allclose(losses.g_loss_saturating(f), np.log(1.0 - _np_sigmoid(FAKE)),
                             rtol=1e-6)
  np.testing.assert_allclose(losses.g_loss_non_saturating(f), -np.log(_np_sigmoid(FAKE)),
                             rtol=1e-6)
  np.testing.assert_array_equal(losses.g_loss_hinge(f), -FAKE)


def test_hinge_d_loss_on_hand_picked_logits():
  # max(0, 1 - r) + max(0, 1 + f) for the pairs (0,0), (2,-1), (-3,4), (0.5,-2).
  got = losses.d_loss_hinge(jnp.asarray(REAL, jnp.float32), jnp.asarray(FAKE, jnp.float32))
  np.testing.assert_array_equal(got, [2.0, 0.0, 9.0, 0.5])


def test_saturating_loss_vanishes_where_non_saturating_does_not():
  # A confident discriminator (D(G(z)) ≈ 0): the reason for the non-saturating game.
  f = jnp.array([-10.0])
  g_sat = jax.grad(lambda v: losses.g_loss_saturating(v)[0])(f)
  g_ns = jax.grad(lambda v: losses.g_loss_non_saturating(v)[0])(f)
  np.testing.assert_allclose(g_sat, -_np_sigmoid(-10.0), rtol=1e-5)  # ≈ -4.5e-5
  np.testing.assert_allclose(g_ns, -_np_sigmoid(10.0), rtol=1e-5)  # ≈ -1


def test_gan_losses_are_finite_for_extreme_logits():
  big = jnp.array([100.0, -100.0])
  for d_loss, g_loss in losses.GAN_LOSSES.values():
    assert np.all(np.isfinite(d_loss(big, -big)))
    assert np.all(np.isfinite(g_loss(big)))
  np.testing.assert_allclose(losses.d_loss_minimax(big[:1], -big[:1]), [0.0], atol=1e-30)


def test_gan_losses_lookup():
  assert losses.gan_losses('non_saturating') == (losses.d_loss_minimax,
                                                 losses.g_loss_non_saturating)
  assert losses.gan_losses('minimax')[1] is losses.g_loss_saturating
  assert losses.gan_losses('hinge') == (losses.d_loss_hinge, losses.g_loss_hinge)
  with pytest.raises(ValueError, match='Unknown GAN loss'):
    losses.gan_losses('wasserstein')


# ------------------------------------------------------------------------------ R1


def _tiny_d(x, w1, w2):
  """A smooth per-example discriminator [B, ...] -> [B]."""
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ w1)
  return jnp.sin(h) @ w2


@pytest.mark.parametrize('shape', [(2,), (3, 3, 2)])
def test_r1_matches_finite_differences(shape):
  rng = np.random.default_rng(3)
  d = int(np.prod(shape))
  w1, w2 = rng.normal(size=(d, 5)), rng.normal(size=(5,))
  x = rng.normal(size=(4, *shape))
  eps = 1e-6
  flat = x.reshape(4, -1)
  ref = np.zeros(4)
  with jax.enable_x64(True):
    fn = lambda v: _tiny_d(jnp.asarray(v), jnp.asarray(w1), jnp.asarray(w2))
    got = np.asarray(losses.r1_penalty(fn, jnp.asarray(x)))
    assert got.dtype == np.float64
    for j in range(d):
      step = np.zeros_like(flat)
      step[:, j] = eps
      up = np.asarray(fn((flat + step).reshape(x.shape)))
      down = np.asarray(fn((flat - step).reshape(x.shape)))
      ref += ((up - down) / (2 * eps)) ** 2  # example i's logit only moves with x_i
  np.testing.assert_allclose(got, ref, rtol=1e-7)


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
  w = jnp.array([3.0, -4.0])
  got = losses.r1_penalty(lambda x: x @ w, jnp.ones((3, 2)))
  np.testing.assert_allclose(got, [25.0, 25.0, 25.0])


@pytest.mark.parametrize('apply_now', [True, False])
def test_lazy_penalty_forms_agree_in_value_and_gradient(apply_now):
  # A tanh "discriminator" whose R1 depends on its weights non-trivially.
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
  params = {'w': jax.random.normal(jax.random.PRNGKey(1), (3,)), 'b': jnp.array(0.3)}

  def penalty(p):
    return losses.r1_penalty(lambda v: jnp.tanh(v @ p['w'] + p['b']), x)

  def loss(p, use_cond):
    r1 = losses.lazy_penalty(penalty, p, jnp.asarray(apply_now), every=4, use_cond=use_cond)
    return jnp.where(apply_now, 2.0, 0.0) * jnp.mean(r1), r1

  results = {}
  for use_cond in (True, False):
    grads, r1 = jax.jit(jax.grad(loss, has_aux=True), static_argnums=1)(params, use_cond)
    results[use_cond] = (grads, r1)
  np.testing.assert_allclose(results[True][1], penalty(params), rtol=1e-6)
  np.testing.assert_allclose(results[False][1], results[True][1], rtol=1e-6)
  for name in params:
    np.testing.assert_allclose(results[False][0][name], results[True][0][name], rtol=1e-6,
                               atol=1e-7)
    if apply_now:  # on schedule the penalty's own gradient flows
      assert np.any(np.abs(results[True][0][name]) > 1e-4)
    else:
      np.testing.assert_array_equal(results[True][0][name], 0.0)
