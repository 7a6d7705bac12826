"""Mixed precision (config.model.compute_dtype): bfloat16 arithmetic in every network of every
family, float32 parameters, optimiser state, losses and samples; the key's validation and
the configs of runs saved before it existed."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from trilemma_jax import checkpoints, data, families, parallel, perf
from trilemma_jax import config as config_lib
from trilemma_jax.families.ddgan import family as ddgan_lib
from trilemma_jax.families.ddpm import family as ddpm_lib
from trilemma_jax.families.gan import family as gan_lib
from trilemma_jax.families.gan.nets import ConvFeatures, Discriminator
from trilemma_jax.families.vae import family as vae_lib
from trilemma_jax.nets.embeddings import TimeEmbedding
from trilemma_jax.train_state import new_rng

BATCH = 16
STEPS = 3

# Tiny networks: compiling the train steps is most of this file's time. The
# digits GAN is conditional with spectral norm (its image default), to cover
# nn.Embed and the spectral-norm state; the one-level U-Nets keep the attention
# of their middle; R1 (a second-order program, the slowest to compile) is
# exercised on the grid25 DDGAN, whose default takes it on every update.
SMALL = {
    ('vae', 'grid25'): {'model.points.hidden': (16, 16)},
    ('vae', 'digits'): {'model.image.channels': (8,), 'model.image.conv_hidden': 16,
                        'model.latent_dim': 4, 'vae.iwae_samples': 2},
    ('gan', 'grid25'): {'model.points.g_widths': (16, 16), 'model.points.d_widths': (16, 16)},
    ('gan', 'digits'): {'model.image.g_channels': (8, 4), 'model.image.d_channels': (4, 8),
                        'model.latent_dim': 4, 'model.embed_dim': 4, 'gan.conditional': True},
    ('ddpm', 'grid25'): {'model.points.hidden': (16, 16), 'model.points.time_dim': 16,
                         'ddpm.timesteps': 10, 'ddpm.ddim_steps': (2,), 'optim.warmup_steps': 1},
    ('ddpm', 'digits'): {'model.image.ch': 8, 'model.image.ch_mult': (1,),
                         'model.image.num_groups': 4, 'ddpm.timesteps': 10,
                         'ddpm.ddim_steps': (2,), 'ddpm.vb_terms': 0, 'optim.warmup_steps': 1},
    ('ddgan', 'grid25'): {'model.points.g_width': 16, 'model.points.g_blocks': 1,
                          'model.points.d_widths': (16,), 'model.num_groups': 4,
                          'model.z_emb_dim': 8, 'model.time_dim': 16, 'model.mapping_layers': 1,
                          'model.latent_dim': 4, 'ddgan.num_steps': 2},
    ('ddgan', 'digits'): {'model.image.ch': 8, 'model.image.ch_mult': (1,),
                          'model.image.d_channels': (8,), 'model.num_groups': 4,
                          'model.z_emb_dim': 8, 'model.time_dim': 16, 'model.mapping_layers': 1,
                          'model.latent_dim': 4, 'ddgan.num_steps': 2, 'ddgan.n_critic': 1,
                          'ddgan.r1_gamma': 0.0},
}
CASES = sorted(SMALL, key=lambda c: (families.BUILTIN.index(c[0]), c[1]))

# Metrics a train step measures at the parameters it starts from (the
# generator's loss of the two-player families is taken after the D update).
# The DDPM U-Net's last convolution starts at zero (Ho et al.), so its output
# and loss at initialisation are the same in any precision; its gradient norm,
# which goes through every layer, is what shows the difference there.
LOSS_AT_INIT = {'vae': ('loss',), 'gan': ('d_loss',), 'ddpm': ('loss', 'grad_norm'),
                'ddgan': ('d_loss',)}


def compile_once(fn):
  """``fn`` jitted as the library compiles programs that run only a few times (on CPU
  without LLVM optimisation): these run three times, and compiling dominates the file."""
  return jax.jit(fn, compiler_options=perf.run_once_compiler_options(jax.devices()[:1]))


def small_config(family, dataset, dtype):
  overrides = {**SMALL[(family, dataset)], 'data.batch_size': BATCH, 'train.steps': 10,
               'model.compute_dtype': dtype}
  return families.get_config(family, dataset, overrides)


def networks(config, info, state):
  """``[(name, forward(params, *inputs), params, inputs, spectral_norm)]`` of the family.

  The forward passes are the modules' own ``apply``, without the family's
  float32 cast, on one batch of inputs shaped as the family feeds them.
  """
  x = jnp.zeros((BATCH, *info.shape), jnp.float32)
  t = jnp.ones((BATCH,), jnp.int32)
  p = state.params
  if config.family == 'vae':
    net = vae_lib.make_net(config, info)
    z = jnp.zeros((BATCH, config.model.latent_dim))
    fwd = lambda params, x, z: net.apply({'params': params}, x, z, method='init_all')
    return [('vae', fwd, p['vae'], (x, z), False)]
  if config.family == 'ddpm':
    net = ddpm_lib.make_denoiser(config, info)
    return [('denoiser', lambda params, x, t: net.apply({'params': params}, x, t),
             p['denoiser'], (x, t), False)]
  z = jnp.zeros((BATCH, config.model.latent_dim))
  if config.family == 'gan':
    g, d = gan_lib.build_networks(config, info)
    labels = jnp.zeros((BATCH,), jnp.int32) if config.gan.conditional else None
    d_state = state.model_state.get('discriminator', {})
    return [('generator', lambda params, z: g.apply({'params': params}, z, labels),
             p['generator'], (z,), False),
            ('discriminator', lambda params, x: d.apply({'params': params, **d_state}, x, labels),
             p['discriminator'], (x,), config.gan.spectral_norm)]
  parts = ddgan_lib.build_parts(config, info)
  g, d = parts.generator, parts.discriminator
  return [('generator', lambda params, x, z, t: g.apply({'params': params}, x, z, t),
           p['generator'], (x, z, t), False),
          ('discriminator', lambda params, x, t: d.apply({'params': params}, x, x, t),
           p['discriminator'], (x, t), False)]


def equations(jaxpr):
  """Every equation of a jaxpr, including those of the jaxprs nested in its equations
  (pjit, custom_jvp_call, scan)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        if hasattr(sub, 'eqns'):
          yield from equations(sub)


def float_leaves(tree):
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


@pytest.fixture(scope='module', params=CASES, ids=lambda c: '-'.join(c))
def case(request):
  """Both precisions of one family on one dataset, from the same parameters and batches."""
  family_name, dataset = request.param
  info = data.load_info(dataset)
  x, label = data.load_arrays(dataset, 'train', limit=BATCH * STEPS)
  batches = [{'x': jnp.asarray(x[i::STEPS]), 'label': jnp.asarray(label[i::STEPS])}
             for i in range(STEPS)]
  example = checkpoints.example_batch(info)
  out = {'info': info}
  state = None
  for dtype in ('float32', 'bfloat16'):
    config = small_config(family_name, dataset, dtype)
    family = families.build(config, info)
    if state is None:
      state = parallel.jit_init(family.init, parallel.make_mesh(jax.devices()[:1]))(
          new_rng(0), example)
    # One start for both precisions: parameters do not depend on the compute
    # dtype (test_spectral_norm_... checks the one layer where they could), and
    # the state bfloat16 would build is compared with it in shapes and dtypes.
    abstract_init = jax.eval_shape(family.init, new_rng(0), example)
    step = compile_once(family.train_step)
    # float32 only needs the first step (the losses at initialisation).
    runs = batches if dtype == 'bfloat16' else batches[:1]
    history, trained = [], state
    for batch in runs:
      trained, metrics = step(trained, batch)
      history.append(jax.device_get(metrics))
    out[dtype] = {'config': config, 'family': family, 'init': state, 'state': trained,
                  'abstract_init': abstract_init, 'metrics': history}
  return out


def test_bfloat16_trains_with_float32_parameters_and_optimiser_state(case):
  run = case['bfloat16']
  assert len(run['metrics']) == STEPS
  for metrics in run['metrics']:
    assert all(np.isfinite(v) for v in metrics.values()), metrics
  state = run['state']
  assert int(state.step) == STEPS
  # bfloat16's own init would give the shapes and dtypes of the state both runs start from.
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shapes(run['abstract_init']) == shapes(run['init'])
  for part in ('params', 'opt_state', 'ema'):
    leaves = float_leaves(getattr(state, part))
    assert leaves and all(x.dtype == jnp.float32 for x in leaves), part
  # The spectral-norm vectors and sigmas of the digits GAN's discriminator.
  stats = float_leaves(state.model_state)
  assert all(x.dtype == jnp.float32 for x in stats)
  config = run['config']
  assert bool(stats) == (config.family == 'gan' and config.gan.spectral_norm)
  assert not all(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(state.params), jax.tree.leaves(run['init'].params)))


def test_every_network_computes_in_bfloat16(case):
  run = case['bfloat16']
  for name, forward, params, inputs, spectral_norm in networks(run['config'], case['info'],
                                                               run['init']):
    eqns = list(equations(jax.make_jaxpr(forward)(params, *inputs)))
    products = [e for e in eqns if e.primitive.name in ('dot_general', 'conv_general_dilated')]
    low = [e for e in products if all(v.aval.dtype == jnp.bfloat16 for v in e.invars)]
    rest = [e for e in products if e not in low]
    # One bfloat16 product per Dense or Conv kernel at least (attention adds two).
    kernels = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
               if path[-1].key == 'kernel']
    assert len(low) >= len(kernels) > 0, name
    # The only float32 products are spectral norm's power iteration, vector by matrix.
    assert all(spectral_norm and any(v.aval.shape[0] == 1 for v in e.invars) for e in rest), (
        name, [str(e) for e in rest])
    # Sinusoids, Fourier features and the attention softmax stay float32.
    for e in eqns:
      if e.primitive.name in ('sin', 'cos', 'exp'):
        assert e.invars[0].aval.dtype == jnp.float32, (name, str(e))
    if run['config'].family in ('ddpm', 'ddgan'):
      assert any(e.primitive.name == 'sin' for e in eqns), name
    if run['config'].family == 'ddpm' and case['info'].kind == 'image':
      assert any(e.primitive.name == 'exp' for e in eqns), 'no attention softmax'
    # The modules return bfloat16 and the family casts at its boundary; only
    # SkipGenerator mixes its body's output with x_t in float32 itself.
    skip = run['config'].family == 'ddgan' and run['config'].ddgan.skip_generator
    expected = jnp.float32 if skip and name == 'generator' else jnp.bfloat16
    outputs = jax.tree.leaves(jax.eval_shape(forward, params, *inputs))
    assert all(o.dtype == expected for o in outputs), name


def test_bfloat16_samples_are_float32(case):
  run = case['bfloat16']
  family = run['family']
  sampler, (kwargs, _) = next(iter(family.samplers.items()))
  x = compile_once(lambda s, k: family.sample(s, k, 8, **kwargs))(run['state'],
                                                                  jax.random.PRNGKey(1))
  assert x.dtype == jnp.float32 and x.shape == (8, *case['info'].shape), sampler
  assert np.isfinite(np.asarray(x)).all()


# Each rounding to bfloat16 (an 8-bit significand) moves a value by up to
# 2^-9 = 0.2%; the losses average many such values, so the errors partly
# cancel. Measured on these eight cases, with these batches and with those of
# the data iterator: at most 0.7% (the grid25 DDGAN's d_loss), 0.55% for the
# grid25 DDPM's gradient norm, most under 0.2%. 2% is three times the largest.
LOSS_RTOL = 0.02


def test_bfloat16_losses_at_init_are_close_to_float32_but_not_equal(case):
  family = case['bfloat16']['config'].family
  f32, bf16 = case['float32']['metrics'][0], case['bfloat16']['metrics'][0]
  keys = LOSS_AT_INIT[family]
  for key in keys:
    assert bf16[key] == pytest.approx(f32[key], rel=LOSS_RTOL), key
  assert any(bf16[key] != f32[key] for key in keys), f'bfloat16 changed none of {keys}'


def test_spectral_norm_keeps_float32_parameters_and_state():
  # At init Flax writes the normalised weight back as the parameter, in the
  # dtype nn.SpectralNorm is given; the layers cast it instead, so both
  # precisions start from the same float32 values.
  x = jnp.linspace(-1.0, 1.0, 4 * 8 * 8).reshape(4, 8, 8, 1)
  labels = jnp.arange(4) % 3
  made = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    d = Discriminator(ConvFeatures(channels=(4, 8), spectral_norm=True, dtype=dtype),
                      num_classes=3, spectral_norm=True, dtype=dtype)
    variables = compile_once(d.init)(jax.random.PRNGKey(0), x, labels)
    logits, updated = compile_once(lambda v: d.apply(v, x, labels, update_stats=True,
                                                     mutable=['batch_stats']))(variables)
    made[dtype] = variables, updated, logits
  (v32, u32, l32), (v16, u16, l16) = made[jnp.float32], made[jnp.bfloat16]
  assert l16.dtype == jnp.bfloat16 and l32.dtype == jnp.float32
  for tree in (v16, u16):
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(tree))
  assert jax.tree.all(jax.tree.map(np.array_equal, v16, v32))
  # The power iteration runs on the float32 weights: the same vectors either way.
  assert jax.tree.all(jax.tree.map(np.array_equal, u16, u32))


def test_time_features_are_taken_in_float32_before_the_cast():
  # At t = 999 the step between neighbouring bfloat16 values is 4: sines of a
  # bfloat16 t would bear no relation to the float32 ones.
  t = jnp.asarray([999, 998, 517, 3], jnp.int32)
  f32, bf16 = TimeEmbedding(32, 32), TimeEmbedding(32, 32, dtype=jnp.bfloat16)
  params = f32.init(jax.random.PRNGKey(0), t)
  ref = f32.apply(params, t)
  got = bf16.apply(params, t)
  assert got.dtype == jnp.bfloat16
  scale = float(jnp.max(jnp.abs(ref)))
  assert float(jnp.max(jnp.abs(got.astype(jnp.float32) - ref))) < 0.02 * scale


# ---------------------------------------------------------------------------- the config key


def test_compute_dtype_defaults_to_float32_and_is_validated():
  for name in families.BUILTIN:
    assert families.get_config(name, 'grid25').model.compute_dtype == 'float32'
  config = families.get_config('vae', 'grid25', {'model.compute_dtype': 'float16'})
  with pytest.raises(ValueError, match=r"config.model.compute_dtype must be one of "
                                       r"\('float32', 'bfloat16'\), got 'float16'"):
    families.build(config)


def saved_without_compute_dtype(config):
  """``config`` as a run saved before ``model.compute_dtype`` existed wrote it."""
  saved = json.loads(config.to_json_best_effort())
  del saved['model']['compute_dtype']
  return saved


def test_a_run_saved_before_compute_dtype_existed_is_float32():
  config = families.get_config('vae', 'grid25')
  saved = saved_without_compute_dtype(config)
  assert config_lib.changed_keys(saved, config) == []
  config_lib.check_resumable(saved, config, 'old_run')
  config.model.compute_dtype = 'bfloat16'
  assert config_lib.changed_keys(saved, config) == [
      ('model.compute_dtype', 'float32', 'bfloat16')]
  with pytest.raises(ValueError, match=r"model.compute_dtype: 'float32' -> 'bfloat16'"):
    config_lib.check_resumable(saved, config, 'old_run')


@pytest.mark.parametrize('family', families.BUILTIN)
def test_the_saved_config_of_an_older_run_still_builds_in_float32(family):
  # What evaluate.py does with an older run's config.json.
  config = ml_collections.ConfigDict(
      saved_without_compute_dtype(families.get_config(family, 'grid25')))
  assert config_lib.setting(config, 'model.compute_dtype') == 'float32'
  built = families.build(config)
  assert built.name == family
