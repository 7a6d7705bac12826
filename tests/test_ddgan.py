"""The DDGAN family: the real/fake pair laws on Gaussian data, the step against its
formula, lazy R1, the compiled sampler, no recompiles, 1-vs-8 devices, networks, config."""

import dataclasses
import json
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from trilemma_jax import config as config_lib
from trilemma_jax import data, diffusion, families, losses, parallel, profiles
from trilemma_jax.families.ddgan import family as ddgan
from trilemma_jax.families.ddgan.nets import (AdaptiveGroupNorm, ConvDiscriminator,
                                              MLPDiscriminator, MLPGenerator,
                                              PackedDiscriminator, PerStepGenerator,
                                              SkipGenerator, fourier_features)


def get_config(dataset):
  return families.get_config('ddgan', dataset)


@dataclasses.dataclass(frozen=True)
class Info:
  """The fields of DatasetInfo the DDGAN reads."""
  name: str
  shape: tuple
  kind: str
  num_classes: int | None = None
  data_std: float | None = None


# The points configs build a SkipGenerator, which needs the data's std.
POINTS = Info('grid25', (2,), 'points', 25, data_std=data.load_info('grid25').data_std)
DIGITS = Info('digits', (8, 8, 1), 'image', 10)


def schedule_of(c):
  """The diffusion of config ``c``, as build_family makes it."""
  d = c.ddgan
  return diffusion.ddgan_vp_schedule(d.num_steps, beta_min=d.beta_min, beta_max=d.beta_max,
                                    time_power=d.time_power)


def small_config(dataset='grid25', **ddgan_overrides):
  c = get_config(dataset)
  c.ddgan.pack = 1  # the tests of packing set it
  c.ddgan.r1_gamma_start = 0.0  # a constant gamma; the test of the schedule sets it
  if dataset == 'grid25':  # official grid, no energy score, D's octaves 0..3: tests set these
    c.ddgan.num_steps, c.ddgan.time_power, c.ddgan.energy_weight = 4, 1.0, 0.0
    c.model.points.d_fourier_octaves, c.model.points.d_fourier_first_octave = 4, 0
  c.model.latent_dim, c.model.z_emb_dim, c.model.mapping_layers = 3, 8, 1
  c.model.time_dim, c.model.num_groups = 8, 2
  if 'points' in c.model:
    p = c.model.points
    p.g_width, p.g_blocks, p.d_widths = 8, 1, (8, 8)
  else:
    im = c.model.image
    im.ch, im.ch_mult, im.d_channels = 4, (1, 2), (4, 8)
  for k, v in ddgan_overrides.items():
    c.ddgan[k] = v
  return c


def assert_saved_without_key_is_the_same_run(key, other_value):
  """A config.json saved before ``ddgan.<key>`` existed resumes as the default;
  setting the key to ``other_value`` is then a change of that key alone."""
  new = small_config()
  saved = json.loads(new.to_json_best_effort())
  del saved['ddgan'][key]
  assert config_lib.changed_keys(saved, new) == []
  new.ddgan[key] = other_value
  assert [k for k, _, _ in config_lib.changed_keys(saved, new)] == [f'ddgan.{key}']


def assert_rejects_non_positive_and_non_finite(key):
  """``ddgan.<key>`` must be a positive finite number, checked when the family is built."""
  grid = data.load_info('grid25')
  for bad, match in [(0.0, 'a positive number'), (-1.0, 'a positive number'),
                     (-2.0, 'a positive number'), (float('nan'), 'a positive number'),
                     (float('inf'), 'must be finite')]:
    with pytest.raises(ValueError, match=f'{key}.*{match}|{match}.*{key}'):
      families.build(small_config(**{key: bad}), grid)


def make_batch(info, b=16, seed=0):
  rng = np.random.default_rng(seed)
  x = np.tanh(rng.normal(size=(b, *info.shape))).astype(np.float32)
  return {'x': jnp.asarray(x), 'label': jnp.zeros((b,), jnp.int32)}


# ------------------------------------------------- the pairs on Gaussian data
# Data x0 ~ N(m, s²) per coordinate. Every quantity below is jointly Gaussian, so
# the laws of the pairs are fixed by means and covariances known in closed form.

_M, _S2, _N = 0.7, 0.3, 200_000


def _coefficients(t, num_steps=4):
  """float64 ab_{t-1}, a_t and the moments of (x_{t-1}, x_t) under the forward chain."""
  s = diffusion.ddgan_vp_schedule(num_steps)
  ab_prev, alpha = float(s.alpha_bars[t - 1]), float(s.alphas[t])
  mean_prev = np.sqrt(ab_prev) * _M
  var_prev = ab_prev * _S2 + 1.0 - ab_prev
  mean_t = np.sqrt(alpha) * mean_prev
  var_t = alpha * var_prev + 1.0 - alpha
  cov = np.sqrt(alpha) * var_prev
  return s, mean_prev, var_prev, mean_t, var_t, cov


def _moments(x_prev, x_t):
  a, b = np.asarray(x_prev, np.float64).ravel(), np.asarray(x_t, np.float64).ravel()
  return a.mean(), a.var(), b.mean(), b.var(), np.mean((a - a.mean()) * (b - b.mean()))


def _assert_moments(got, want):
  # Sampling errors of N draws: sd(mean) = sqrt(var/N), sd(var) ~ var sqrt(2/N).
  mean_prev, var_prev, mean_t, var_t, cov = want
  tol_mean = 5 * np.sqrt(max(var_prev, var_t) / _N)
  tol_var = 5 * max(var_prev, var_t) * np.sqrt(2.0 / _N)
  np.testing.assert_allclose(got[0], mean_prev, atol=tol_mean)
  np.testing.assert_allclose(got[2], mean_t, atol=tol_mean)
  np.testing.assert_allclose(got[1], var_prev, atol=tol_var)
  np.testing.assert_allclose(got[3], var_t, atol=tol_var)
  np.testing.assert_allclose(got[4], cov, atol=tol_var)


def _gaussian_data(key):
  return _M + np.sqrt(_S2) * jax.random.normal(key, (_N, 1))


def _real_pairs(s, x0, t, key):
  """The real pairs of the forward chain, drawn as make_draw draws them."""
  k1, k2 = jax.random.split(key)
  return diffusion.q_sample_pair(s, x0, t, jax.random.normal(k1, x0.shape, x0.dtype),
                                 jax.random.normal(k2, x0.shape, x0.dtype))


@pytest.mark.parametrize('t', [1, 2, 4])
def test_real_pairs_have_the_laws_of_the_forward_chain(t):
  s, *want = _coefficients(t)
  x0 = _gaussian_data(jax.random.PRNGKey(t))
  x_prev, x_t = _real_pairs(s, x0, jnp.full((_N,), t, jnp.int32), jax.random.PRNGKey(10 + t))
  _assert_moments(_moments(x_prev, x_t), want)


def _denoiser(s, t, exact):
  """A generator for Gaussian data: x0 | x_t is Gaussian; draw from it (exact) or return its mean."""
  ab = float(s.alpha_bars[t])
  var_xt = ab * _S2 + 1.0 - ab
  gain = np.sqrt(ab) * _S2 / var_xt
  post_var = _S2 - ab * _S2 ** 2 / var_xt

  def g(x_t, z, t_idx):
    mean = _M + gain * (x_t - np.sqrt(ab) * _M)
    return mean + (np.sqrt(post_var) * z[:, :1] if exact else 0.0)

  return g


@pytest.mark.parametrize('t', [1, 2, 4])
def test_fake_pairs_of_the_true_denoiser_have_the_real_laws(t):
  # If G draws x0 from q(x0 | x_t), the fake pair (x'_{t-1}, x_t) must have the
  # law of the real pair: this is the fixed point the DDGAN game aims for.
  s, *want = _coefficients(t)
  x0 = _gaussian_data(jax.random.PRNGKey(t))
  tb = jnp.full((_N,), t, jnp.int32)
  x_prev, x_t = _real_pairs(s, x0, tb, jax.random.PRNGKey(30 + t))
  z = jax.random.normal(jax.random.PRNGKey(40 + t), (_N, 2))
  x0_hat = _denoiser(s, t, exact=True)(x_t, z, tb)
  x_fake = ddgan.fake_prev(s, x0_hat, x_t, tb, jax.random.PRNGKey(50 + t))
  _assert_moments(_moments(x_fake, x_t), want)
  if t == 4:
    return  # x0 hardly enters x_3: a wrong x0 law is invisible in the pair moments there
  # The posterior mean alone (no latent) under-disperses x'_{t-1}: the test can fail.
  x_mean_only = ddgan.fake_prev(s, _denoiser(s, t, exact=False)(x_t, z, tb), x_t, tb,
                                jax.random.PRNGKey(50 + t))
  got = _moments(x_mean_only, x_t)
  assert want[1] - got[1] > 10 * want[1] * np.sqrt(2.0 / _N)


def test_draw_takes_t_uniformly_and_chains_the_pairs():
  s = diffusion.ddgan_vp_schedule(4)
  x0 = jnp.zeros((40_000, 1))
  seen = {}

  def g_apply(params, x_t, z, t):
    seen['params'], seen['z'] = params, z
    return x_t * 0 + 0.5

  draw = ddgan.make_draw(s, g_apply, latent_dim=3)
  u = draw('g_params', {'x': x0, 'label': jnp.zeros((40_000,), jnp.int32)},
           jax.random.PRNGKey(0))
  x_t, t = u.cond
  counts = np.bincount(np.asarray(t), minlength=5)
  assert counts[0] == 0 and np.all(np.abs(counts[1:] / 40_000 - 0.25) < 0.01)
  assert seen['params'] == 'g_params' and seen['z'].shape == (40_000, 3)
  assert x_t.shape == x0.shape
  # At t = 1 the fake x'_0 is the generator's output exactly.
  ones = np.asarray(t) == 1
  np.testing.assert_array_equal(np.asarray(u.fake)[ones], 0.5)
  # x_prev at t = 1 is x0 itself.
  np.testing.assert_array_equal(np.asarray(u.real)[ones], 0.0)
  # x0_hat = 0.5 everywhere against x0 = 0.
  np.testing.assert_allclose(u.metrics['x0_rmse'], 0.5, rtol=1e-6)


# ------------------------------------------------------------- networks


def test_adaptive_group_norm_starts_as_a_plain_group_norm_and_follows_w():
  h = jax.random.normal(jax.random.PRNGKey(0), (3, 8))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 5))
  layer = AdaptiveGroupNorm(num_groups=2)
  params = layer.init(jax.random.PRNGKey(2), h, w)
  out = layer.apply(params, h, w)
  groups = np.asarray(h, np.float64).reshape(3, 2, 4)
  ref = (groups - groups.mean(-1, keepdims=True)) / np.sqrt(groups.var(-1, keepdims=True) + 1e-6)
  # At init gamma = 1 + (kernel @ w) and beta = kernel @ w; zero the kernel to check the biases.
  zeroed = jax.tree.map(jnp.zeros_like, params)
  zeroed['params']['style']['bias'] = params['params']['style']['bias']
  np.testing.assert_allclose(layer.apply(zeroed, h, w), ref.reshape(3, 8), rtol=1e-5, atol=1e-5)
  assert not np.allclose(out, ref.reshape(3, 8), atol=1e-3)  # w moves it


def test_generator_uses_z_and_t_and_discriminator_treats_examples_independently():
  g, d = MLPGenerator(width=8, num_blocks=1, z_emb_dim=8, time_dim=8, num_groups=2), \
      MLPDiscriminator(widths=(8,), time_dim=8)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
  t = jnp.array([1, 2, 3, 4])
  gp = g.init(jax.random.PRNGKey(2), x, z, t)
  # Perturb the zero-initialised residual branches so every input matters.
  leaves, tree = jax.tree.flatten(gp)
  keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
  gp = jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape)
                                 for a, k in zip(leaves, keys)])
  base = g.apply(gp, x, z, t)
  assert not np.allclose(base, g.apply(gp, x, -z, t))
  assert not np.allclose(base, g.apply(gp, x, z, 5 - t))
  dp = d.init(jax.random.PRNGKey(3), x, x, t)
  a = d.apply(dp, x, x, t)
  b = d.apply(dp, x.at[1:].set(-x[1:]), x, t)
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
  assert not np.allclose(a[1:], b[1:])


def test_fourier_features_are_sines_and_cosines_of_octaves():
  x = np.array([[0.3, -1.2]], np.float32)
  f = np.asarray(fourier_features(jnp.asarray(x), 3))
  angles = (x[0][:, None] * np.pi * 2.0 ** np.arange(3)).ravel()
  np.testing.assert_allclose(f[0], np.concatenate([x[0], np.sin(angles), np.cos(angles)]),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(fourier_features(jnp.asarray(x), 0), x)


def test_fourier_features_from_a_negative_octave_tell_the_grid_modes_apart():
  x = np.array([[0.3, -1.2]], np.float32)
  f = np.asarray(fourier_features(jnp.asarray(x), 4, first_octave=-2))
  angles = (x[0][:, None] * np.pi * 2.0 ** np.arange(-2, 2)).ravel()
  np.testing.assert_allclose(f[0], np.concatenate([x[0], np.sin(angles), np.cos(angles)]),
                             rtol=1e-5, atol=1e-6)
  # From octave 0 grid25's five mode positions on an axis (2 apart) differ only
  # in the raw coordinates; from octave -3 (period 16) the Fourier columns alone
  # tell all five apart.
  modes = jnp.asarray([[c, 0.0] for c in (-4.0, -2.0, 0.0, 2.0, 4.0)])
  periodic = np.asarray(fourier_features(modes, 4))[:, 2:]
  np.testing.assert_allclose(periodic, np.broadcast_to(periodic[0], periodic.shape), atol=1e-5)
  low = np.asarray(fourier_features(modes, 7, first_octave=-3))[:, 2:]
  gaps = np.abs(low[:, None] - low[None]).max(axis=-1)
  assert gaps[~np.eye(5, dtype=bool)].min() > 0.5


class ConstantBody(nn.Module):
  @nn.compact
  def __call__(self, x_t, z, t):
    return jnp.broadcast_to(self.param('c', lambda k: jnp.array([0.5, -2.0])), x_t.shape)


def test_skip_generator_is_the_linear_denoiser_plus_a_scaled_body():
  s = diffusion.ddgan_vp_schedule(4)
  ab = np.asarray(s.alpha_bars, np.float64)
  sigma = 2.0
  g = SkipGenerator(ConstantBody(), tuple(float(a) for a in s.alpha_bars), sigma)
  x_t = jnp.asarray([[1.0, -3.0], [0.5, 2.0]])
  t = jnp.array([1, 3])
  params = g.init(jax.random.PRNGKey(0), x_t, jnp.zeros((2, 1)), t)
  out = g.apply(params, x_t, jnp.zeros((2, 1)), t)
  a = ab[[1, 3]][:, None]
  # The best linear estimate of x0 ~ N(0, sigma²) from x_t, and the std it leaves.
  c_skip = np.sqrt(a) * sigma ** 2 / (a * sigma ** 2 + 1 - a)
  c_out = np.sqrt(sigma ** 2 - c_skip ** 2 * (a * sigma ** 2 + 1 - a))
  np.testing.assert_allclose(out, c_skip * np.asarray(x_t) + c_out * np.array([0.5, -2.0]),
                             rtol=1e-5)


def test_per_step_generator_computes_each_example_with_its_own_steps_weights():
  body = MLPGenerator(width=8, num_blocks=1, z_emb_dim=4, mapping_layers=1, time_dim=8,
                      num_groups=2, activation='relu')
  g = PerStepGenerator(body, num_steps=3)
  rng = np.random.default_rng(0)
  x_t = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
  z = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  t = jnp.array([1, 2, 3, 3, 2, 1])
  params = g.init(jax.random.PRNGKey(0), x_t, z, t)['params']
  assert all(a.shape[0] == 3 for a in jax.tree.leaves(params))
  out = g.apply({'params': params}, x_t, z, t)
  for k in range(3):
    # The body alone, with step k + 1's slice of every parameter, on every example.
    own = body.apply({'params': jax.tree.map(lambda a: a[k], params['body'])}, x_t, z, t)
    rows = np.asarray(t) == k + 1
    np.testing.assert_allclose(out[rows], own[rows], rtol=1e-5, atol=1e-6)
  # The steps do not share weights: the slices differ, and changing step 2's
  # weights moves only the examples at t = 2.
  assert not np.allclose(params['body']['dense_out']['kernel'][0],
                         params['body']['dense_out']['kernel'][1])
  moved = jax.tree.map(lambda a: a.at[1].multiply(2.0), params)
  out2 = g.apply({'params': moved}, x_t, z, t)
  changed = np.any(np.abs(np.asarray(out2 - out)) > 1e-6, axis=1)
  np.testing.assert_array_equal(changed, np.asarray(t) == 2)


def test_per_step_generator_trains_and_samples_and_old_runs_read_as_shared():
  assert_saved_without_key_is_the_same_run('per_step_generator', True)
  c = small_config(per_step_generator=True)
  fam = families.build(c, POINTS)
  state = jax.jit(fam.init)(jax.random.PRNGKey(0), make_batch(POINTS))
  kernels = state.params['generator']['body']['body']['dense_out']['kernel']
  assert kernels.shape[0] == c.ddgan.num_steps  # SkipGenerator(PerStepGenerator(MLP))
  state, metrics = jax.jit(fam.train_step)(state, make_batch(POINTS))
  assert np.isfinite(float(metrics['g_loss']))
  x = fam.sample(state, jax.random.PRNGKey(1), 8)
  assert x.shape == (8, 2) and np.isfinite(np.asarray(x)).all()
  for arch in ('unet', 'ncsnpp'):  # the image generators take a leading step axis too
    c = get_config('digits')
    c.ddgan.per_step_generator, c.model.image.arch = True, arch
    g, _ = ddgan.build_networks(c, DIGITS, schedule_of(c))
    x0, z, t = jnp.zeros((4, 8, 8, 1)), jnp.zeros((4, c.model.latent_dim)), jnp.arange(1, 5)
    variables = jax.eval_shape(g.init, jax.random.PRNGKey(0), x0, z, t)
    assert all(a.shape[0] == 4 for a in jax.tree.leaves(variables))
    assert jax.eval_shape(g.apply, variables, x0, z, t).shape == (4, 8, 8, 1)


def test_noise_maps_widen_z_reach_the_unet_and_old_runs_read_as_without():
  """model.image.noise_channels: per-pixel noise maps drawn with z, fed beside x_t."""
  c = get_config('stacked_digits')
  assert c.model.image.noise_channels == 3  # stacked digits' default (docs/ddgan_steps.md, 34)
  assert get_config('digits').model.image.noise_channels == 0
  c.train.steps, c.data.batch_size = 2, 8
  # Narrow nets and one D update: what is tested is the generator's input, not its width.
  c.model.image.ch, c.model.num_groups, c.model.image.d_channels = 8, 4, (8, 16)
  c.ddgan.n_critic = 1
  c.model.image.noise_channels = 0
  saved = json.loads(c.to_json_best_effort())
  del saved['model']['image']['noise_channels']
  assert config_lib.changed_keys(saved, c) == []
  stacked = data.load_info('stacked_digits')
  assert ddgan.latent_size(c, stacked) == c.model.latent_dim
  c.model.image.noise_channels = 3
  assert ddgan.latent_size(c, stacked) == c.model.latent_dim + 8 * 8 * 3
  fam = families.build(c, stacked)
  state = jax.jit(fam.init)(jax.random.PRNGKey(0), make_batch(stacked, b=8))
  assert state.params['generator']['conv_in']['kernel'].shape[2] == 3 + 3  # x_t and the maps
  state, metrics = jax.jit(fam.train_step)(state, make_batch(stacked, b=8))
  assert np.isfinite(float(metrics['g_loss']))
  assert np.isfinite(np.asarray(fam.sample(state, jax.random.PRNGKey(1), 4))).all()
  # The maps are the last H * W * K entries of z: changing one pixel's noise changes x0_hat.
  parts = ddgan.build_parts(c, stacked)
  g = state.params['generator']
  x_t, t = jnp.zeros((2, 8, 8, 3)), jnp.array([1, 2])
  z = jax.random.normal(jax.random.PRNGKey(2), (2, parts.latent_dim))
  apply = jax.jit(parts.generator.apply)  # eagerly, each op would compile on its own
  out = apply({'params': g}, x_t, z, t)
  moved = apply({'params': g}, x_t, z.at[:, -1].add(3.0), t)
  assert float(jnp.abs(out - moved).max()) > 0
  with pytest.raises(ValueError, match='needs more than 192'):
    parts.generator.apply({'params': g}, x_t, z[:, :192], t)
  c.model.image.noise_channels = -1
  with pytest.raises(ValueError, match='noise_channels.*a non-negative integer'):
    families.build(c, stacked)
  c.model.image.noise_channels, c.model.image.arch = 2, 'ncsnpp'
  with pytest.raises(ValueError, match="is for the U-Net generator"):
    families.build(c, stacked)


def test_latent_from_step_leaves_the_mapped_latent_out_of_the_late_steps():
  """model.image.latent_from_step = k: below step k only the noise maps vary x0_hat."""
  c = get_config('stacked_digits')
  assert c.model.image.latent_from_step == 1
  saved = json.loads(c.to_json_best_effort())
  del saved['model']['image']['latent_from_step']
  assert config_lib.changed_keys(saved, c) == []  # runs saved before the key read as 1
  c.model.image.ch, c.model.num_groups = 8, 4  # narrow: the test is about z's path
  stacked = data.load_info('stacked_digits')
  x_t, t = jnp.zeros((2, 8, 8, 3)), jnp.array([1, 2])
  z = jax.random.normal(jax.random.PRNGKey(2), (2, ddgan.latent_size(c, stacked)))
  other = z.at[:, :c.model.latent_dim].set(
      jax.random.normal(jax.random.PRNGKey(3), (2, c.model.latent_dim)))  # same maps

  # The option adds no parameters: one initialisation serves both. Jitted: eagerly,
  # each of the U-Net's ops would compile on its own.
  params = jax.jit(ddgan.build_parts(c, stacked).generator.init)(jax.random.PRNGKey(0), x_t, z, t)

  def moved(k):
    c.model.image.latent_from_step = k
    apply = jax.jit(ddgan.build_parts(c, stacked).generator.apply)
    out, out_other = (apply(params, x_t, zz, t) for zz in (z, other))
    return np.asarray(jnp.abs(out - out_other).reshape(2, -1).max(axis=1))

  assert (moved(1) > 0).all()
  at_1, at_2 = moved(2)  # step 1 without the latent, step 2 with it
  assert at_1 == 0 and at_2 > 0
  c.model.image.latent_from_step = 2
  c.train.steps, c.data.batch_size = 2, 8
  fam = families.build(c, stacked)
  # The train step takes the option (traced, not compiled: the step with the maps is
  # compiled and run in the test above, and this one differs by the zeroing checked here).
  batch = make_batch(stacked, b=8)
  state = jax.eval_shape(fam.init, jax.random.PRNGKey(0), batch)
  _, metrics = jax.eval_shape(fam.train_step, state, batch)
  assert metrics['g_loss'].shape == ()
  c.model.image.latent_from_step = 5
  with pytest.raises(ValueError, match=r'latent_from_step \(a step of the T = '
                                       r'ddgan.num_steps\) must be an integer in 1\.\.4'):
    families.build(c, stacked)
  c.model.image.latent_from_step, c.model.image.noise_channels = 2, 0
  with pytest.raises(ValueError, match='but there are none'):
    families.build(c, stacked)


@pytest.mark.parametrize('dataset,shape', [
    ('grid25', (2,)), ('digits', (8, 8, 1)), ('stacked_digits', (8, 8, 3)),
    ('fashion_mnist', (28, 28, 1)), ('tfds:cifar10', (32, 32, 3))])
def test_default_networks_have_the_data_shape(dataset, shape):
  kind = 'points' if len(shape) == 1 else 'image'
  info = Info(dataset, shape, kind, data_std=POINTS.data_std if kind == 'points' else None)
  c = get_config(dataset)
  g, d = ddgan.build_networks(c, info, schedule_of(c))
  b = 4 * c.ddgan.pack
  x = jnp.zeros((b, *shape))
  z = jnp.zeros((b, ddgan.latent_size(c, info)))  # stacked digits: the latent and noise maps
  t = jnp.ones((b,), jnp.int32)
  g_vars = jax.eval_shape(g.init, jax.random.PRNGKey(0), x, z, t)
  assert jax.eval_shape(g.apply, g_vars, x, z, t).shape == (b, *shape)
  d_vars = jax.eval_shape(d.init, jax.random.PRNGKey(0), x, x, t)
  assert jax.eval_shape(d.apply, d_vars, x, x, t).shape == (4,)  # one logit per pack



def test_the_mixture_recipes_differ_where_the_docs_say():
  """Grid25 and ring8 both run the energy score on the time grid p = 1.5; ring8 adds
  T = 8, step weights and training steps, grid25 its R1 path and D's low Fourier
  octaves (docs/ddgan_steps.md, sections 11, 20, 21, 23, 26, 31)."""
  ring8, grid25 = get_config('ring8'), get_config('grid25')
  assert (ring8.ddgan.num_steps, grid25.ddgan.num_steps) == (8, 4)
  assert ring8.ddgan.time_power == grid25.ddgan.time_power == 1.5
  assert ring8.ddgan.energy_weight == grid25.ddgan.energy_weight == 0.3
  weights = (16.0, 8.0, 4.0, 2.0) + (1.0,) * 4
  assert config_lib.changed_keys(json.loads(grid25.to_json_best_effort()), ring8) == [
      ('data.name', 'grid25', 'ring8'), ('ddgan.num_steps', 4, 8),
      ('ddgan.r1_gamma_start', 3.0, 0.0), ('ddgan.t_weights', [], list(weights)),
      ('model.points.d_fourier_first_octave', -3, 0), ('model.points.d_fourier_octaves', 7, 4),
      ('train.steps', 3000, 6000)]
  d_grid25 = ddgan.build_networks(grid25, POINTS, schedule_of(grid25))[1].inner  # unpacked
  assert (d_grid25.fourier_octaves, d_grid25.fourier_first_octave) == (7, -3)
  parts = ddgan.build_parts(ring8, data.load_info('ring8'))
  assert parts.t_weights == weights and parts.energy_weight == 0.3
  np.testing.assert_array_equal(np.asarray(parts.schedule.alpha_bars),
                                np.asarray(diffusion.ddgan_vp_schedule(8, time_power=1.5).alpha_bars))
  assert ddgan.build_parts(grid25, POINTS).t_weights == ()
  # The weights are per step: another T on ring8 is refused with what to do.
  ring8.ddgan.num_steps = 4
  with pytest.raises(ValueError, match=r'8 weights.*T = config.ddgan.num_steps = 4.*\(\)'):
    families.build(ring8, data.load_info('ring8'))


def test_the_digits_recipe_trains_the_last_step_four_times_as_often_at_any_T():
  info = data.load_info('digits')
  c = get_config('digits')
  assert ddgan.build_parts(c, info).t_weights == (4.0, 1.0, 1.0, 1.0)
  c.ddgan.num_steps = 2  # what --config.ddgan.num_steps=2 does
  assert ddgan.build_parts(c, info).t_weights == (4.0, 1.0)
  # The other image recipes keep uniform steps (docs/ddgan_steps.md, section 17).
  for other in ('stacked_digits', 'fashion_mnist', 'tfds:cifar10'):
    o = get_config(other)
    assert ddgan.step_weights(o.ddgan.num_steps, o.ddgan.t_weights,
                              o.ddgan.last_step_weight) == (), other


def test_fourier_first_octaves_reach_the_networks_and_old_runs_read_as_zero():
  c = small_config(num_steps=2)
  c.model.points.g_fourier_first_octave = -1
  c.model.points.d_fourier_first_octave = -3
  g, d = ddgan.build_networks(c, POINTS, schedule_of(c))
  assert (g.body.fourier_first_octave, d.fourier_first_octave) == (-1, -3)
  del c.model.points['g_fourier_first_octave'], c.model.points['d_fourier_first_octave']
  g, d = ddgan.build_networks(c, POINTS, schedule_of(c))
  assert (g.body.fourier_first_octave, d.fourier_first_octave) == (0, 0)
  families.build(c, POINTS)  # validates: a run saved before the keys still loads


# --------------------------------------------------------- the step, exactly


def test_one_step_matches_the_formula(num_steps=4):
  lr, gamma, scale = 0.05, 0.7, 0.5
  c = small_config(num_steps=num_steps)
  s = diffusion.ddgan_vp_schedule(num_steps)
  g, d = ddgan.build_networks(c, POINTS, s)
  opt = optax.sgd(lr)
  batch = make_batch(POINTS, 8)
  # Init and the formula's gradients jitted: eagerly, each op would compile on its own.
  state = jax.jit(lambda rng: ddgan.init_state(g, d, opt, opt, rng, batch, latent_dim=3))(
      jax.random.PRNGKey(0))
  step = ddgan.make_train_step(g, d, opt, opt, s, latent_dim=3, data_scale=scale,
                               r1_gamma=gamma, r1_every=1, ema_decay=0.9)
  new, metrics = jax.jit(step)(state, batch)

  g0, d0 = state.params['generator'], state.params['discriminator']
  key = jax.random.fold_in(state.rng, 0)
  draw = ddgan.make_draw(s, lambda p, x_t, z, t: g.apply({'params': p}, x_t, z, t),
                         latent_dim=3, data_scale=scale)
  u = draw(g0, batch, jax.random.fold_in(jax.random.fold_in(key, 0), 0))
  u_xt, u_t = u.cond

  def d_objective(p):
    logit = lambda prev, x_t, t: d.apply({'params': p}, prev, x_t, t)
    # R1: the gradient with respect to the real x_{t-1} only, x_t held fixed.
    grads = jax.vmap(jax.grad(lambda v, xt, tt: logit(v[None], xt[None], tt[None])[0]))(
        u.real, u_xt, u_t)
    r1 = jnp.sum(grads ** 2, axis=-1)
    adv = losses.d_loss_minimax(logit(u.real, u_xt, u_t), logit(u.fake, u_xt, u_t))
    return jnp.mean(adv) + 0.5 * gamma * jnp.mean(r1)

  d1 = jax.tree.map(lambda p, gr: p - lr * gr, d0, jax.jit(jax.grad(d_objective))(d0))
  chex.assert_trees_all_close(new.params['discriminator'], d1, rtol=1e-5, atol=1e-6)

  def g_objective(p):  # fresh t, pairs and z; against the updated discriminator
    v = draw(p, batch, jax.random.fold_in(key, 1))
    return jnp.mean(losses.g_loss_non_saturating(d.apply({'params': d1}, v.fake, *v.cond)))

  g1 = jax.tree.map(lambda p, gr: p - lr * gr, g0, jax.jit(jax.grad(g_objective))(g0))
  chex.assert_trees_all_close(new.params['generator'], g1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics['g_loss'], jax.jit(g_objective)(g0), rtol=1e-5)
  # EMA warm-up at step 0: decay = min(0.9, 1/10).
  chex.assert_trees_all_close(
      new.ema,
      {'generator': jax.tree.map(lambda a, b: 0.1 * a + 0.9 * b, g0, new.params['generator'])},
      rtol=1e-6, atol=1e-8)
  assert int(new.step) == 1 and new.model_state == {}


def test_lazy_r1_applies_gamma_unscaled_on_schedule_and_nothing_off_schedule():
  c = small_config()
  g, d = ddgan.build_networks(c, POINTS, schedule_of(c))
  opt = optax.sgd(0.1)  # plain SGD: the update is proportional to the gradient
  batch = make_batch(POINTS)
  state0 = ddgan.init_state(g, d, opt, opt, jax.random.PRNGKey(0), batch, latent_dim=3)

  def make(**options):
    step = jax.jit(ddgan.make_train_step(g, d, opt, opt, diffusion.ddgan_vp_schedule(4),
                                         latent_dim=3, **options))

    def run(step_index):  # the step index is traced: one compilation serves both
      new, metrics = step(state0.replace(step=jnp.asarray(step_index, jnp.int32)), batch)
      return new.params['discriminator'], metrics

    return run

  lazy, plain = make(r1_gamma=0.5, r1_every=3), make(r1_gamma=0.0)
  on, _ = lazy(3)
  eager, _ = make(r1_gamma=0.5, r1_every=1)(3)  # the official code: gamma not multiplied by k
  chex.assert_trees_all_close(on, eager, rtol=1e-5, atol=1e-7)
  assert not np.allclose(on['dense_0']['kernel'], plain(3)[0]['dense_0']['kernel'])
  off, m_off = lazy(4)
  plain_off, m_plain = plain(4)
  chex.assert_trees_all_close(off, plain_off, rtol=1e-5, atol=1e-7)
  assert float(m_off['r1']) > 0
  # With gamma = 0 R1 is neither computed nor logged.
  assert 'r1' not in m_plain


def test_n_critic_discriminator_updates_per_generator_update():
  family = ddgan.build_family(small_config(n_critic=3), POINTS)
  state = family.init(jax.random.PRNGKey(0), make_batch(POINTS))
  step = jax.jit(family.train_step)
  for _ in range(2):
    state, _ = step(state, make_batch(POINTS))
  assert int(state.opt_state['discriminator'][0].count) == 6
  assert int(state.opt_state['generator'][0].count) == 2


def _on_input_path(path) -> bool:
  """Whether a discriminator parameter is a kernel on the inputs' path (not the time's)."""
  return path[-1].key == 'kernel' and 'time' not in jax.tree_util.keystr(path)


@pytest.mark.parametrize('make', [
    lambda sn: ConvDiscriminator(channels=(4, 8), time_dim=8, spectral_norm=sn),
    lambda sn: MLPDiscriminator(widths=(8, 8), time_dim=8, spectral_norm=sn),
], ids=['conv', 'mlp'])
def test_spectral_norm_makes_the_logits_blind_to_the_scale_of_the_input_path(make):
  # W / sigma(W) does not change when W is scaled, so with spectral norm the
  # logits do not either; without it they do.
  k = jax.random.split(jax.random.PRNGKey(0), 3)
  image = isinstance(make(False), ConvDiscriminator)
  shape = (4, 8, 8, 3) if image else (4, 2)
  x_prev, x_t, t = jax.random.normal(k[0], shape), jax.random.normal(k[1], shape), jnp.arange(1, 5)
  for sn in (True, False):
    d = make(sn)
    v = d.init(k[2], x_prev, x_t, t)
    assert ('batch_stats' in v) == sn
    scale = lambda path, p: p * 10.0 if _on_input_path(path) else p
    scaled = {**v, 'params': jax.tree_util.tree_map_with_path(scale, v['params'])}
    before, after = d.apply(v, x_prev, x_t, t), d.apply(scaled, x_prev, x_t, t)
    if sn:
      np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-6)
    else:
      assert not np.allclose(after, before, rtol=0.1)


@pytest.mark.parametrize('info,layer,norm', [(POINTS, 'dense_1', 'SpectralNorm_1'),
                                             (DIGITS, 'block_0_conv_1', 'SpectralNorm_2')],
                         ids=['mlp', 'conv'])
def test_spectral_norm_vectors_advance_once_per_discriminator_update(info, layer, norm):
  # With frozen weights, u after the run is exactly n_critic * steps power
  # iterations from its initial value: the adversarial core keeps the state of
  # the real-logit call only, so the fake logits, R1 and the G update must not
  # advance it.
  c = small_config(info.name, spectral_norm=True, pack=2)
  g, d = ddgan.build_networks(c, info, schedule_of(c))
  frozen = optax.sgd(0.0)
  batch = make_batch(info)
  init = lambda: ddgan.init_state(g, d, frozen, frozen, jax.random.PRNGKey(0), batch,
                                  latent_dim=3)
  step = jax.jit(ddgan.make_train_step(g, d, frozen, frozen, schedule_of(c), latent_dim=3,
                                       n_critic=2, r1_gamma=1.0, r1_every=1, pack=2))
  state = init()
  for _ in range(3):
    state, _ = step(state, batch)
  kernel = np.asarray(state.params['discriminator']['inner'][layer]['kernel'], np.float64)
  kernel = kernel.reshape(-1, kernel.shape[-1])  # a conv kernel as the matrix it normalises
  stats = lambda s: s.model_state['discriminator']['batch_stats']['inner'][norm]
  u = np.asarray(stats(init())[f'{layer}/kernel/u'], np.float64)
  for _ in range(6):
    v = u @ kernel.T
    v /= np.linalg.norm(v)
    u = v @ kernel
    u /= np.linalg.norm(u)
  np.testing.assert_allclose(stats(state)[f'{layer}/kernel/u'], u, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats(state)[f'{layer}/kernel/sigma'], (v @ kernel @ u.T)[0, 0],
                             rtol=1e-5)


def test_spectral_norm_is_refused_for_ncsnpp_and_old_runs_read_as_without():
  assert_saved_without_key_is_the_same_run('spectral_norm', True)
  c = small_config('digits', spectral_norm=True)
  c.model.image.arch = 'ncsnpp'
  with pytest.raises(ValueError, match=re.escape('config.ddgan.spectral_norm=True is for')):
    families.build(c, DIGITS)


def test_energy_score_is_smallest_for_the_true_conditional():
  # Target: x0 uniform on {-1, +1} in 2-D (a two-mode posterior). The estimate
  # averaged over many draws ranks the true law below a collapsed one (always
  # +1, what a generator ignoring z gives) and below one that is too wide.
  key = jax.random.PRNGKey(0)
  n = 200_000
  k0, k1, k2 = jax.random.split(key, 3)
  sign = lambda k: jnp.where(jax.random.bernoulli(k, 0.5, (n, 1)), 1.0, -1.0) * jnp.ones((n, 2))
  x0 = sign(k0)
  score = lambda a, b: float(jnp.mean(ddgan.energy_score(a, b, x0)))
  true = score(sign(k1), sign(k2))
  collapsed = score(jnp.ones((n, 2)), jnp.ones((n, 2)))
  wide = score(2 * sign(k1), 2 * sign(k2))
  assert true < collapsed - 0.3 and true < wide - 0.3, (true, collapsed, wide)


def test_energy_weight_adds_the_weighted_score_to_the_generator_loss_only():
  batch = make_batch(POINTS)
  metrics = {}
  for weight in (0.0, 2.5):
    family = ddgan.build_family(small_config(energy_weight=weight), POINTS)
    state = family.init(jax.random.PRNGKey(3), batch)
    _, metrics[weight] = jax.jit(family.train_step)(state, batch)
  plain, scored = metrics[0.0], metrics[2.5]
  assert 'energy_score' not in plain and float(scored['energy_score']) > 0
  # The D update and the generator's adversarial draw use the same streams.
  for k in ('d_loss', 'r1', 'logit_real', 'logit_fake', 'x0_rmse'):
    np.testing.assert_array_equal(plain[k], scored[k], err_msg=k)
  np.testing.assert_allclose(scored['g_loss'], plain['g_loss'] + 2.5 * scored['energy_score'],
                             rtol=1e-6)
  assert float(scored['g_grad_norm']) != float(plain['g_grad_norm'])


def test_energy_from_step_counts_the_score_at_the_later_steps_only():
  batch = make_batch(POINTS, b=64)

  def energy(t_weights, from_step):
    c = small_config(energy_weight=1.0, energy_from_step=from_step, t_weights=t_weights)
    parts = ddgan.build_parts(c, POINTS)
    assert parts.energy_from_step == from_step
    state = ddgan.build_family(c, POINTS).init(jax.random.PRNGKey(3), batch)
    draw = parts.draw(state.params['generator'], batch['x'], jax.random.PRNGKey(5))
    return float(draw.metrics['energy_score'])

  uniform = ()
  every = energy(uniform, 1)
  # The score of one example is >= 0 (triangle inequality), so dropping the
  # examples at t = 1 lowers the batch mean, and dropping every step leaves 0.
  assert 0 < energy(uniform, 2) < every
  assert energy((1.0, 0.0, 0.0, 0.0), 2) == 0.0
  # Steps all at or above the threshold: the same score as counting every step.
  late = (0.0, 1.0, 1.0, 1.0)
  assert energy(late, 2) == energy(late, 1) > 0
  grid = data.load_info('grid25')
  for bad, match in [(0, 'energy_from_step'), (5, 'energy_from_step=5 is above T')]:
    with pytest.raises(ValueError, match=match):
      families.build(small_config(energy_weight=1.0, energy_from_step=bad), grid)
  assert_saved_without_key_is_the_same_run('energy_from_step', 2)


def test_r1_gamma_start_moves_gamma_geometrically_to_r1_gamma():
  c = small_config(r1_gamma=0.1, r1_gamma_start=1.0, r1_every=1)
  c.train.steps = 100
  schedule = ddgan.r1_gamma_schedule(c)
  np.testing.assert_allclose([float(schedule(jnp.int32(s))) for s in (0, 50, 100)],
                             [1.0, 0.1 ** 0.5, 0.1], rtol=1e-6)
  assert ddgan.r1_gamma_schedule(small_config(r1_gamma=0.3)) == 0.3  # start 0: constant
  # The train step uses gamma of its own step: the norm of the discriminator's
  # gradient (adversarial loss + gamma/2 R1) equals the constant family's at
  # gamma = start (step 0), at the midpoint and at gamma = end (last step).
  batch = make_batch(POINTS)

  # Only gamma differs between these families: one initial state serves them all.
  state = ddgan.build_family(c, POINTS).init(jax.random.PRNGKey(3), batch)

  def grad_norm_at(config):
    step_fn = jax.jit(ddgan.build_family(config, POINTS).train_step)
    return lambda step: float(step_fn(state.replace(step=jnp.int32(step)), batch)[1]['d_grad_norm'])

  scheduled = grad_norm_at(c)  # one compile for every step
  for step, gamma in ((0, 1.0), (50, 0.1 ** 0.5), (100, 0.1)):
    constant = small_config(r1_gamma=gamma, r1_every=1)
    np.testing.assert_allclose(scheduled(step), grad_norm_at(constant)(step), rtol=1e-5)
  # ... and differs from a gamma 5 % off, beyond that tolerance.
  assert abs(scheduled(0) / grad_norm_at(small_config(r1_gamma=0.95, r1_every=1))(0) - 1) > 1e-4
  grid = data.load_info('grid25')
  for bad, match in [(dict(r1_gamma_start=-1.0), 'r1_gamma_start'),
                     (dict(r1_gamma_start=1.0, r1_gamma=0.0), 'needs a positive config.ddgan.r1_gamma'),
                     (dict(r1_gamma_start=float('inf')), 'r1_gamma_start=inf must be finite')]:
    with pytest.raises(ValueError, match=match):
      families.build(small_config(**bad), grid)
  assert_saved_without_key_is_the_same_run('r1_gamma_start', 1.0)


def test_a_run_saved_before_energy_weight_existed_is_still_the_same_run():
  assert_saved_without_key_is_the_same_run('energy_weight', 1.0)
  with pytest.raises(ValueError, match='energy_weight'):
    families.build(small_config(energy_weight=-1.0), data.load_info('grid25'))


def test_step_weights_draw_t_in_proportion_and_keep_the_uniform_draw_without_them():
  key = jax.random.PRNGKey(7)
  t = np.asarray(ddgan.sample_t(key, 40_000, 4, (4.0, 2.0, 1.0, 1.0)))
  assert t.dtype == np.int32 and t.min() == 1 and t.max() == 4
  freq = np.bincount(t, minlength=5)[1:] / t.size
  np.testing.assert_allclose(freq, [0.5, 0.25, 0.125, 0.125], atol=0.01)
  # A zero weight never draws its step.
  assert 2 not in set(np.asarray(ddgan.sample_t(key, 1000, 3, (1.0, 0.0, 1.0))).tolist())
  np.testing.assert_array_equal(ddgan.sample_t(key, 64, 4, ()), ddgan.sample_t(key, 64, 4))
  with pytest.raises(ValueError, match='3 step weights for T = 4'):
    ddgan.sample_t(key, 8, 4, (1.0, 1.0, 1.0))
  with pytest.raises(ValueError, match='not all zero'):
    ddgan.sample_t(key, 8, 2, (0.0, 0.0))
  # Through the config: the draw of a train step follows the weights.
  c = small_config(t_weights=(0.0, 0.0, 0.0, 1.0))
  family_t = ddgan.build_parts(c, POINTS)
  state = ddgan.build_family(c, POINTS).init(jax.random.PRNGKey(3), make_batch(POINTS))
  draw = family_t.draw(state.params['generator'], make_batch(POINTS)['x'], jax.random.PRNGKey(5))
  assert set(np.asarray(draw.cond[1]).tolist()) == {4}


def test_step_weights_are_checked_and_old_runs_read_as_uniform():
  grid = data.load_info('grid25')
  for bad, match in [((1.0, 1.0), 'has 2 weights; give one per step'),
                     ((0.0, 0.0, 0.0, 0.0), 'not all zero'),
                     ((float('inf'), 1.0, 1.0, 1.0), 'must be finite'),
                     ((1.0, -1.0, 1.0, 1.0), r't_weights\[1\]')]:
    with pytest.raises(ValueError, match=match):
      families.build(small_config(t_weights=bad), grid)
  assert_saved_without_key_is_the_same_run('t_weights', (2.0, 1.0, 1.0, 1.0))


def test_last_step_weight_scales_the_weight_of_t1_for_any_number_of_steps():
  assert ddgan.step_weights(4) == () and ddgan.step_weights(4, (), 1.0) == ()
  assert ddgan.step_weights(4, (), 3.0) == (3.0, 1.0, 1.0, 1.0)
  assert ddgan.step_weights(2, (1.0, 2.0), 3.0) == (3.0, 2.0)
  assert ddgan.step_weights(3, (1.0, 2.0, 1.0)) == (1.0, 2.0, 1.0)
  for steps in (2, 4, 8):
    parts = ddgan.build_parts(small_config(num_steps=steps, last_step_weight=5.0), POINTS)
    assert parts.t_weights == (5.0,) + (1.0,) * (steps - 1)
  assert_rejects_non_positive_and_non_finite('last_step_weight')
  # A run saved before the key existed drew uniform steps.
  assert_saved_without_key_is_the_same_run('last_step_weight', 2.0)


def test_time_power_sets_the_schedule_the_family_builds():
  for power in (1.0, 2.0):
    c = small_config(num_steps=8, time_power=power)
    parts = ddgan.build_parts(c, POINTS)
    expected = diffusion.ddgan_vp_schedule(8, time_power=power)
    np.testing.assert_array_equal(np.asarray(parts.schedule.alpha_bars),
                                  np.asarray(expected.alpha_bars))
  # A smaller first step at the same end point.
  one = ddgan.build_parts(small_config(num_steps=8), POINTS).schedule
  two = ddgan.build_parts(small_config(num_steps=8, time_power=2.0), POINTS).schedule
  assert float(two.alpha_bars[1]) > float(one.alpha_bars[1])
  np.testing.assert_allclose(float(two.alpha_bars[8]), float(one.alpha_bars[8]), rtol=1e-6)
  assert_rejects_non_positive_and_non_finite('time_power')
  # A run saved before the key existed used the official grid: it resumes as the
  # same run, and its config.json builds the official schedule.
  assert_saved_without_key_is_the_same_run('time_power', 2.0)
  saved = json.loads(small_config(num_steps=8).to_json_best_effort())
  del saved['ddgan']['time_power']
  old = ddgan.build_parts(ml_collections.ConfigDict(saved), POINTS).schedule
  np.testing.assert_array_equal(np.asarray(old.alpha_bars), np.asarray(one.alpha_bars))


@pytest.mark.parametrize('weights,expected', [
    ({'t_weights': (3.0, 1.0, 1.0, 1.0)}, (3.0, 1.0, 1.0, 1.0)),
    ({'last_step_weight': 2.0}, (2.0, 1.0, 1.0, 1.0)),
])
def test_the_train_step_draws_t_with_the_configured_weights(monkeypatch, weights, expected):
  seen = []
  real = ddgan.sample_t

  def spy(key, batch, num_steps, weights=()):
    seen.append(tuple(weights))
    return real(key, batch, num_steps, weights)

  monkeypatch.setattr(ddgan, 'sample_t', spy)
  family = ddgan.build_family(small_config(**weights), POINTS)
  batch = make_batch(POINTS)
  jax.make_jaxpr(family.train_step)(family.init(jax.random.PRNGKey(0), batch), batch)
  assert seen and set(seen) == {expected}


def test_packed_discriminator_scores_concatenated_packs_with_the_first_step():
  inner = MLPDiscriminator(widths=(8,), time_dim=8)
  packed = PackedDiscriminator(inner, pack=3)
  k = jax.random.split(jax.random.PRNGKey(0), 3)
  x_prev, x_t = jax.random.normal(k[0], (6, 2)), jax.random.normal(k[1], (6, 2))
  t = jnp.array([1, 1, 1, 4, 4, 4])
  variables = packed.init(k[2], x_prev, x_t, t)
  logits = packed.apply(variables, x_prev, x_t, t)
  assert logits.shape == (2,)
  by_hand = inner.apply({'params': variables['params']['inner']}, x_prev.reshape(2, 6),
                        x_t.reshape(2, 6), t[::3])
  np.testing.assert_array_equal(logits, by_hand)
  # Images: the members' channels side by side.
  conv = PackedDiscriminator(ConvDiscriminator(channels=(4,), time_dim=8), pack=2)
  img = jax.random.normal(k[0], (4, 4, 4, 1))
  v = conv.init(k[2], img, img, t[:4])
  manual = jnp.concatenate([img[0::2], img[1::2]], axis=-1)
  np.testing.assert_allclose(
      conv.apply(v, img, img, jnp.array([2, 2, 3, 3])),
      conv.inner.apply({'params': v['params']['inner']}, manual, manual, jnp.array([2, 3])),
      rtol=1e-6)
  with pytest.raises(ValueError, match='packs of 3'):
    packed.apply(variables, x_prev[:4], x_t[:4], t[:4])


def test_pack_trains_with_one_step_per_pack_and_checks_the_batch():
  c = small_config(pack=4)
  family = ddgan.build_family(c, POINTS)
  batch = make_batch(POINTS, 16)
  state = family.init(jax.random.PRNGKey(3), batch)
  assert set(state.params['discriminator']) == {'inner'}
  new, metrics = jax.jit(family.train_step)(state, batch)
  assert np.isfinite(float(metrics['d_loss'])) and np.isfinite(float(metrics['r1']))
  # The draw gives the members of a pack one step.
  s = schedule_of(c)
  g, _ = ddgan.build_networks(c, POINTS, s)
  draw = ddgan.make_draw(s, lambda p, x_t, z, t: g.apply({'params': p}, x_t, z, t),
                         latent_dim=c.model.latent_dim, pack=4)
  t = np.asarray(draw(state.params['generator'], batch, jax.random.PRNGKey(5)).cond[1])
  assert (t.reshape(4, 4) == t[::4, None]).all() and len(set(t.tolist())) > 1
  # pack = 1 draws the steps of the original DDGAN.
  plain = ddgan.make_draw(s, lambda p, x_t, z, t: g.apply({'params': p}, x_t, z, t),
                          latent_dim=c.model.latent_dim)
  np.testing.assert_array_equal(
      plain(state.params['generator'], batch, jax.random.PRNGKey(5)).cond[1],
      ddgan.sample_t(jax.random.split(jax.random.PRNGKey(5), 4)[0], 16, s.num_steps))
  bad = small_config(pack=3)
  bad.data.batch_size = 16
  with pytest.raises(ValueError, match='not a multiple of config.ddgan.pack=3'):
    families.build(bad, data.load_info('grid25'))


# ---------------------------------------------------------------- sampling


class ConstantG(nn.Module):
  """A generator that ignores its inputs: x0_hat is one learned point."""

  @nn.compact
  def __call__(self, x_t, z, t):
    c = self.param('c', lambda k: jnp.array([0.3, -0.2]))
    return jnp.broadcast_to(c, x_t.shape)


def test_sampler_runs_t_steps_and_returns_data_coordinates():
  s = diffusion.ddgan_vp_schedule(4)
  state = ddgan.init_state(ConstantG(), MLPDiscriminator(widths=(4,), time_dim=4),
                           optax.sgd(0.0), optax.sgd(0.0), jax.random.PRNGKey(0),
                           make_batch(POINTS), latent_dim=3)
  sample = ddgan.make_sampler(ConstantG(), s, (2,), latent_dim=3, data_scale=0.25)
  x = jax.jit(sample, static_argnums=2)(state, jax.random.PRNGKey(1), 5)
  # The last step returns x0_hat itself, divided back by the data scale.
  np.testing.assert_allclose(x, np.broadcast_to([1.2, -0.8], (5, 2)), rtol=1e-6)


def test_sampler_is_the_reverse_chain_with_posterior_steps():
  family = ddgan.build_family(small_config(num_steps=2, data_scale=0.5), POINTS)
  state = family.init(jax.random.PRNGKey(0), make_batch(POINTS))
  state = state.replace(ema=jax.tree.map(lambda a: a + 0.05, state.ema))
  assert family.samplers == {'ddgan2': ({}, 2)}
  key = jax.random.PRNGKey(3)
  x = jax.jit(family.sample, static_argnums=2)(state, key, 6)
  # The same chain written out as a Python loop, with the documented keys.
  # The generator of that config: its skip connection depends on data_scale too.
  s = diffusion.ddgan_vp_schedule(2)
  g, _ = ddgan.build_networks(small_config(num_steps=2, data_scale=0.5), POINTS, s)
  prior_key, chain_key = jax.random.split(key)
  xt = jax.random.normal(prior_key, (6, 2))
  for t in (2, 1):
    z_key, noise_key = jax.random.split(jax.random.fold_in(chain_key, t))
    tb = jnp.full((6,), t, jnp.int32)
    x0_hat = g.apply({'params': state.ema['generator']}, xt, jax.random.normal(z_key, (6, 3)),
                     tb)
    mean, var, _ = diffusion.posterior_mean_variance(s, x0_hat, xt, tb)
    xt = mean + jnp.sqrt(var) * jax.random.normal(noise_key, xt.shape)
  np.testing.assert_allclose(x, xt / 0.5, rtol=1e-4, atol=1e-4)
  # Only the EMA weights matter.
  other = jax.tree.map(lambda p: p + 1.0, state.params)
  np.testing.assert_array_equal(x, family.sample(state.replace(params=other), key, 6))


def test_parts_trajectory_ends_in_the_samplers_draw_and_draw_gives_the_steps_pairs():
  config = small_config(num_steps=2, data_scale=0.5)
  family = ddgan.build_family(config, POINTS)
  parts = ddgan.build_parts(config, POINTS)
  state = family.init(jax.random.PRNGKey(0), make_batch(POINTS))
  key = jax.random.PRNGKey(3)
  path = parts.trajectory(state.ema['generator'], key, 6)
  assert path.shape == (3, 6, 2)
  np.testing.assert_allclose(path[-1], family.sample(state, key, 6), rtol=1e-6, atol=1e-6)
  # Entry 0 is x_T (data coordinates: the prior noise divided by data_scale).
  prior_key, _ = jax.random.split(key)
  np.testing.assert_allclose(path[0], jax.random.normal(prior_key, (6, 2)) / 0.5, rtol=1e-6)
  g_apply = lambda p, x_t, z, t: parts.generator.apply({'params': p}, x_t, z, t)
  batch = make_batch(POINTS)
  want = ddgan.make_draw(parts.schedule, g_apply, latent_dim=3, data_scale=0.5)(
      state.params['generator'], batch, key)
  got = parts.draw(state.params['generator'], batch['x'], key)
  chex.assert_trees_all_close(got, want)


def test_parts_denoise_runs_the_last_t_steps_of_the_chain():
  config = small_config(num_steps=3)
  parts = ddgan.build_parts(config, POINTS)
  state = ddgan.build_family(config, POINTS).init(jax.random.PRNGKey(0), make_batch(POINTS))
  g = state.ema['generator']
  x = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
  key = jax.random.PRNGKey(2)
  full = ddgan.sample_chain(parts.generator, g, parts.schedule, key, x, latent_dim=3)
  np.testing.assert_array_equal(parts.denoise(g, x, 3, key), full)
  # From x_1: one generator call, x0_hat itself (the posterior variance is 0 at t = 1).
  z_key, _ = jax.random.split(jax.random.fold_in(key, 1))
  want = parts.generator.apply({'params': g}, x, jax.random.normal(z_key, (5, 3)),
                               jnp.ones((5,), jnp.int32))
  np.testing.assert_allclose(parts.denoise(g, x, 1, key), want, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match=r'from_t=4 must be in 1\.\.3'):
    parts.denoise(g, x, 4, key)


def test_parts_noised_draws_the_forward_marginal_in_the_network_scale():
  config = small_config(num_steps=3)
  config.ddgan.data_scale = 0.5
  parts = ddgan.build_parts(config, POINTS)
  x0 = np.tile([[2.0, -1.0]], (20000, 1))
  key = jax.random.PRNGKey(3)
  x_t = np.asarray(parts.noised(x0, 1, key))
  want = diffusion.q_sample(parts.schedule, 0.5 * x0, jnp.ones((20000,), jnp.int32),
                            jax.random.normal(key, x0.shape))
  np.testing.assert_array_equal(x_t, want)
  ab = float(parts.schedule.alpha_bars[1])
  np.testing.assert_allclose(x_t.mean(0), np.sqrt(ab) * 0.5 * x0[0], atol=0.02)
  np.testing.assert_allclose(x_t.std(0), np.sqrt(1 - ab), rtol=0.03)
  assert abs(np.sqrt(1 - ab) - 1) > 0.1  # t = 1 tells scaled noise from unscaled


# ------------------------------------------------------ compilation, devices


def test_step_compiles_once_over_steps_on_and_off_the_r1_schedule():
  # GAN and DDGAN share the adversarial core's step, which chex counts by its source.
  chex.clear_trace_counter()
  family = ddgan.build_family(small_config(r1_every=2, n_critic=2), POINTS)
  state = family.init(jax.random.PRNGKey(0), make_batch(POINTS))
  step = jax.jit(chex.assert_max_traces(family.train_step, n=1))
  for i in range(4):
    state, metrics = step(state, make_batch(POINTS, seed=i))
  assert int(state.step) == 4
  assert set(metrics) == {'d_loss', 'r1', 'd_real', 'd_fake', 'logit_real', 'logit_fake',
                          'd_grad_norm', 'g_loss', 'g_grad_norm', 'x0_rmse'}
  for k, v in metrics.items():
    assert v.shape == () and np.isfinite(v), k


def test_same_seed_same_bits():
  family = ddgan.build_family(small_config(r1_every=2), POINTS)
  batch = make_batch(POINTS)

  def run():
    state = family.init(jax.random.PRNGKey(7), batch)
    step = jax.jit(family.train_step)
    for _ in range(2):
      state, _ = step(state, batch)
    return state

  chex.assert_trees_all_equal(run(), run())


# On the MLP with two D updates per step and packs of 2 (one pack per device).
# Sharded conv steps are covered by the GAN's and the DDPM U-Net's 1-vs-8 tests;
# a conv DDGAN case cost ~55 s of compile on 2 cores for no step logic of its own.
def test_one_and_eight_devices_agree():
  info = POINTS
  family = ddgan.build_family(small_config(info.name, r1_every=2, n_critic=2, pack=2), info)
  batches = [make_batch(info, 16, seed=i) for i in range(3)]

  def run(devices):
    mesh = parallel.make_mesh(devices)
    state = parallel.jit_init(family.init, mesh)(jax.random.PRNGKey(1), batches[0])
    step = parallel.jit_train_step(family.train_step, mesh)
    for b in batches:
      state, metrics = step(state, parallel.shard_batch(jax.device_get(b), mesh))
    return jax.device_get(state), jax.device_get(metrics)

  one, m1 = run(jax.devices()[:1])
  eight, m8 = run(jax.devices()[:8])
  chex.assert_trees_all_close(one, eight, rtol=2e-4, atol=2e-5)
  chex.assert_trees_all_close(m1, m8, rtol=2e-4, atol=2e-5)


# ------------------------------------------------------------- validation


@pytest.mark.parametrize('section,key,value,match', [
    ('ddgan', 'num_steps', 0, 'config.ddgan.num_steps must be a positive integer, got 0.'),
    ('ddgan', 'n_critic', 0, 'config.ddgan.n_critic must be a positive integer, got 0.'),
    ('ddgan', 'r1_every', 0, 'config.ddgan.r1_every must be a positive integer, got 0.'),
    ('ddgan', 'r1_gamma', -1.0, 'config.ddgan.r1_gamma must be a non-negative number, got -1.0.'),
    ('ddgan', 'data_scale', 0.0, 'config.ddgan.data_scale must be a positive number, got 0.0.'),
    ('model', 'latent_dim', 0, 'config.model.latent_dim must be a positive integer, got 0.'),
])
def test_bad_settings_name_the_key(section, key, value, match):
  c = small_config()
  c[section][key] = value
  with pytest.raises(ValueError, match=re.escape(match)):
    families.build(c, POINTS)


def test_skip_generator_needs_the_data_std():
  no_std = dataclasses.replace(POINTS, data_std=None)
  with pytest.raises(ValueError, match=re.escape(
      'config.ddgan.skip_generator=True needs the per-coordinate std of the data')):
    families.build(small_config(skip_generator=True), no_std)
  families.build(small_config(skip_generator=False), no_std)  # no std needed without it


def test_unknown_data_kind_is_refused():
  with pytest.raises(ValueError, match=re.escape(
      "'grid25' is graph data, so config.model needs the section model.graph")):
    families.build(small_config(), Info('grid25', (2,), 'graph'))


def test_the_investigation_profiles_reproduce_their_uniform_runs():
  """docs/ddgan_steps.md's commands pin the uniform steps they were measured with."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).parents[1] / 'experiments/investigations/ddgan_profiles.py'
  spec = importlib.util.spec_from_file_location('ddgan_profiles_under_test', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  found = {name: p for name, p in vars(module).items() if isinstance(p, profiles.Profile)}
  assert {'T_SWEEP_UNIFORM', 'RING8_T8_TWEIGHTS', 'DIGITS_T4_TWEIGHTS'} <= set(found)
  for name, profile in found.items():
    for entry in profile.families:
      own = profile.variants.get(entry, ('', {}))[1]
      if profile.family_of(entry) != 'ddgan':
        continue
      for dataset in profile.datasets:
        c = families.get_config('ddgan', dataset, profile.overrides_for(entry, dataset))
        # The pins sit under ('ddgan', '*'): a profile's own dataset setting keeps its value.
        explicit = profile.overrides.get(('ddgan', dataset), {})
        for key, neutral in (('last_step_weight', 1.0), ('time_power', 1.0), ('t_weights', ()),
                             ('energy_weight', 0.0), ('r1_gamma_start', 0.0)):
          if f'ddgan.{key}' not in own and f'ddgan.{key}' not in explicit:
            assert c.ddgan[key] == neutral, (name, entry, dataset, key)
        # Grid25 before section 26: T = 4, D's Fourier octaves 0..3.
        if dataset == 'grid25':
          for key, before in (('ddgan.num_steps', 4), ('model.points.d_fourier_octaves', 4),
                              ('model.points.d_fourier_first_octave', 0)):
            if key not in own:
              assert config_lib.setting(c, key) == before, (name, entry, key)
        # Stacked digits before section 32: R1 0.02 (the grid and score are pinned
        # above); before section 33: the cosine decay of the learning rates.
        if dataset == 'stacked_digits' and 'ddgan.r1_gamma' not in own:
          assert c.ddgan.r1_gamma == 0.02, (name, entry)
        if dataset == 'stacked_digits' and 'optim.cosine_decay' not in own:
          assert c.optim.cosine_decay, (name, entry)
        # Digits before section 28: batch 64, R1 0.02; before section 30: 1,200 steps
        # and the warmed-up EMA.
        if dataset == 'digits':
          for key, before in (('data.batch_size', 64), ('ddgan.r1_gamma', 0.02),
                              ('train.steps', 1200), ('ema.warmup', True),
                              ('ema.decay', 0.999)):
            if key not in own:
              assert config_lib.setting(c, key) == before, (name, entry, key)
  ring8 = found['RING8_T8_TWEIGHTS']
  c = families.get_config('ddgan', 'ring8', ring8.overrides_for('ddgan_T8_t1x8', 'ring8'))
  assert ddgan.build_parts(c, data.load_info('ring8')).t_weights == (8.0,) + (1.0,) * 7
  # A variant's own weight survives the pin.
  grid = found['GRID25_T4_TWEIGHTS']
  c = families.get_config('ddgan', 'grid25', grid.overrides_for('ddgan_t1x4', 'grid25'))
  assert ddgan.build_parts(c, POINTS).t_weights == (4.0, 1.0, 1.0, 1.0)
  # Ring8 profiles measured at 3,000 steps keep them; a variant's own steps survive.
  late = found['RING8_LATE']
  for entry, steps in (('ddgan_energy0_3', 3000), ('ddgan_cosine', 3000),
                       ('ddgan_6000_steps', 6000)):
    assert late.overrides_for(entry, 'ring8')['train.steps'] == steps, entry
  # Section 23's 6,000-step runs (issue 11's ring8 figures) are the coverage
  # profile's ring8 DDGAN, key for key.
  coverage = profiles.get_profile('coverage').overrides_for('ddgan', 'ring8')
  ring8 = families.get_config('ddgan', 'ring8', coverage)
  measured = families.get_config('ddgan', 'ring8', late.overrides_for('ddgan_6000_steps', 'ring8'))
  assert config_lib.changed_keys(json.loads(measured.to_json_best_effort()), ring8) == []
  assert found['COVERAGE_PROBE'].overrides_for('ddgan', 'ring8')['train.steps'] == 3000
  energy = found['RING8_ENERGY']
  for entry, weight in (('ddgan_energy0_3', 0.3), ('ddgan_p1_5_t16842', 0.0)):
    c = families.get_config('ddgan', 'ring8', energy.overrides_for(entry, 'ring8'))
    assert ddgan.build_parts(c, data.load_info('ring8')).energy_weight == weight, entry
  c = families.get_config('ddgan', 'ring8',
                          found['RING8_TIME_POWER'].overrides_for('ddgan_p1_5', 'ring8'))
  assert (c.ddgan.time_power, c.ddgan.last_step_weight) == (1.5, 8.0)
  # Profiles measured at T = 4 on ring8, before its default became T = 8, keep T = 4.
  for name in ('RING8_PACK', 'RING8_PACK_MORE', 'RING8_SHARP', 'RING8_GANLIKE'):
    for entry in found[name].families:
      assert found[name].overrides_for(entry, 'ring8')['ddgan.num_steps'] == 4, (name, entry)
  assert found['COVERAGE_PROBE'].overrides_for('ddgan', 'ring8')['ddgan.num_steps'] == 4
  assert found['RING8_T8'].overrides_for('ddgan_T8', 'ring8')['ddgan.num_steps'] == 8
  # Section 31's measured runs are today's grid25 default, through the pins; section
  # 26's (the default before) differ from it in T and the time grid alone.
  grid25 = families.get_config('ddgan', 'grid25')

  def grid25_changed(profile, entry):
    c = families.get_config('ddgan', 'grid25', found[profile].overrides_for(entry, 'grid25'))
    return config_lib.changed_keys(json.loads(c.to_json_best_effort()), grid25)

  assert grid25_changed('GRID25_T4_FINE_MORE', 'ddgan_p1_5_energy0_3') == []
  assert grid25_changed('GRID25_T4_FINE_ENERGY', 'ddgan_p1_5_energy0_3') == []
  before_31 = [('ddgan.num_steps', 8, 4), ('ddgan.time_power', 1.0, 1.5)]
  assert grid25_changed('GRID25_T8_ENERGY_OCTAVES_MORE', 'ddgan_T8_energy0_3_d_oct_m3') == before_31
  assert grid25_changed('GRID25_T4_FINE_MORE', 'ddgan_T8_energy0_3_d_oct_m3') == before_31
  # Section 33's runs with constant learning rates are today's stacked default;
  # section 32's runs without R1 on the finer grid with the score differ in the
  # schedule only, its 'ddgan' entry (the default before that) in four keys.
  stacked = families.get_config('ddgan', 'stacked_digits')

  def stacked_changed(profile, entry):
    c = families.get_config('ddgan', 'stacked_digits',
                            found[profile].overrides_for(entry, 'stacked_digits'))
    return config_lib.changed_keys(json.loads(c.to_json_best_effort()), stacked)

  assert stacked_changed('STACKED_NOISE', 'ddgan_fine_noise3') == []
  before_34 = [('model.image.noise_channels', 0, 3)]
  assert stacked_changed('STACKED_NOISE', 'ddgan_fine_const_lr') == before_34
  assert stacked_changed('STACKED_FINE_SCREEN', 'ddgan_fine_const_lr') == before_34
  before_33 = before_34 + [('optim.cosine_decay', True, False)]
  assert stacked_changed('STACKED_NO_R1_MORE', 'ddgan_nor1_p1_5_energy0_3') == before_33
  assert stacked_changed('STACKED_FINE_SCREEN', 'ddgan_nor1_p1_5_energy0_3') == before_33
  assert stacked_changed('STACKED_NO_R1', 'ddgan') == [
      ('ddgan.energy_weight', 0.0, 0.3), ('ddgan.r1_gamma', 0.02, 0.0),
      ('ddgan.time_power', 1.0, 1.5), ('model.image.noise_channels', 0, 3),
      ('optim.cosine_decay', True, False)]
  # Section 30's 1,800-step runs with the plain EMA are today's digits default;
  # sections 28's and 29's default entries differ from it in the steps and the EMA,
  # section 28's 'ddgan' entry also in the batch and R1.
  default = families.get_config('ddgan', 'digits')

  def changed(profile, entry):
    c = families.get_config('ddgan', 'digits', profile.overrides_for(entry, 'digits'))
    return sorted(config_lib.changed_keys(json.loads(c.to_json_best_effort()), default))

  assert changed(found['DIGITS_LONGER'], 'ddgan_1800_ema998') == []
  before_30 = [('ema.decay', 0.999, 0.998), ('ema.warmup', True, False),
               ('train.steps', 1200, 1800)]
  for profile, entry in (('DIGITS_CHEAPER_STEPS', 'ddgan_b32_nor1'),
                         ('DIGITS_N_CRITIC', 'ddgan_nc3'), ('DIGITS_LONGER', 'ddgan_nc3')):
    assert changed(found[profile], entry) == before_30, (profile, entry)
  assert changed(found['DIGITS_LONGER'], 'ddgan_1800') == before_30[:2]
  assert changed(found['DIGITS_CHEAPER_STEPS'], 'ddgan') == sorted(
      before_30 + [('data.batch_size', 64, 32), ('ddgan.r1_gamma', 0.02, 0.0)])
