"""DDPM: loss, bound, U-Net size, and the family contract (recompiles, 1 vs 8 devices)."""

import math
import re

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from trilemma_jax import data
from trilemma_jax import diffusion as dm
from trilemma_jax import families, parallel
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families.ddpm import family as ddpm

# Stand-ins for the datasets the small configs are made for (a config names its dataset).
POINTS = DatasetInfo(name='grid25', shape=(2,), kind='points', num_classes=None, num_train=100,
                     num_test=100, levels=None)
IMAGES = DatasetInfo(name='digits', shape=(8, 8, 1), kind='image', num_classes=None,
                     num_train=100, num_test=100, levels=17)
CIFAR10 = DatasetInfo(name='tfds:cifar10', shape=(32, 32, 3), kind='image', num_classes=10,
                      num_train=50_000, num_test=10_000, levels=256)
MNIST = DatasetInfo(name='tfds:mnist', shape=(28, 28, 1), kind='image', num_classes=10,
                    num_train=60_000, num_test=10_000, levels=256)


def get_config(dataset):
  return families.get_config('ddpm', dataset)


def small_config(dataset='grid25'):
  c = get_config(dataset)
  c.ddpm.timesteps = 20
  c.ddpm.ddim_steps = (5, 2)
  if 'points' in c.model:
    c.model.points.hidden = (32, 32)
    c.model.points.time_dim = 16
  else:
    c.model.image.ch = 8
    c.model.image.num_groups = 4
    c.model.image.dropout = 0.1
  c.ddpm.vb_terms = 0
  return c


def oracle(prediction, schedule):
  """A perfect network for a fixed batch: its 'params' are that batch's x0."""
  def apply_fn(x0, xt, t, rng):
    del rng
    eps = dm.predict_eps_from_x0(schedule, xt, t, x0)
    return dm.prediction_target(schedule, prediction, x0, t, eps)
  return apply_fn


# ------------------------------------------------------------------------- loss


@pytest.mark.parametrize('prediction', dm.PREDICTIONS)
def test_loss_is_zero_for_a_perfect_predictor(prediction):
  schedule = dm.linear_schedule(100)
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (16, 4, 4, 1), minval=-1, maxval=1)
  loss = ddpm.diffusion_loss(oracle(prediction, schedule), x0, schedule, x0,
                             jax.random.PRNGKey(1), prediction=prediction)
  assert loss.shape == (16,)
  np.testing.assert_allclose(loss, 0.0, atol=1e-7)
  # ... and clearly positive for a network that is wrong about x0.
  wrong = ddpm.diffusion_loss(oracle(prediction, schedule), -x0, schedule, x0,
                              jax.random.PRNGKey(1), prediction=prediction)
  assert float(jnp.mean(wrong)) > 1e-3


def test_loss_draws_every_timestep_uniformly():
  schedule = dm.linear_schedule(10)
  seen = []

  def record(params, xt, t, rng):
    seen.append(np.asarray(t))  # run eagerly: t is concrete
    return jnp.zeros_like(xt)

  ddpm.diffusion_loss(record, None, schedule, jnp.zeros((20_000, 1)), jax.random.PRNGKey(2))
  counts = np.bincount(seen[0], minlength=11)
  assert counts[0] == 0 and len(counts) == 11
  assert counts[1:].min() > 1_800  # 2,000 expected per step


# ------------------------------------------------------------------ the bound


def test_kl_term_times_visit_each_step_equally():
  for T, K in [(50, 49), (50, 7), (1000, 100), (9, 3)]:
    visits = np.zeros(T + 1, int)
    for offset in range(T - 1):
      t = np.asarray([ddpm._kl_term_times(T, K, k, offset) for k in range(K)])
      assert len(set(t)) == K and t.min() >= 2 and t.max() <= T
      visits[t] += 1
    np.testing.assert_array_equal(visits[2:], K)  # probability K / (T - 1) each


@pytest.mark.parametrize('variance', dm.REVERSE_VARIANCES)
def test_bound_of_a_perfect_predictor_matches_closed_form(variance):
  """With x0_hat = x0 each KL term only compares variances: ½ Σ (r - 1 - log r), r = β̃_t / σ_t²."""
  T, levels = 50, 17
  schedule = dm.linear_schedule(T)
  width = 2.0 / (levels - 1)
  x0 = jnp.asarray(np.random.default_rng(0).integers(0, levels, (3, 2, 2, 1)) * width - 1.0,
                   jnp.float32)
  terms = ddpm.variational_bound(oracle('x0', schedule), x0, schedule, x0, jax.random.PRNGKey(3),
                                 prediction='x0', variance=variance, bin_width=width)
  ref = {k: np.asarray(getattr(schedule, k), np.float64) for k in ('betas', 'alpha_bars')}
  beta, ab = ref['betas'], ref['alpha_bars']
  beta_tilde = (1 - ab[:-1]) / (1 - ab[1:]) * beta[1:]  # index t - 1
  sigma2 = beta[1:] if variance == 'beta' else np.concatenate([[beta_tilde[1]], beta_tilde[1:]])
  r = beta_tilde[1:] / sigma2[1:]  # t = 2..T
  dims = 4
  want_diffusion = dims * np.sum(0.5 * (r - 1 - np.log(r)))
  x = np.asarray(x0, np.float64).reshape(3, -1)
  want_prior = np.sum(0.5 * (ab[-1] * x ** 2 + (1 - ab[-1]) - 1 - np.log(1 - ab[-1])), axis=1)
  sd = math.sqrt(sigma2[0])
  upper = np.where(x > 1 - width / 2, np.inf, x + width / 2)
  lower = np.where(x < -1 + width / 2, -np.inf, x - width / 2)
  want_decoder = -np.sum(np.log(stats.norm.cdf(upper, x, sd) - stats.norm.cdf(lower, x, sd)),
                         axis=1)
  np.testing.assert_allclose(terms['diffusion'], want_diffusion, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(terms['prior'], want_prior, rtol=1e-3, atol=1e-9)
  np.testing.assert_allclose(terms['decoder'], want_decoder, rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(terms['total'], terms['prior'] + terms['diffusion'] + terms['decoder'])
  # The subset estimate with all terms equals the exact sum.
  full = ddpm.variational_bound(oracle('x0', schedule), x0, schedule, x0, jax.random.PRNGKey(3),
                                prediction='x0', variance=variance, bin_width=width,
                                num_terms=T - 1)
  np.testing.assert_allclose(full['diffusion'], terms['diffusion'], rtol=1e-6)


def test_bound_rejects_too_many_terms():
  schedule = dm.linear_schedule(10)
  with pytest.raises(ValueError, match='num_terms'):
    ddpm.variational_bound(oracle('x0', schedule), jnp.zeros((1, 2)), schedule,
                           jnp.zeros((1, 2)), jax.random.PRNGKey(0), num_terms=10)


# ------------------------------------------------------------------- networks


def test_ho_cifar10_unet_has_35_7m_parameters():
  c = get_config('tfds:cifar10')
  net = ddpm.make_denoiser(c, CIFAR10)
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                          jnp.zeros((1,), jnp.int32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
  assert round(count / 1e5) == 357, count  # Ho et al.: 35.7M


def test_unet_shapes_dropout_and_errors(image_family_and_state):
  _, state = image_family_and_state
  net = ddpm.make_denoiser(small_config('digits'), IMAGES)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 1))
  t = jnp.array([1, 5, 20])
  apply = jax.jit(net.apply, static_argnames='train')
  # The output convolution starts at zero (Ho et al.); perturb it to see the network.
  np.testing.assert_array_equal(apply({'params': state.params[ddpm.NET]}, x, t), 0.0)
  params = jax.tree.map(lambda p: p + 0.05, {'params': state.params[ddpm.NET]})
  out = apply(params, x, t)
  assert out.shape == x.shape
  a = apply(params, x, t, train=True, rngs={'dropout': jax.random.PRNGKey(2)})
  b = apply(params, x, t, train=True, rngs={'dropout': jax.random.PRNGKey(3)})
  assert not np.allclose(a, b)
  assert not np.allclose(out, apply(params, x, t + 1))  # it is told the time step
  with pytest.raises(ValueError, match='cannot be halved'):
    jax.eval_shape(net.init, jax.random.PRNGKey(1), jnp.zeros((1, 7, 7, 1)), jnp.ones((1,)))


# ------------------------------------------------------------------ the family


def _batch(info, n, seed=0):
  rng = np.random.default_rng(seed)
  if info.kind == 'points':
    x = rng.normal(size=(n, *info.shape))
  else:
    x = rng.integers(0, info.levels, (n, *info.shape)) * (2 / (info.levels - 1)) - 1
  return {'x': jnp.asarray(x, jnp.float32), 'label': jnp.zeros((n,), jnp.int32)}


@pytest.fixture(scope='module')
def point_family():
  return ddpm.build_family(small_config('grid25'), POINTS)


def test_train_step_compiles_once_and_is_deterministic(point_family):
  fam = point_family
  state = fam.init(jax.random.PRNGKey(0), _batch(POINTS, 8))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(state, batch):
    return fam.train_step(state, batch)

  first, metrics = step(state, _batch(POINTS, 8, seed=1))
  again, _ = step(state, _batch(POINTS, 8, seed=1))
  chex.assert_trees_all_equal(first.params, again.params)
  s = first
  for i in range(3):
    s, metrics = step(s, _batch(POINTS, 8, seed=i + 2))
  assert int(s.step) == 4 and np.isfinite(float(metrics['loss']))
  assert not np.allclose(jax.tree.leaves(s.ema)[0], jax.tree.leaves(state.params)[0])


@pytest.mark.parametrize('info', [
    POINTS, pytest.param(IMAGES, marks=pytest.mark.slow)], ids=['mlp', 'unet_dropout'])
def test_one_vs_eight_devices(info):
  c = small_config('grid25' if info.kind == 'points' else 'digits')
  # One level (GroupNorm, attention, dropout all present) halves the compile time.
  if info.kind == 'image':
    c.model.image.ch_mult, c.model.image.attn_resolutions = (1,), (8,)
  fam = ddpm.build_family(c, info)
  batches = [_batch(info, 16, seed=i) for i in range(3)]
  results = []
  for devices in (jax.devices()[:1], jax.devices()[:8]):
    mesh = parallel.make_mesh(devices)
    state = parallel.jit_init(fam.init, mesh)(jax.random.PRNGKey(0), batches[0])
    step = parallel.jit_train_step(fam.train_step, mesh)
    for b in batches:
      state, _ = step(state, parallel.shard_batch(jax.device_get(b), mesh))
    results.append(jax.device_get(state.params))
  chex.assert_trees_all_close(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_samplers_nfe_and_shapes(point_family):
  fam = point_family
  state = fam.init(jax.random.PRNGKey(0), _batch(POINTS, 4))
  assert list(fam.samplers) == ['ancestral', 'ddim5', 'ddim2']
  net = ddpm.make_denoiser(small_config(), POINTS)
  apply_fn = lambda p, x, t, rng: net.apply({'params': p}, x, t)
  schedule = dm.linear_schedule(20)
  for name, (kwargs, nfe) in fam.samplers.items():
    x = jax.jit(fam.sample, static_argnums=(2,), static_argnames=tuple(kwargs))(
        state, jax.random.PRNGKey(1), 6, **kwargs)
    assert x.shape == (6, 2) and np.all(np.isfinite(x)), name
    _, counted = ddpm.sample(apply_fn, state.ema[ddpm.NET], schedule, jax.random.PRNGKey(1), 6,
                             (2,), **kwargs)
    assert int(counted) == nfe, name


def test_the_ancestral_row_can_be_dropped_and_old_runs_keep_it():
  c = small_config()
  c.ddpm.ancestral = False
  assert list(families.build(c, POINTS).samplers) == ['ddim5', 'ddim2']
  c.ddpm.ddim_steps = ()
  with pytest.raises(ValueError, match=r'ancestral=False with config.ddpm.ddim_steps=\(\) '
                                       'leaves the DDPM no sampler'):
    families.build(c, POINTS)
  saved = small_config().to_dict()  # as a run's config.json reads
  saved['ddpm']['ancestral'] = 'no'
  with pytest.raises(ValueError, match="config.ddpm.ancestral must be True or False, got 'no'"):
    families.build(ml_collections.ConfigDict(saved), POINTS)
  # A run saved before the key existed had the ancestral row.
  del saved['ddpm']['ancestral']
  old = families.build(ml_collections.ConfigDict(saved), POINTS)
  assert list(old.samplers) == ['ancestral', 'ddim5', 'ddim2']


@pytest.fixture(scope='module')
def image_family_and_state():
  c = small_config('digits')
  c.ddpm.vb_terms = 4
  fam = ddpm.build_family(c, IMAGES)
  return fam, jax.jit(fam.init)(jax.random.PRNGKey(0), _batch(IMAGES, 2))


def test_evaluate_returns_per_example_bits_per_dim(image_family_and_state):
  fam, state = image_family_and_state
  batch = _batch(IMAGES, 5)
  out = jax.jit(fam.evaluate)(state, batch, jax.random.PRNGKey(1))
  for key in ('nll_bits_per_dim', 'prior_bits_per_dim', 'diffusion_bits_per_dim',
              'decoder_bits_per_dim'):
    assert out[key].shape == (5,) and np.all(np.isfinite(out[key])), key
  parts = out['prior_bits_per_dim'] + out['diffusion_bits_per_dim'] + out['decoder_bits_per_dim']
  np.testing.assert_allclose(out['nll_bits_per_dim'], parts, rtol=1e-5)
  # A discrete likelihood of 17 levels is positive; an untrained net is far from 0.
  assert np.all(out['nll_bits_per_dim'] > 0)


@pytest.mark.parametrize('dataset', ['grid25', 'ring8', 'digits', 'stacked_digits',
                                     'fashion_mnist', 'tfds:cifar10', 'tfds:mnist'])
def test_configs_validate(dataset):
  c = get_config(dataset)
  info = {'tfds:cifar10': CIFAR10, 'tfds:mnist': MNIST}.get(dataset) or data.load_info(dataset)
  assert families.validate(c, info) is families.get('ddpm')


@pytest.mark.parametrize('key,value,match', [
    ('prediction', 'score', "config.ddpm.prediction must be one of ('eps', 'x0', 'v'), got "
                            "'score'."),
    ('variance', 'learned', "config.ddpm.variance must be one of ('beta', 'beta_tilde'), got "
                            "'learned'."),
    ('schedule', 'sigmoid', "config.ddpm.schedule must be one of ('linear', 'cosine', "
                            "'ddgan_vp'), got 'sigmoid'."),
    ('timesteps', 0, 'config.ddpm.timesteps must be a positive integer, got 0.'),
    ('ddim_steps', (50, 30), 'config.ddpm.ddim_steps[0] must be an integer in 1..20, got 50.'),
    ('vb_terms', 20, 'config.ddpm.vb_terms must be an integer in 0..19, got 20.'),
])
def test_bad_config_is_rejected(key, value, match):
  c = small_config()
  c.ddpm[key] = value
  with pytest.raises(ValueError, match=re.escape(match)):
    families.build(c, POINTS)


def test_bad_learning_rate_decay_is_rejected():
  c = small_config()
  c.optim.decay = 'step'
  with pytest.raises(ValueError, match=re.escape(
      "config.optim.decay must be one of ('constant', 'cosine'), got 'step'.")):
    families.build(c, POINTS)
  c.optim.decay = 'cosine'
  c.train.steps = c.optim.warmup_steps
  with pytest.raises(ValueError, match=re.escape(
      f'config.optim.decay=cosine needs config.train.steps ({c.train.steps}) > '
      f'config.optim.warmup_steps ({c.optim.warmup_steps})')):
    families.build(c, POINTS)
