r"""DDGAN configs: residual MLPs on 2-D points, AdaGN U-Nets on images.

  python experiments/train.py --config trilemma_jax/families/ddgan/config.py:grid25 \
      --workdir runs/ddgan_grid25
  python experiments/train.py --config trilemma_jax/families/ddgan/config.py:digits \
      --workdir runs/ddgan_digits --config.ddgan.num_steps=2

Defaults follow the official CIFAR-10 recipe (NVlabs/denoising-diffusion-gan:
T = 4, VP schedule beta_min 0.1 / beta_max 20, a 100-d latent through a mapping
network, Adam(0.5, 0.9), lr_G 1.6e-4 / lr_D 1.25e-4, R1 gamma 0.02 every 15
steps without rescaling, cosine lr decay to 1e-5) except where a CPU run of a
few minutes needs otherwise; docs/ddgan_recipe.md has the measurements behind
every departure:

* EMA 0.999 with the warm-up of ``train_state.ema_decay_with_warmup`` instead of
  0.9999 (a few thousand steps would sample from near-initial weights); below
  step ~9,000 the warm-up sets the decay, so the two would not differ there.
* 2-D points: Fourier-feature inputs, a generator built on the linear
  denoiser (``ddgan.skip_generator``), ReLU, R1 every step, lr 1e-3, and a
  discriminator that scores packs of 4 pairs (``ddgan.pack``). Grid25 and ring8
  run an energy score on a time grid finer near the data. Grid25 runs T = 4, its
  R1's gamma moves from 3 down to 0.1 over the run and the discriminator's
  Fourier features start three octaves lower; ring8 runs T = 8, trains its late
  steps more often and trains 6,000 steps.
* digits and stacked digits: three D updates per G update, lr 1e-3 and no
  R1; digits also batch 32, 1,800 steps and a plain EMA of decay 0.998 (no
  warm-up), stacked digits the time grid and energy score of grid25 and
  constant learning rates.

``tfds:cifar10`` is the official CIFAR-10 run itself (``model.image.arch =
'ncsnpp'``: the NCSN++ generator with AdaGN, 48.4M parameters, and the small
discriminator; docs/paper_scale.md): an accelerator job. Its batch of 256 is
the official 64 per GPU on 4 GPUs (``data.batch_size`` is the global batch),
its 351,562 steps the official 1,800 epochs of 50,000 images.
"""

from __future__ import annotations

import math

import ml_collections

from trilemma_jax import config as config_lib
from trilemma_jax import data, validation
from trilemma_jax.config import base_config
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families import adversarial


IMAGE_ARCHS = ('unet', 'ncsnpp')


def get_config(dataset: str = 'grid25') -> ml_collections.ConfigDict:
  """The config for ``dataset`` (any name :func:`trilemma_jax.data.load_info` knows)."""
  kind = data.kind_of(dataset)
  c = base_config('ddgan', dataset, kind)

  c.ddgan = ml_collections.ConfigDict()
  c.ddgan.num_steps = 4  # T: 1 (a one-shot GAN), 2, 4 or 8; NFE = T
  c.ddgan.beta_min = 0.1
  c.ddgan.beta_max = 20.0
  # tau_i = (i / T)**time_power on the VP-SDE's time axis (diffusion.ddgan_vp_schedule);
  # 1.0 is the official uniform grid, above 1 the first step (x_0 -> x_1) is smaller.
  c.ddgan.time_power = 1.0
  c.ddgan.data_scale = 1.0  # the networks see data_scale * x; samples are divided back
  c.ddgan.r1_gamma = 0.02  # gamma of gamma/2 ||grad_{x_{t-1}} D(real)||^2; 0 = off
  c.ddgan.r1_every = 15  # lazy R1 (official: applied every 15 D updates, not rescaled)
  # > 0: R1's gamma starts here and moves geometrically to r1_gamma at the last
  # step (ddgan.r1_gamma_schedule); 0 = r1_gamma throughout, the official recipe.
  c.ddgan.r1_gamma_start = 0.0
  c.ddgan.n_critic = 1  # D updates per G update
  # Weight of an energy-score penalty on the generator's x0 draws (two latents per
  # x_t); 0 is the original DDGAN. See docs/ddgan_steps.md, sections 5 and 21.
  c.ddgan.energy_weight = 0.0
  # The lowest step t at which the energy score counts; 1 = every step.
  c.ddgan.energy_from_step = 1
  # Pairs per discriminator logit (PacGAN packing, ddgan.nets.PackedDiscriminator);
  # 1 is the original DDGAN. The global batch must be a multiple of it.
  c.ddgan.pack = 1
  # Spectral normalisation (Miyato et al. 2018) of the discriminator's layers on the
  # path of x_{t-1} and x_t, beside or instead of R1; False is the original DDGAN.
  # Not for the NCSN++ discriminator.
  c.ddgan.spectral_norm = False
  # Relative frequencies of the steps t = 1..T in training, one per step; () is
  # uniform, the original DDGAN. The fixed point per step is the same; only how
  # often each step's GAN is trained changes.
  c.ddgan.t_weights = ()
  # Multiplies the weight of t = 1, the step that draws x_0 (whatever T is, so a
  # --config.ddgan.num_steps override keeps it meaningful); 1.0 = as t_weights says.
  c.ddgan.last_step_weight = 1.0
  # G = c_skip x_t + c_out body (SkipGenerator), with the data's std from DatasetInfo.
  c.ddgan.skip_generator = False
  # One set of generator weights per step t (PerStepGenerator); False shares one
  # network over the steps, the original DDGAN. Costs T generators' arithmetic per call.
  c.ddgan.per_step_generator = False

  c.model.latent_dim = 100  # z (the official code's nz)
  c.model.z_emb_dim = 128  # style vector w from the mapping network
  c.model.mapping_layers = 3
  c.model.time_dim = 128
  c.model.num_groups = 16
  c.model.g_activation = 'leaky_relu'
  c.model.d_activation = 'leaky_relu'

  c.optim.g_lr = 1.6e-4
  c.optim.d_lr = 1.25e-4
  c.optim.b1 = 0.5
  c.optim.b2 = 0.9
  c.optim.cosine_decay = True
  c.optim.min_lr = 1e-5

  if kind == 'points':
    _points(c)
    if dataset == 'grid25':
      # R1's gamma from 3 down to the 0.1 of _points over the run: a strong early
      # penalty made collapsed seeds rarer, not absent (docs/ddgan_steps.md,
      # sections 23-25).
      c.ddgan.r1_gamma_start = 3.0
      # T = 4 on a time grid finer near the data (p = 1.5: x_1's noise std 0.40, not
      # 0.69), the energy score, and discriminator features down to period 16
      # (octaves -3..3): the three together even the mode weights on every seed,
      # at half the network calls of T = 8 (docs/ddgan_steps.md, sections 26 and 31).
      # On the official grid the score blurs grid25 at T <= 4, where the last
      # step's posterior is wide (section 21). Features from octave 0 all repeat
      # with the grid's spacing, so only the raw coordinates would tell D one
      # mode from another (section 26).
      c.ddgan.num_steps = 4
      c.ddgan.time_power = 1.5
      c.ddgan.energy_weight = 0.3
      c.model.points.d_fourier_octaves = 7
      c.model.points.d_fourier_first_octave = -3
    if dataset == 'ring8':
      # Eight steps on ring8 (modes of std 0.01): at T = 4 seeds dropped modes
      # (docs/ddgan_steps.md, section 11).
      c.ddgan.num_steps = 8
      # A time grid finer near the data, and the late steps trained more often
      # (weights halving from t = 1): the sharpness ring8's narrow modes need
      # (docs/ddgan_steps.md, section 20). The weights are one per step, so
      # another T needs its own (or --config.ddgan.t_weights='()').
      c.ddgan.time_power = 1.5
      c.ddgan.t_weights = (16.0, 8.0, 4.0, 2.0, 1.0, 1.0, 1.0, 1.0)
      # An energy-score term makes the generator use its latent, which it
      # otherwise ignores (its steps from x_2..x_5 were too narrow;
      # docs/ddgan_steps.md, section 21).
      c.ddgan.energy_weight = 0.3
      # Twice grid25's steps: at 3,000 no seed reached 95 %HQ (docs/ddgan_steps.md,
      # section 23).
      c.train.steps = 6000
    return c

  im = c.model.image
  # 'unet': a small AdaGN U-Net generator and a residual conv discriminator;
  # 'ncsnpp': the official NCSN++ generator and small FIR discriminator (ncsnpp.py).
  im.arch = 'unet'
  im.attn_resolutions = ()  # ncsnpp only: feature-map sides with self-attention
  im.ch = 32
  im.ch_mult = (1, 2)
  im.num_res_blocks = 1
  im.d_channels = (64, 128)
  # 'unet' only: K > 0 feeds the generator K maps of per-pixel noise beside x_t
  # (drawn with z, which grows by H * W * K); 0 = the one mapped latent only.
  im.noise_channels = 0
  # 'unet' with noise maps only: k > 1 leaves the mapped latent out of the
  # steps t < k (zeroed), whose randomness is then the maps' alone.
  im.latent_from_step = 1
  if dataset in ('digits', 'stacked_digits'):
    # Three D updates per G update and lr 1e-3: with one, D never caught up
    # with G (docs/ddgan_recipe.md).
    c.model.g_activation = 'silu'
    if dataset == 'digits':
      # The last step trained 4x as often: it decides the digit's details
      # (docs/ddgan_steps.md, section 15). Not on stacked digits, where it
      # covered fewer modes (section 17).
      c.ddgan.last_step_weight = 4.0
      # Batch 32 and no R1 (the official gamma 0.02 every 15 D updates averages
      # 0.0013 per update): the same quality at 2.3x the steps/s
      # (docs/ddgan_steps.md, section 28). Stacked digits keeps batch 64: at batch
      # 32 its 1,000 modes were covered less evenly for the same steps.
    # No R1 on stacked digits either (the same KL to uniform, faster steps), and
    # there the time grid p = 1.5 with the energy score, which evened grid25's
    # mode weights, at these 1,200 steps; long runs use another recipe (profile
    # stacked_long; docs/ddgan_steps.md, sections 32 and 35-40).
    c.ddgan.r1_gamma = 0.0
    if dataset == 'stacked_digits':
      c.ddgan.time_power = 1.5
      c.ddgan.energy_weight = 0.3
      # Constant learning rates, as on the points: better KL, FD and recall at
      # 1,200 steps (section 33).
      c.optim.cosine_decay = False
      # Three maps of per-pixel noise beside x_t: the one mapped latent drew the
      # three channels' digits together (section 34).
      im.noise_channels = 3
    c.model.num_groups = 8
    c.model.z_emb_dim = 64
    im.ch = 16
    im.d_channels = (32, 64)  # 8x8 -> 4x4 -> 2x2
    c.ddgan.n_critic = 3
    c.optim.g_lr = 1e-3
    c.optim.d_lr = 1e-3
    c.data.batch_size = 32 if dataset == 'digits' else 64
    c.train.steps = 1200
    if dataset == 'digits':
      # 1,800 steps and a plain EMA of decay 0.998 (half-life ~350 steps; with the
      # warm-up half the weight sits on the last ~130): what it took for issue 11's
      # per-seed bounds against the DDPM to hold on every seed (docs/ddgan_steps.md,
      # section 30). The EMA changes only the evaluated weights, not training.
      # Stacked digits keeps 1,200 steps and the warm-up: the plain EMA covered
      # its modes less evenly there (section 32).
      c.train.steps = 1800
      c.ema.warmup = False
      c.ema.decay = 0.998
  elif dataset == 'fashion_mnist':
    c.model.g_activation = 'silu'
    c.model.num_groups = 8
    im.ch_mult = (1, 2, 2)  # 28 -> 14 -> 7
    im.d_channels = (64, 128, 256)
    c.data.batch_size = 64
    c.train.steps = 5000
  elif dataset == 'tfds:cifar10':
    _official_cifar10(c)
  else:  # other 32x32 images: a narrower U-Net
    c.model.g_activation = 'silu'
    c.model.num_groups = 32
    im.ch = 64
    im.ch_mult = (1, 2, 2, 2)
    im.num_res_blocks = 2
    im.d_channels = (64, 128, 256, 512)
    c.ema.decay = 0.9999
    c.data.batch_size = 64
    c.train.steps = 400_000
    c.train.checkpoint_every = 10_000
  return c


def _official_cifar10(c: ml_collections.ConfigDict) -> None:
  """The official CIFAR-10 recipe (REFERENCES.md; the paper's code, its README command)."""
  im = c.model.image
  im.arch = 'ncsnpp'
  im.ch = 128
  im.ch_mult = (1, 2, 2, 2)
  im.num_res_blocks = 2
  im.attn_resolutions = (16,)
  im.d_channels = (128, 256, 512, 512)  # 2, 4, 8, 8 x ngf = 64
  c.model.z_emb_dim = 256
  c.model.mapping_layers = 4
  c.model.time_dim = 256  # the discriminator's t_emb_dim (official default)
  c.model.g_activation = 'silu'
  c.model.d_activation = 'leaky_relu'
  c.ema.decay = 0.9999
  c.ema.warmup = False
  c.data.batch_size = 256
  c.train.steps = 1800 * 50_000 // 256
  c.train.checkpoint_every = 10_000
  c.train.log_every = 500


def _points(c: ml_collections.ConfigDict) -> None:
  """2-D mixtures: what the grid25 investigation found (docs/ddgan_recipe.md)."""
  c.ddgan.skip_generator = True
  c.ddgan.r1_gamma = 0.1
  c.ddgan.r1_every = 1
  # Packs of 4 pairs per D logit: 25/25 modes on 5 of 5 seeds, reverse KL 0.13
  # against 0.49 and one collapse in 5 without (docs/ddgan_steps.md, section 8).
  c.ddgan.pack = 4
  c.model.g_activation = 'relu'
  c.model.d_activation = 'relu'
  c.model.z_emb_dim = 64
  p = c.model.points  # residual MLP generator, plain MLP discriminator
  p.g_width = 128
  p.g_blocks = 3
  p.g_fourier_octaves = 4
  p.d_fourier_octaves = 4
  # The octaves are k = first, ..., first + octaves - 1 (frequencies pi 2^k): from
  # k = 0 every feature has period 2, grid25's mode spacing (nets.fourier_features).
  p.g_fourier_first_octave = 0
  p.d_fourier_first_octave = 0
  p.d_widths = (128, 128, 128)
  c.optim.g_lr = 1e-3
  c.optim.d_lr = 1e-3
  c.optim.cosine_decay = False
  c.data.batch_size = 256
  c.train.steps = 3000
  c.train.log_every = 200
  c.train.num_samples = 2500  # the size the mode metrics are defined on


def step_schedules(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The keys that lay a schedule over ``train.steps`` here: the learning rates'
  cosine decay, and R1's path from ``ddgan.r1_gamma_start`` (see ``family.py``)."""
  keys = []
  if config.optim.get('cosine_decay', False):
    keys.append('optim.cosine_decay')
  if config.ddgan.get('r1_gamma_start', 0.0) > 0:
    keys.append('ddgan.r1_gamma_start')
  return tuple(keys)


def validate(config: ml_collections.ConfigDict, info: DatasetInfo) -> None:
  """Checks ``model``, ``optim`` and ``ddgan`` (the shared keys are checked before)."""
  positive_ints = validation.tuple_of(validation.positive_int)
  if info.kind == 'points':
    section = {'model.points.g_width': validation.positive_int,
               'model.points.g_blocks': validation.positive_int,
               'model.points.g_fourier_octaves': validation.non_negative_int,
               'model.points.d_fourier_octaves': validation.non_negative_int,
               'model.points.d_widths': positive_ints}
  else:
    section = {'model.image.ch': validation.positive_int,
               'model.image.ch_mult': positive_ints,
               'model.image.num_res_blocks': validation.positive_int,
               'model.image.d_channels': positive_ints}
  validation.check_config(config, {
      **adversarial.CONFIG_CHECKS,
      'model.z_emb_dim': validation.positive_int,
      'model.mapping_layers': validation.non_negative_int,
      'model.time_dim': validation.positive_int,
      'model.num_groups': validation.positive_int,
      **section,
      'optim.cosine_decay': validation.boolean,
      'optim.min_lr': validation.non_negative,
      'ddgan.num_steps': validation.positive_int,
      'ddgan.beta_min': validation.positive,
      'ddgan.beta_max': validation.positive,
      'ddgan.data_scale': validation.positive,
      'ddgan.r1_gamma': validation.non_negative,
      'ddgan.r1_every': validation.positive_int,
      'ddgan.n_critic': validation.positive_int,
      'ddgan.skip_generator': validation.boolean,
  })
  # Through setting(): the config.json of a run saved before the key existed lacks it.
  if info.kind == 'points':
    for key in ('model.points.g_fourier_first_octave', 'model.points.d_fourier_first_octave'):
      validation.int_range(-16, 16)(f'config.{key}', config_lib.setting(config, key))
  if info.kind == 'image':
    validation.one_of(IMAGE_ARCHS)('config.model.image.arch',
                                   config_lib.setting(config, 'model.image.arch'))
    validation.tuple_of(validation.positive_int, min_length=0)(
        'config.model.image.attn_resolutions',
        config_lib.setting(config, 'model.image.attn_resolutions'))
    noise_channels = validation.non_negative_int(
        'config.model.image.noise_channels',
        config_lib.setting(config, 'model.image.noise_channels'))
    if noise_channels and config_lib.setting(config, 'model.image.arch') != 'unet':
      raise ValueError(
          f'config.model.image.noise_channels={noise_channels} is for the U-Net generator '
          "(model.image.arch='unet'); the NCSN++ generator takes only the mapped latent. Set "
          '--config.model.image.noise_channels=0 or --config.model.image.arch=unet.')
    latent_from_step = validation.int_range(1, int(config.ddgan.num_steps))(
        'config.model.image.latent_from_step (a step of the T = ddgan.num_steps)',
        config_lib.setting(config, 'model.image.latent_from_step'))
    if latent_from_step > 1 and not noise_channels:
      raise ValueError(
          f'config.model.image.latent_from_step={latent_from_step} leaves the mapped latent out '
          f'of the steps below {latent_from_step}, whose randomness would then come from the '
          "U-Net generator's noise maps, but there are none (model.image.noise_channels=0). Set "
          '--config.model.image.noise_channels to 1 or more (with model.image.arch=unet), or '
          'latent_from_step=1.')
  validation.boolean('config.ddgan.per_step_generator',
                     config_lib.setting(config, 'ddgan.per_step_generator'))
  validation.non_negative('config.ddgan.energy_weight',
                          config_lib.setting(config, 'ddgan.energy_weight'))
  r1_start = validation.non_negative('config.ddgan.r1_gamma_start',
                                     config_lib.setting(config, 'ddgan.r1_gamma_start'))
  if not math.isfinite(r1_start):
    raise ValueError(f'config.ddgan.r1_gamma_start={r1_start} must be finite (0 for a constant '
                     'gamma).')
  if r1_start > 0 and not config.ddgan.r1_gamma > 0:
    raise ValueError(
        f'config.ddgan.r1_gamma_start={r1_start} needs a positive config.ddgan.r1_gamma (the '
        f'value it ends at), got {config.ddgan.r1_gamma}; use '
        '--config.ddgan.r1_gamma_start=0 for a constant gamma (or none, with r1_gamma=0).')
  energy_from_step = validation.positive_int('config.ddgan.energy_from_step',
                                             config_lib.setting(config, 'ddgan.energy_from_step'))
  if energy_from_step > config.ddgan.num_steps:
    raise ValueError(
        f'config.ddgan.energy_from_step={energy_from_step} is above T = '
        f'config.ddgan.num_steps = {config.ddgan.num_steps}: the energy score would count at no '
        'step; use a step in 1..T (or config.ddgan.energy_weight=0 for none).')
  pack = validation.positive_int('config.ddgan.pack', config_lib.setting(config, 'ddgan.pack'))
  spectral_norm = validation.boolean('config.ddgan.spectral_norm',
                                     config_lib.setting(config, 'ddgan.spectral_norm'))
  if (spectral_norm and info.kind == 'image'
      and config_lib.setting(config, 'model.image.arch') == 'ncsnpp'):
    raise ValueError(
        "config.ddgan.spectral_norm=True is for the conv discriminator of "
        "model.image.arch='unet' and the MLP discriminator of 2-D data; the NCSN++ "
        "discriminator (model.image.arch='ncsnpp') has no spectral-norm option. Set "
        "--config.ddgan.spectral_norm=False or --config.model.image.arch=unet.")
  t_weights = validation.tuple_of(validation.non_negative, min_length=0)(
      'config.ddgan.t_weights', config_lib.setting(config, 'ddgan.t_weights'))
  if t_weights and len(t_weights) != config.ddgan.num_steps:
    raise ValueError(
        f'config.ddgan.t_weights has {len(t_weights)} weights; give one per step '
        f'(T = config.ddgan.num_steps = {config.ddgan.num_steps}), or () for uniform steps '
        "(--config.ddgan.t_weights='()').")
  if t_weights and not (all(math.isfinite(w) for w in t_weights) and sum(t_weights) > 0):
    raise ValueError(f'config.ddgan.t_weights={t_weights} must be finite and not all zero.')
  for key in ('time_power', 'last_step_weight'):
    value = validation.positive(f'config.ddgan.{key}', config_lib.setting(config, f'ddgan.{key}'))
    if not math.isfinite(value):
      raise ValueError(f'config.ddgan.{key}={value} must be finite.')
  if config.data.batch_size % pack:
    raise ValueError(f'config.data.batch_size={config.data.batch_size} is not a multiple of '
                     f'config.ddgan.pack={pack}; the discriminator scores whole packs.')
  if config.ddgan.beta_max < config.ddgan.beta_min:
    raise ValueError(f'config.ddgan.beta_max={config.ddgan.beta_max} is below '
                     f'config.ddgan.beta_min={config.ddgan.beta_min}.')
  if config.ddgan.skip_generator and info.data_std is None:
    raise ValueError(
        f'config.ddgan.skip_generator=True needs the per-coordinate std of the data, which '
        f'{info.name!r} does not state (only the Gaussian mixtures do); set '
        '--config.ddgan.skip_generator=False.')
