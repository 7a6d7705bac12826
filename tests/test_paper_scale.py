"""The paper-scale CIFAR-10 configs: parameter counts against the official networks, the
NCSN++ generator and small discriminator, FIR resampling, counts at start, the benchmark."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from trilemma_jax import benchmark, checkpoints, families, parallel, perf, train
from trilemma_jax import config as config_lib
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families.ddgan import family as ddgan
from trilemma_jax.families.ddgan import ncsnpp
from trilemma_jax.nets import resample

CIFAR10 = benchmark.PAPER_DATASET

# Counted by instantiating the official PyTorch networks (NVlabs/denoising-diffusion-gan,
# score_sde/models) with the arguments of their CIFAR-10 command; docs/paper_scale.md.
OFFICIAL_G = 48_432_515
OFFICIAL_D = 12_741_633
# The official discriminator's 3x3 conv also sees a minibatch-stddev channel, left out here.
MBSTD_WEIGHTS = 9 * 512


def counts(family_name):
  config = families.get_config(family_name, 'tfds:cifar10')
  return checkpoints.parameter_counts(families.build(config, CIFAR10), CIFAR10)


def test_ddgan_cifar10_has_the_official_parameter_counts():
  assert counts('ddgan') == {'generator': OFFICIAL_G,
                             'discriminator': OFFICIAL_D - MBSTD_WEIGHTS}


def test_ddgan_cifar10_config_is_the_official_recipe():
  c = families.get_config('ddgan', 'tfds:cifar10')
  im, m, d = c.model.image, c.model, c.ddgan
  assert im.arch == 'ncsnpp'
  assert (im.ch, tuple(im.ch_mult), im.num_res_blocks, tuple(im.attn_resolutions)) == (
      128, (1, 2, 2, 2), 2, (16,))
  assert (m.latent_dim, m.z_emb_dim, m.mapping_layers, m.time_dim) == (100, 256, 4, 256)
  assert (d.num_steps, d.beta_min, d.beta_max, d.r1_gamma, d.r1_every, d.n_critic) == (
      4, 0.1, 20.0, 0.02, 15, 1)
  assert (c.optim.g_lr, c.optim.d_lr, c.optim.b1, c.optim.b2) == (1.6e-4, 1.25e-4, 0.5, 0.9)
  assert c.optim.cosine_decay and c.optim.min_lr == 1e-5
  assert (c.ema.decay, c.ema.warmup) == (0.9999, False)
  assert c.data.batch_size == 4 * 64  # 64 per GPU on 4 GPUs
  assert c.train.steps == 1800 * 50_000 // 256  # 1,800 epochs


def test_every_paper_scale_config_has_its_documented_size():
  assert counts('ddpm') == {'denoiser': 35_746_307}  # Ho et al.: 35.7M
  gan, vae = counts('gan'), counts('vae')
  assert round(gan['generator'] / 1e5) == 175 and round(gan['discriminator'] / 1e5) == 105
  assert round(vae['vae'] / 1e5) == 287


def test_parameter_counts_are_of_the_trained_parameters_only():
  # The GAN's spectral norm keeps power-iteration vectors; they are not parameters.
  config = families.get_config('gan', 'digits')
  info = DatasetInfo(name='digits', shape=(8, 8, 1), kind='image', num_classes=10,
                     num_train=100, num_test=100, levels=17)
  family = families.build(config, info)
  state = jax.jit(family.init)(jax.random.PRNGKey(0), checkpoints.example_batch(info))
  assert jax.tree.leaves(state.model_state)
  expected = {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in state.params.items()}
  assert checkpoints.parameter_counts(family, info) == expected
  assert checkpoints.format_counts({'generator': 48_432_515, 'discriminator': 12_737_025}) == (
      'generator 48.43M + discriminator 12.74M = 61.17M')
  assert checkpoints.format_counts({'vae': 1234}) == 'vae 1,234'


# ------------------------------------------------------------- FIR resampling


def upfirdn_reference(x, taps, up, down, pad0, pad1):
  """One channel of StyleGAN2's upfirdn2d written plainly: zero-insert, pad, correlate, decimate."""
  k = np.outer(taps, taps)
  h, w = x.shape
  u = np.zeros((h * up, w * up))
  u[::up, ::up] = x
  u = np.pad(u, ((pad0, pad1), (pad0, pad1)))
  n = k.shape[0]
  out = np.array([[np.sum(u[i:i + n, j:j + n] * k[::-1, ::-1])
                   for j in range(u.shape[1] - n + 1)] for i in range(u.shape[0] - n + 1)])
  return out[::down, ::down]


@pytest.mark.parametrize('taps', [(1, 3, 3, 1), (1, 2, 3, 4)], ids=['binomial', 'asymmetric'])
def test_fir_resampling_matches_upfirdn(taps):
  x = np.random.default_rng(0).normal(size=(1, 8, 8, 2)).astype(np.float32)
  k = np.asarray(taps, np.float64) / np.sum(taps)
  for c in range(2):
    # The padding StyleGAN2 uses for a 4-tap kernel and factor 2.
    down = upfirdn_reference(x[0, :, :, c], k, 1, 2, 1, 1)
    np.testing.assert_allclose(resample.downsample_2d(jnp.asarray(x), taps)[0, :, :, c], down,
                               atol=1e-5)
    up = upfirdn_reference(x[0, :, :, c], k * 2, 2, 1, 2, 1)
    np.testing.assert_allclose(resample.upsample_2d(jnp.asarray(x), taps)[0, :, :, c], up,
                               atol=1e-5)


def test_resample_conv_down_is_the_filter_then_a_strided_conv():
  x = np.random.default_rng(1).normal(size=(1, 8, 8, 2)).astype(np.float32)
  conv = resample.ResampleConv(3)
  variables = conv.init(jax.random.PRNGKey(0), jnp.asarray(x))
  w = np.asarray(variables['params']['conv']['kernel'])  # [3, 3, in, out]
  bias = np.asarray(variables['params']['conv']['bias']) + 0.5
  variables = {'params': {'conv': {'kernel': w, 'bias': bias}}}
  k = np.array([1, 3, 3, 1]) / 8
  blurred = np.stack([upfirdn_reference(x[0, :, :, c], k, 1, 1, 2, 2) for c in range(2)], -1)
  expected = np.array([[np.einsum('abc,abco->o', blurred[2 * i:2 * i + 3, 2 * j:2 * j + 3], w)
                        for j in range(4)] for i in range(4)]) + bias
  np.testing.assert_allclose(conv.apply(variables, jnp.asarray(x))[0], expected, atol=1e-5)


def test_resample_conv_shapes_parameters_and_errors():
  x = jnp.ones((2, 8, 8, 3))
  for up, side in ((True, 16), (False, 4)):
    conv = resample.ResampleConv(5, up=up)
    variables = conv.init(jax.random.PRNGKey(0), x)
    assert conv.apply(variables, x).shape == (2, side, side, 5)
    counts = sum(v.size for v in jax.tree.leaves(variables))
    assert counts == 3 * 3 * 3 * 5 + 5  # a 3x3 conv's kernel and bias
  # Up: the bias is added after the filter, so it is the same at every pixel.
  up = resample.ResampleConv(5, up=True)
  variables = jax.tree.map(jnp.zeros_like, up.init(jax.random.PRNGKey(0), x))
  variables['params']['bias'] = jnp.arange(5.0)
  np.testing.assert_array_equal(up.apply(variables, x), jnp.broadcast_to(jnp.arange(5.0),
                                                                         (2, 16, 16, 5)))
  with pytest.raises(ValueError, match='even height and width'):
    resample.downsample_2d(jnp.ones((1, 7, 8, 1)))
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    resample.upsample_2d(jnp.ones((8, 8)))


# --------------------------------------------------------- the NCSN++ networks


def perturbed(variables, seed, scale=0.05):
  """Variables with noise added to every leaf: the zero-initialised output conv makes
  the network at initialisation a constant, which would hide what a test looks for."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda v: v + scale * rng.standard_normal(v.shape, np.float32),
                      variables)


SMALL_G = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), z_emb_dim=16,
               mapping_layers=1)


def test_ncsnpp_generator_uses_z_and_t_and_keeps_examples_apart():
  g = ncsnpp.NCSNppGenerator(**SMALL_G)
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  x = jax.random.normal(k[0], (3, 8, 8, 3))
  z = jax.random.normal(k[1], (3, 5))
  t = jnp.array([1, 2, 3])
  variables = jax.jit(g.init)(perf.param_init_key(k[2]), x, z, t)
  apply = jax.jit(g.apply)
  # At initialisation the output conv is zero: G(x_t, z, t) = tanh(0).
  np.testing.assert_array_equal(apply(variables, x, z, t), 0.0)
  variables = perturbed(variables, 3)
  out = apply(variables, x, z, t)
  assert out.shape == x.shape and float(jnp.max(jnp.abs(out))) > 1e-3
  other_z = apply(variables, x, z[::-1], t)
  assert float(jnp.max(jnp.abs(other_z[0] - out[0]))) > 1e-4
  other_t = apply(variables, x, z, jnp.array([3, 2, 1]))
  assert float(jnp.max(jnp.abs(other_t[0] - out[0]))) > 1e-4
  # No batch statistics: an example's output does not depend on the rest of the batch.
  np.testing.assert_allclose(apply(variables, x[:1], z[:1], t[:1]), out[:1], atol=1e-5)
  names = set(variables['params'])
  assert {'down_1_0_attn', 'up_1_attn', 'mid_attn', 'pyramid_0', 'downsample_0',
          'upsample_1'} <= names
  with pytest.raises(ValueError, match='cannot be halved'):
    g.init(k[2], jnp.zeros((1, 7, 7, 3)), z[:1], t[:1])


def test_down_conv_discriminator_keeps_examples_apart():
  d = ncsnpp.DownConvDiscriminator(channels=(8, 16, 16), t_emb_dim=8)
  k = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(k[0], (3, 8, 8, 3))
  t = jnp.array([1, 2, 3])
  variables = perturbed(jax.jit(d.init)(perf.param_init_key(k[1]), x, x, t), 2)
  apply = jax.jit(d.apply)
  logits = apply(variables, x, x[::-1], t)
  assert logits.shape == (3,)
  np.testing.assert_allclose(apply(variables, x[:1], x[2:], t[:1]), logits[:1], atol=1e-5)
  with pytest.raises(ValueError, match='not divisible by 4'):
    d.init(k[1], jnp.zeros((1, 6, 6, 3)), jnp.zeros((1, 6, 6, 3)), t[:1])


def test_small_ncsnpp_ddgan_trains_a_step():
  c = families.get_config('ddgan', 'digits')
  im = c.model.image
  im.arch, im.ch, im.ch_mult, im.attn_resolutions = 'ncsnpp', 8, (1, 2), (4,)
  im.d_channels = (8, 16)
  c.model.z_emb_dim, c.model.mapping_layers, c.model.time_dim = 8, 1, 8
  c.data.batch_size = 4
  c.ddgan.n_critic = 1
  c.ddgan.r1_gamma, c.ddgan.r1_every = 0.02, 1  # R1's double backward through NCSN++'s D
  info = DatasetInfo(name='digits', shape=(8, 8, 1), kind='image', num_classes=10,
                     num_train=100, num_test=100, levels=17)
  family = families.build(c, info)
  g, _ = ddgan.build_networks(c, info, ddgan.build_parts(c, info).schedule)
  assert isinstance(g, ncsnpp.NCSNppGenerator)
  batch = {'x': jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1), minval=-1, maxval=1),
           'label': jnp.zeros((4,), jnp.int32)}
  state = parallel.jit_init(family.init, parallel.make_mesh(jax.devices()[:1]))(
      jax.random.PRNGKey(0), batch)
  step = jax.jit(family.train_step)
  new = state
  # Three steps: the zero-initialised output convs (official) pass no gradient to the
  # layers before them until they have moved themselves.
  for _ in range(3):
    new, metrics = step(new, batch)
    assert all(np.isfinite(float(v)) for v in jax.tree.leaves(metrics))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert all(jax.tree.leaves(moved)), moved
  samples = family.sample(new, jax.random.PRNGKey(1), 3)
  assert samples.shape == (3, 8, 8, 1)


def test_an_unknown_image_arch_is_rejected_and_old_runs_read_as_unet():
  c = families.get_config('ddgan', 'digits')
  c.model.image.arch = 'resnet'
  with pytest.raises(ValueError, match='model.image.arch'):
    families.build(c)
  # The config.json of a run saved before the two keys existed.
  saved = json.loads(families.get_config('ddgan', 'digits').to_json_best_effort())
  del saved['model']['image']['arch'], saved['model']['image']['attn_resolutions']
  old = ml_collections.ConfigDict(saved)
  assert config_lib.changed_keys(saved, families.get_config('ddgan', 'digits')) == []
  info = DatasetInfo(name='digits', shape=(8, 8, 1), kind='image', num_classes=10,
                     num_train=100, num_test=100, levels=17)
  families.build(old, info)  # validates, as evaluating a saved run does
  g, _ = ddgan.build_networks(old, info, ddgan.build_parts(old, info).schedule)
  assert type(g).__name__ == 'UNetGenerator'


# ------------------------------------------------------ at start, benchmark


def test_a_run_saves_its_parameter_counts(tmp_path, capsys):
  c = families.get_config('gan', 'grid25', {'train.steps': 2, 'train.log_every': 2,
                                            'train.num_samples': 16})
  train.train_and_evaluate(c, str(tmp_path))
  saved = json.load(open(tmp_path / 'parameters.json'))
  info = DatasetInfo(name='grid25', shape=(2,), kind='points', num_classes=25, num_train=1,
                     num_test=1, levels=None)
  assert saved == checkpoints.parameter_counts(families.build(c), info)
  assert saved['generator'] > 0 and saved['discriminator'] > 0
  assert f'parameters: {checkpoints.format_counts(saved)}' in capsys.readouterr().out


def test_paper_benchmark_times_a_config_and_its_samplers():
  row = benchmark.bench_paper('gan', batch_size=2, sample_batch=2, windows=1,
                              peak_gflops=100.0)
  assert row['batch_size'] == 2 and row['steps_per_second'] > 0
  assert row['compile_seconds'] > 0 and row['flops_per_step'] > 0
  assert row['params_per_network'] == counts('gan')
  assert row['params'] == sum(row['params_per_network'].values())
  sampler = row['samplers']['generator']
  assert sampler['nfe'] == 1 and sampler['samples_per_second'] > 0
  assert sampler['seconds_per_batch'] == pytest.approx(2 / sampler['samples_per_second'])
  with pytest.raises(ValueError, match='No paper-scale config'):
    benchmark.run_paper(['ddgan', 'flow'])
