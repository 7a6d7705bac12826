"""VAE: KL in closed form, IWAE against the ELBO, training lowers the test NLL."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trilemma_jax import losses
from trilemma_jax.families.vae import family as vae
from trilemma_jax.families.vae.nets import make_vae_net


def test_kl_matches_closed_form_and_monte_carlo():
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(3, 4))
  log_var = rng.normal(scale=0.5, size=(3, 4))
  got = np.asarray(losses.gaussian_kl_standard_normal(jnp.asarray(mean), jnp.asarray(log_var)))
  var = np.exp(log_var)
  # KL of a 1-D Gaussian N(m, v) from N(0, 1) written out term by term, float64.
  want = np.sum(-0.5 * np.log(var) + (var + mean**2) / 2 - 0.5, axis=1)
  np.testing.assert_allclose(got, want, rtol=1e-5)

  n = 400_000
  eps = rng.normal(size=(n, 3, 4))
  z = mean + np.sqrt(var) * eps
  log_q = -0.5 * (np.log(2 * np.pi) + log_var + eps**2)
  log_p = -0.5 * (np.log(2 * np.pi) + z**2)
  mc = np.mean(np.sum(log_q - log_p, axis=-1), axis=0)
  np.testing.assert_allclose(mc, want, rtol=0.02, atol=0.01)


def test_gaussian_and_bernoulli_log_probs_against_scipy():
  from scipy import stats
  rng = np.random.default_rng(1)
  x, m, lv = rng.normal(size=(3, 2, 5))
  got = losses.gaussian_log_prob(jnp.asarray(x), jnp.asarray(m), jnp.asarray(lv))
  want = stats.norm(m, np.exp(0.5 * lv)).logpdf(x).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  x01 = rng.integers(0, 2, size=(2, 5)).astype(np.float64)
  logits = rng.normal(size=(2, 5))
  got = losses.bernoulli_log_prob(jnp.asarray(x01), jnp.asarray(logits))
  want = stats.bernoulli(1 / (1 + np.exp(-logits))).logpmf(x01).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.fixture(scope='module', params=['gaussian', 'bernoulli'])
def image_vae(request):
  net = make_vae_net((8, 8, 1), latent_dim=4, outputs_per_dim=2 if request.param == 'gaussian'
                     else 1, channels=(8,), conv_hidden=32)
  x = jax.random.uniform(jax.random.PRNGKey(0), (6, 8, 8, 1), minval=-1, maxval=1)
  params = net.init(jax.random.PRNGKey(1), x, jnp.zeros((6, 4)), method='init_all')['params']
  return net, params, x, request.param


def test_iwae_with_one_sample_is_the_elbo_at_the_same_draw(image_vae):
  net, params, x, likelihood = image_vae
  key = jax.random.PRNGKey(3)
  terms = vae.elbo_terms(net, params, x, key, likelihood=likelihood)
  # iwae_bound draws eps of shape [1, B, L] from the same key: the same numbers as [B, L].
  bound = vae.iwae_bound(net, params, x, key, likelihood=likelihood, num_samples=1)
  np.testing.assert_allclose(bound, -(terms['recon'] + terms['kl_mc']), rtol=1e-5, atol=1e-4)


def test_iwae_bound_does_not_decrease_with_k(image_vae):
  net, params, x, likelihood = image_vae
  # Make p(x|z) depend strongly on z so that the gap between the bounds exceeds the
  # Monte-Carlo noise (at initialisation the decoder barely looks at z).
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p * 8.0 if 'decoder' in jax.tree_util.keystr(path)
      and 'Dense_0' in jax.tree_util.keystr(path) and 'kernel' in jax.tree_util.keystr(path)
      else p, params)
  means = []
  for k in (1, 10, 100):
    keys = jax.random.split(jax.random.PRNGKey(7), 64)
    draws = jax.vmap(lambda r: vae.iwae_bound(net, params, x, r, likelihood=likelihood,
                                              num_samples=k))(keys)
    means.append(float(jnp.mean(draws)))
  assert means[0] + 0.5 < means[1] < means[2], means
  # And the analytic-KL ELBO agrees with the K=1 bound in expectation: on the same
  # draws of z the two differ only by the Monte-Carlo noise of the KL term.
  keys = jax.random.split(jax.random.PRNGKey(7), 64)
  elbo = jax.vmap(lambda r: -vae.elbo_terms(net, params, x, r, likelihood=likelihood)['loss'])(keys)
  assert abs(float(jnp.mean(elbo)) - means[0]) < 0.02 * abs(means[0]) + 0.5


def test_dequantised_scale_of_a_uniform_model_is_log2_levels():
  # A density uniform on [-1-Δ/2, 1+Δ/2] puts 1/levels on every bin: log2(levels) bits/dim.
  levels, shape = 17, (8, 8, 1)
  width = 2.0 / (levels - 1)
  dim = math.prod(shape)
  log_density = -dim * math.log(2.0 + width)
  bits = -(log_density + vae.log_bin_volume(shape, levels)) / (dim * math.log(2))
  np.testing.assert_allclose(bits, math.log2(levels), rtol=1e-12)


def test_dequantise_stays_inside_the_bin():
  x = jnp.linspace(-1, 1, 17)[None, :].repeat(100, 0)
  y = vae.dequantise(x, jax.random.PRNGKey(0), 17)
  assert float(jnp.max(jnp.abs(y - x))) <= 1.0 / 16 + 1e-6
  assert float(jnp.std(y - x)) > 0.02


def test_train_step_compiles_once_and_reduces_loss(image_vae):
  net, params, x, likelihood = image_vae
  from trilemma_jax.train_state import new_state
  opt = vae.make_optimizer(3e-3)
  params = {vae.NET: params}
  state = new_state(params, opt.init(params), jax.random.PRNGKey(0), ema=params)
  step = vae.make_train_step(net, opt, likelihood=likelihood, beta=1.0, levels=17,
                             ema_decay=0.99)
  chex.clear_trace_counter()
  step = jax.jit(chex.assert_max_traces(step, n=1))
  batch = {'x': x, 'label': jnp.zeros((6,), jnp.int32)}
  first = None
  for _ in range(30):
    state, metrics = step(state, batch)
    first = float(metrics['loss']) if first is None else first
  assert int(state.step) == 30
  assert float(metrics['loss']) < first
