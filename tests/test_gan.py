"""The GAN family: networks, the one-step update against its formula, R1 schedule,
spectral norm bookkeeping, no recompiles, 1-vs-8 devices, sampling, config validation."""

import dataclasses
import os
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from trilemma_jax import families, losses, parallel, train
from trilemma_jax.families.gan import family as gan
from trilemma_jax.families.gan.nets import ConvGenerator, Discriminator, Generator
from trilemma_jax.nets.mlp import MLP


def get_config(dataset):
  return families.get_config('gan', dataset)


@dataclasses.dataclass(frozen=True)
class Info:
  """The fields of DatasetInfo the GAN reads."""
  name: str
  shape: tuple
  kind: str
  num_classes: int | None


POINTS = Info('grid25', (2,), 'points', 25)
DIGITS = Info('digits', (8, 8, 1), 'image', 10)


def small_config(dataset='grid25', **gan_overrides):
  c = get_config(dataset)
  if 'points' in c.model:
    c.model.points.g_widths, c.model.points.d_widths = (16, 16), (16, 16)
  else:
    c.model.image.g_channels, c.model.image.d_channels = (8, 4), (4, 8)
  c.model.latent_dim, c.model.embed_dim = 3, 4
  for k, v in gan_overrides.items():
    c.gan[k] = v
  return c


def make_batch(info, b=16, seed=0):
  rng = np.random.default_rng(seed)
  x = np.tanh(rng.normal(size=(b, *info.shape))).astype(np.float32)
  return {'x': jnp.asarray(x), 'label': jnp.asarray(np.arange(b) % (info.num_classes or 1),
                                                      jnp.int32)}


# -------------------------------------------------------------------------- networks


@pytest.mark.parametrize('dataset,shape', [
    ('grid25', (2,)), ('digits', (8, 8, 1)), ('stacked_digits', (8, 8, 3)),
    ('fashion_mnist', (28, 28, 1)), ('tfds:cifar10', (32, 32, 3))])
@pytest.mark.parametrize('conditional', [False, True])
def test_default_networks_have_the_data_shape(dataset, shape, conditional):
  info = Info(dataset, shape, 'points' if len(shape) == 1 else 'image', 10)
  c = get_config(dataset)
  c.gan.conditional = conditional
  c.gan.spectral_norm = True
  g, d = gan.build_networks(c, info)
  labels = jnp.zeros((3,), jnp.int32) if conditional else None
  z = jnp.zeros((3, c.model.latent_dim))
  g_vars = jax.eval_shape(g.init, jax.random.PRNGKey(0), z, labels)
  x = jax.eval_shape(g.apply, g_vars, z, labels)
  assert x.shape == (3, *shape)
  d_vars = jax.eval_shape(lambda k: d.init(k, jnp.zeros(x.shape), labels), jax.random.PRNGKey(0))
  assert 'batch_stats' in d_vars  # spectral-norm vectors
  logits = jax.eval_shape(lambda v: d.apply(v, jnp.zeros(x.shape), labels), d_vars)
  assert logits.shape == (3,)


def test_conv_generator_rejects_shapes_it_cannot_reach():
  g = ConvGenerator(image_shape=(28, 28, 1), channels=(8, 8, 8, 8))  # 28 / 8 is not whole
  with pytest.raises(ValueError, match='cannot be reached'):
    g.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))


def test_conditioning_requires_labels_and_unconditional_refuses_them():
  g = Generator(body=MLP(widths=(4,), out_dim=2), out_shape=(2,), num_classes=3)
  with pytest.raises(ValueError, match='pass labels'):
    g.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
  d = Discriminator(trunk=MLP(widths=(4,)))
  with pytest.raises(ValueError, match='labels=None'):
    d.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1,), jnp.int32))


def test_discriminator_treats_examples_independently():
  # R1 per example and device-count independence both rely on this.
  _, d = gan.build_networks(small_config('digits', conditional=True, spectral_norm=True), DIGITS)
  batch = make_batch(DIGITS, 4)
  variables = d.init(jax.random.PRNGKey(0), batch['x'], batch['label'])
  x2 = batch['x'].at[1:].set(-batch['x'][1:])
  apply = jax.jit(d.apply)
  a = apply(variables, batch['x'], batch['label'])
  b = apply(variables, x2, batch['label'])
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
  assert not np.allclose(a[1:], b[1:])


# ---------------------------------------------------------------- the step, exactly


class ConstantBody(nn.Module):
  """A generator body that ignores z: its fakes are one learned point, known to the test."""

  @nn.compact
  def __call__(self, z):
    c = self.param('c', lambda k: jnp.array([0.3, -0.2]))
    return jnp.broadcast_to(c, (z.shape[0], 2))


@pytest.mark.parametrize('loss', ['minimax', 'non_saturating', 'hinge'])
def test_one_step_matches_the_formula(loss):
  lr, gamma = 0.1, 0.7
  g = Generator(body=ConstantBody(), out_shape=(2,))
  d = Discriminator(trunk=MLP(widths=(8, 8), activation='tanh'))
  opt = optax.sgd(lr)
  batch = make_batch(POINTS, 8)
  state = gan.init_state(g, d, opt, opt, jax.random.PRNGKey(0), batch, latent_dim=2)
  step = gan.make_train_step(g, d, opt, opt, latent_dim=2, loss=loss, r1_gamma=gamma, ema_decay=0.9)
  new, metrics = jax.jit(step)(state, batch)

  d_loss, g_loss = losses.gan_losses(loss)
  g0, d0 = state.params['generator'], state.params['discriminator']
  fake = jnp.broadcast_to(g0['body']['c'], (8, 2))
  x = batch['x']

  def d_objective(p):
    logit = lambda v: d.apply({'params': p}, v)
    grads = jax.vmap(jax.grad(lambda v: logit(v[None])[0]))(x)
    r1 = jnp.sum(grads ** 2, axis=-1)
    return jnp.mean(d_loss(logit(x), logit(fake))) + 0.5 * gamma * jnp.mean(r1)

  d1 = jax.tree.map(lambda p, gr: p - lr * gr, d0, jax.grad(d_objective)(d0))
  chex.assert_trees_all_close(new.params['discriminator'], d1, rtol=1e-5, atol=1e-6)

  def g_objective(p):  # against the discriminator after its update
    fake = jnp.broadcast_to(p['body']['c'], (8, 2))
    return jnp.mean(g_loss(d.apply({'params': d1}, fake)))

  g1 = jax.tree.map(lambda p, gr: p - lr * gr, g0, jax.grad(g_objective)(g0))
  chex.assert_trees_all_close(new.params['generator'], g1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics['g_loss'], g_objective(g0), rtol=1e-5)
  real_logits = d.apply({'params': d0}, x)
  np.testing.assert_allclose(metrics['d_real'], jnp.mean(jax.nn.sigmoid(real_logits)), rtol=1e-5)
  # EMA warm-up at step 0: decay = min(0.9, 1/10).
  chex.assert_trees_all_close(
      new.ema, {'generator': jax.tree.map(lambda a, b: 0.1 * a + 0.9 * b, g0, g1)}, rtol=1e-6)
  assert int(new.step) == 1


def _one_step_d_update(**step_options):
  """``step_index -> (D params after one step, metrics)`` from a fixed state, compiled once."""
  # Plain SGD, so the update is proportional to the gradient (Adam's first step is not).
  g, d = gan.build_networks(small_config(), POINTS)
  opt = optax.sgd(0.1)
  batch = make_batch(POINTS)
  state = gan.init_state(g, d, opt, opt, jax.random.PRNGKey(0), batch, latent_dim=3)
  step = jax.jit(gan.make_train_step(g, d, opt, opt, latent_dim=3, **step_options))

  def run(step_index):
    new, metrics = step(state.replace(step=jnp.asarray(step_index, jnp.int32)), batch)
    return new.params['discriminator'], metrics

  return run


def test_lazy_r1_applies_gamma_times_k_on_schedule_and_nothing_off_schedule():
  lazy = _one_step_d_update(r1_gamma=0.5, r1_every=3)
  eager = _one_step_d_update(r1_gamma=1.5, r1_every=1)
  plain = _one_step_d_update(r1_gamma=0.0)
  # Step 3 is on schedule: the same update as γ·k every step.
  on, _ = lazy(3)
  chex.assert_trees_all_close(on, eager(3)[0], rtol=1e-5, atol=1e-7)
  plain_on, m_plain = plain(3)
  assert not np.allclose(on['trunk']['Dense_0']['kernel'], plain_on['trunk']['Dense_0']['kernel'])
  # Step 4 is off schedule: the plain update, but R1 is still measured.
  off, m_off = lazy(4)
  chex.assert_trees_all_close(off, plain(4)[0], rtol=1e-5, atol=1e-7)
  assert float(m_off['r1']) > 0
  # With γ = 0 R1 is neither computed nor logged.
  assert 'r1' not in m_plain


def test_n_critic_discriminator_updates_per_generator_update():
  family = gan.build_family(small_config(n_critic=3), POINTS)
  batch = make_batch(POINTS)
  state = family.init(jax.random.PRNGKey(0), batch)
  step = jax.jit(family.train_step)
  for _ in range(2):
    state, _ = step(state, batch)
  assert int(state.opt_state['discriminator'][0].count) == 6
  assert int(state.opt_state['generator'][0].count) == 2


def test_spectral_norm_vectors_advance_once_per_discriminator_update():
  # With frozen weights, u after the run must be exactly n_critic * steps power
  # iterations from its initial value: the G step and R1 must not advance it.
  c = small_config(spectral_norm=True, n_critic=2, r1_gamma=1.0)
  g, d = gan.build_networks(c, POINTS)
  frozen = optax.sgd(0.0)
  batch = make_batch(POINTS)
  state = gan.init_state(g, d, frozen, frozen, jax.random.PRNGKey(0), batch, latent_dim=3)
  step = jax.jit(gan.make_train_step(g, d, frozen, frozen, latent_dim=3, n_critic=2, r1_gamma=1.0))
  for _ in range(3):
    state, _ = step(state, batch)
  kernel = np.asarray(state.params['discriminator']['trunk']['Dense_1']['kernel'], np.float64)
  stats0 = gan.init_state(g, d, frozen, frozen, jax.random.PRNGKey(0), batch, latent_dim=3).model_state
  layer0 = stats0['discriminator']['batch_stats']['trunk']['SpectralNorm_1']
  layer = state.model_state['discriminator']['batch_stats']['trunk']['SpectralNorm_1']
  u = np.asarray(layer0['Dense_1/kernel/u'], np.float64)
  for _ in range(6):
    v = u @ kernel.T
    v /= np.linalg.norm(v)
    u = v @ kernel
    u /= np.linalg.norm(u)
  np.testing.assert_allclose(layer['Dense_1/kernel/u'], u, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(layer['Dense_1/kernel/sigma'], (v @ kernel @ u.T)[0, 0], rtol=1e-5)


# ------------------------------------------------------------- compilation, devices


def _full_options():
  return dict(loss='hinge', n_critic=2, r1_gamma=1.0, r1_every=2, spectral_norm=True,
              conditional=True)


def test_step_compiles_once_over_steps_on_and_off_the_r1_schedule():
  # GAN and DDGAN share the adversarial core's step, which chex counts by its source.
  chex.clear_trace_counter()
  family = gan.build_family(small_config('digits', **_full_options()), DIGITS)
  batch = make_batch(DIGITS)
  state = family.init(jax.random.PRNGKey(0), batch)
  step = jax.jit(chex.assert_max_traces(family.train_step, n=1))
  for i in range(4):
    state, metrics = step(state, make_batch(DIGITS, seed=i))
  assert int(state.step) == 4
  expected = {'d_loss', 'r1', 'd_real', 'd_fake', 'logit_real', 'logit_fake', 'd_grad_norm',
              'g_loss', 'g_grad_norm'}
  assert set(metrics) == expected
  for k, v in metrics.items():
    assert v.shape == () and np.isfinite(v), k


def test_same_seed_same_bits():
  family = gan.build_family(small_config(**_full_options()), POINTS)
  batch = make_batch(POINTS)

  step = jax.jit(family.train_step)

  def run():
    state = family.init(jax.random.PRNGKey(7), batch)
    for _ in range(2):
      state, _ = step(state, batch)
    return state

  chex.assert_trees_all_equal(run(), run())


@pytest.mark.slow
def test_one_and_eight_devices_agree():
  family = gan.build_family(small_config('digits', **_full_options()), DIGITS)
  batches = [make_batch(DIGITS, 16, seed=i) for i in range(3)]

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


@pytest.mark.slow
def test_resumed_run_with_spectral_norm_state_is_bit_identical(tmp_path):
  # Checkpoints must hold both optimisers, the EMA and the spectral-norm vectors.
  c = small_config('digits', **_full_options())
  c.data.batch_size = 16
  c.train.update(steps=6, log_every=2, checkpoint_every=3, progress=False, num_samples=4)
  one_device = jax.devices()[:1]
  unbroken = train.train_and_evaluate(c, str(tmp_path / 'unbroken'), devices=one_device)
  c.train.steps = 3
  train.train_and_evaluate(c, str(tmp_path / 'resumed'), devices=one_device)
  c.train.steps = 6
  resumed = train.train_and_evaluate(c, str(tmp_path / 'resumed'), devices=one_device)
  assert jax.device_get(resumed.model_state)['discriminator']['batch_stats']
  chex.assert_trees_all_equal(jax.device_get(unbroken), jax.device_get(resumed))
  assert os.path.exists(tmp_path / 'resumed' / 'samples' / 'step_0000006.png')


# --------------------------------------------------------------------------- sampling


def test_sampler_uses_ema_generator_and_labels():
  family = gan.build_family(small_config('digits', conditional=True), DIGITS)
  assert family.samplers == {'generator': ({}, 1)}
  assert family.evaluate is None
  state = family.init(jax.random.PRNGKey(0), make_batch(DIGITS))
  sample = jax.jit(family.sample, static_argnums=(2,), static_argnames=('label',))
  key = jax.random.PRNGKey(5)
  x = sample(state, key, 6)
  assert x.shape == (6, 8, 8, 1) and float(jnp.max(jnp.abs(x))) <= 1.0
  np.testing.assert_array_equal(x, sample(state, key, 6))
  assert not np.allclose(sample(state, key, 6, label=2), sample(state, key, 6, label=3))
  # Only the EMA weights matter.
  other = jax.tree.map(lambda p: p + 1.0, state.params)
  np.testing.assert_array_equal(x, sample(state.replace(params=other), key, 6))
  bumped = jax.tree.map(lambda p: p + 0.1, state.ema)
  assert not np.allclose(x, sample(state.replace(ema=bumped), key, 6))
  with pytest.raises(ValueError, match='label must be in'):
    sample(state, key, 6, label=10)


def test_unconditional_sampler_refuses_labels():
  family = gan.build_family(small_config(), POINTS)
  state = family.init(jax.random.PRNGKey(0), make_batch(POINTS))
  assert family.sample(state, jax.random.PRNGKey(0), 5).shape == (5, 2)
  with pytest.raises(ValueError, match='unconditional'):
    family.sample(state, jax.random.PRNGKey(0), 5, label=1)


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize('overrides,match', [
    (dict(loss='wasserstein'), "config.gan.loss must be one of ('minimax', 'non_saturating', "
                               "'hinge'), got 'wasserstein'."),
    (dict(n_critic=0), 'config.gan.n_critic must be a positive integer, got 0.'),
    (dict(r1_every=0), 'config.gan.r1_every must be a positive integer, got 0.'),
    (dict(r1_gamma=-1.0), 'config.gan.r1_gamma must be a non-negative number, got -1.0.'),
])
def test_bad_gan_settings_name_the_key(overrides, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    families.build(small_config(**overrides), POINTS)


def test_conditional_needs_labelled_data():
  unlabelled = dataclasses.replace(DIGITS, num_classes=None)
  with pytest.raises(ValueError, match='config.gan.conditional=True needs labelled data'):
    families.build(small_config('digits', conditional=True), unlabelled)
