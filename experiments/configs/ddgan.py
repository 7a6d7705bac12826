r"""DDGAN configs: residual MLPs on the 2-D mixtures, a small AdaGN U-Net on images.

  python experiments/train.py --config experiments/configs/ddgan.py:grid25 --workdir runs/ddgan_grid25
  python experiments/train.py --config experiments/configs/ddgan.py:digits --workdir runs/ddgan_digits \
      --config.ddgan.num_steps=2

Defaults follow the official CIFAR-10 recipe (NVlabs/denoising-diffusion-gan:
T = 4, VP schedule beta_min 0.1 / beta_max 20, nz = 100 through a mapping
network, Adam(0.5, 0.9), lr_G 1.6e-4 / lr_D 1.25e-4, R1 gamma 0.02 every 15
steps without rescaling, cosine lr decay to 1e-5) except where a CPU run of a
few minutes needs otherwise:

* EMA 0.999 with the warm-up of ``train_state.ema_decay_with_warmup`` instead of
  0.9999 (a few thousand steps would sample from near-initial weights).
* 2-D mixtures: Fourier-feature inputs, a generator built on the linear
  denoiser, ReLU, R1 every step and lr 1e-3 (see the docstring of ``_points``
  for the investigation behind each).
* 8x8 digits: three D updates per G update and lr 1e-3 (see ``_digits``).
"""

from __future__ import annotations

import ml_collections

from trilemma_jax.config import base_config

_POINTS = ('ring8', 'grid25')


def get_config(arg: str = 'grid25') -> ml_collections.ConfigDict:
  """The config for dataset ``arg`` ('ring8', 'grid25', 'digits', 'stacked_digits',
  'fashion_mnist' or a 32x32 'tfds:<name>')."""
  c = base_config('ddgan', arg)

  c.ddgan = ml_collections.ConfigDict()
  c.ddgan.num_steps = 4  # T: 1 (a one-shot GAN), 2, 4 or 8; NFE = T
  c.ddgan.beta_min = 0.1
  c.ddgan.beta_max = 20.0
  c.ddgan.data_scale = 1.0  # the networks see data_scale * x; samples are divided back
  c.ddgan.r1_gamma = 0.02  # gamma of gamma/2 ||grad_{x_{t-1}} D(real)||^2; 0 = off
  c.ddgan.r1_every = 15  # lazy R1 (official: applied every 15 D updates, not rescaled)
  c.ddgan.n_critic = 1  # D updates per G update
  c.ddgan.sigma_data = 0.0  # > 0: G = c_skip x_t + c_out body (see SkipGenerator); 0: G = body

  c.model.nz = 100  # latent z
  c.model.z_emb_dim = 128  # style vector w from the mapping network
  c.model.mapping_layers = 3
  c.model.time_dim = 128
  c.model.num_groups = 16
  c.model.g_activation = 'leaky_relu'
  c.model.d_activation = 'leaky_relu'
  # Points: residual MLP generator, plain MLP discriminator.
  c.model.g_width = 256
  c.model.g_blocks = 3
  c.model.g_fourier_octaves = 0
  c.model.d_fourier_octaves = 0
  c.model.d_widths = (256, 256, 256)
  # Images: AdaGN U-Net generator, residual conv discriminator.
  c.model.ch = 32
  c.model.ch_mult = (1, 2)
  c.model.num_res_blocks = 1
  c.model.d_channels = (64, 128)

  c.optim.g_lr = 1.6e-4
  c.optim.d_lr = 1.25e-4
  c.optim.b1 = 0.5
  c.optim.b2 = 0.9
  c.optim.cosine_decay = True
  c.optim.min_lr = 1e-5

  if arg in _POINTS:
    _points(c)
  elif arg in ('digits', 'stacked_digits'):
    _digits(c)
  elif arg == 'fashion_mnist':
    c.model.g_activation = 'silu'
    c.model.num_groups = 8
    c.model.ch_mult = (1, 2, 2)  # 28 -> 14 -> 7
    c.model.d_channels = (64, 128, 256)
    c.data.batch_size = 64
    c.train.steps = 5000
  else:  # 32x32 TFDS images: the official CIFAR-10 scale is an accelerator job
    c.model.g_activation = 'silu'
    c.model.num_groups = 32
    c.model.ch = 64
    c.model.ch_mult = (1, 2, 2, 2)
    c.model.num_res_blocks = 2
    c.model.d_channels = (64, 128, 256, 512)
    c.ema.decay = 0.9999
    c.data.batch_size = 64
    c.train.steps = 400_000
    c.train.checkpoint_every = 10_000
  return c


def _digits(c: ml_collections.ConfigDict) -> None:
  """8x8 digits: three discriminator updates per generator update, lr 1e-3.

  With the official optimiser and one D update per G update, a 3,000-step T = 4
  run drew noisy blobs (FD 25.4; the plain GAN gets ~3) and the logits of
  real and fake pairs stayed at ~0 throughout. Not a bug: trained alone
  against a frozen random G, the same D separated the pairs in 50 steps (t = 1:
  98%, logits +2.8 / -2.5; t = 4 stays at chance, as it must), and a fresh D
  told the 3,000-step G's pairs apart at t = 1 with 85% accuracy in 300
  steps, while the run's own D sat at chance. One D update per G update was
  too little: the D of the run never caught up with the G. Measured at 1,000
  steps (FD / precision / recall; d_loss and logits over the last 500 steps):

  * official (lr 1.6e-4 / 1.25e-4): 34.0 / 0.17 / 0.44, d_loss 1.39, logits 0.
  * lr 1e-3 both: 24.6; + n_critic 2: 14.5 / 0.40 / 0.56 (d_loss 1.35);
    + n_critic 3: 9.8 / 0.45 / 0.71 (d_loss 1.29, logits +0.16 / -0.19,
    ||grad D||^2 2.7 against 0.1).
  * What did not help at n_critic 1: d_lr 5e-4 (45.1), g_lr 3.3e-4 with
    d_lr 1e-3 (53.8; so the ratio of learning rates is not what matters, the
    number of fresh pairs D sees per G update is), R1 gamma 1 or 0.1 every
    step (25.8, 31.6), Adam b2 0.999 without decay (37.7), T = 1 (63.8).

  The n_critic D updates each draw fresh t, pairs and z, so D sees 3x the pairs.
  This default (1,200 steps, ~4.5 min on 2 shared cores): FD 8.0, precision
  0.50, recall 0.66, d_loss 1.31, logits +0.10 / -0.18 at the end.
  """
  c.model.g_activation = 'silu'
  c.model.num_groups = 8
  c.model.ch = 16
  c.model.z_emb_dim = 64
  c.model.d_channels = (32, 64)  # 8x8 -> 4x4 -> 2x2
  c.ddgan.n_critic = 3
  c.optim.g_lr = 1e-3
  c.optim.d_lr = 1e-3
  c.data.batch_size = 64
  c.train.steps = 1200


def _points(c: ml_collections.ConfigDict) -> None:
  """2-D mixtures (grid25, ring8): what the investigation on grid25 found.

  With the networks as for images (AdaGN generator predicting x0 directly, D
  on raw coordinates), a T = 4 DDGAN drew diffuse clouds: ~15 modes, < 2%
  high-quality samples, D loss stuck at 2 ln 2. Three causes, each measured
  on grid25 (3,000 steps, one seed; modes / %HQ / reverse KL):

  * The discriminator could not see the modes: an MLP on raw 2-D coordinates
    could not tell the data from a copy blurred by 0.1 in 1,500 Adam steps
    (spectral bias); Fourier features of its inputs fixed that at once.
  * The generator ignored x_t at t = 1 (its x0 fell in the mode of the true x0
    15-20% of the time, against ~50% once fixed): conditional mode collapse,
    8-13 modes at ~90% HQ. Building G on the linear denoiser
    (``ddgan.sigma_data``, :class:`SkipGenerator`) plus Fourier features of
    x_t in G gave 25 / 94.6% / 0.30. Without the skip: 11 / 85% / 2.1;
    without D's Fourier features: 25 / 67% / 0.02; without R1: 13 / 1% / 0.8.
  * Scaling the data to unit size hurt: x_t then says little about the mode
    (data_scale 1/4: 22 / 62% / 0.94, and 18 / 62% with matched Fourier
    frequencies), so the data keep their raw coordinates (sigma_data = the
    per-coordinate std, 2.83 on grid25).

  ReLU rather than the official leaky ReLU (25 / 12% HQ / 0.28 with leaky);
  R1 gamma 0.1 every step and lr 1e-3 without decay (the official optimiser,
  R1 and lr schedule with the same nets: 25 / 85% / 0.39). The same nets at
  T = 1, a one-shot GAN, collapse to 1 mode.
  """
  c.ddgan.data_scale = 1.0
  # Per-coordinate std of the mixture: sqrt(var of the means + std²).
  c.ddgan.sigma_data = 2.83 if c.data.name == 'grid25' else 0.71
  c.ddgan.r1_gamma = 0.1
  c.ddgan.r1_every = 1
  c.model.g_fourier_octaves = 4
  c.model.d_fourier_octaves = 4
  c.model.g_activation = 'relu'
  c.model.d_activation = 'relu'
  c.model.g_width = 128
  c.model.z_emb_dim = 64
  c.model.d_widths = (128, 128, 128)
  c.optim.g_lr = 1e-3
  c.optim.d_lr = 1e-3
  c.optim.cosine_decay = False
  c.data.batch_size = 256
  c.train.steps = 3000
  c.train.log_every = 200
  c.train.num_samples = 2500  # the size the mode metrics are defined on
