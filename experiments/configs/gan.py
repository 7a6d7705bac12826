r"""GAN configs: MLPs on the 2-D mixtures, DCGAN-style conv nets on images.

  python experiments/train.py --config experiments/configs/gan.py:grid25 --workdir runs/gan_grid25
  python experiments/train.py --config experiments/configs/gan.py:digits --workdir runs/gan_digits \
      --config.gan.loss=hinge --config.gan.r1_gamma=1.0

The 2-D defaults follow the PacGAN toy set-up (MLPs of a few hundred ReLU units,
Adam with β1 = 0.5) scaled to run on 2 CPU cores in a few minutes. The
plain GAN is expected to miss modes on grid25: that is the method, not a bug.
"""

from __future__ import annotations

import ml_collections

from trilemma_jax.config import base_config

_POINTS = ('ring8', 'grid25')


def get_config(arg: str = 'grid25') -> ml_collections.ConfigDict:
  """The config for dataset ``arg`` ('ring8', 'grid25', 'digits', 'stacked_digits',
  'fashion_mnist' or a 32x32 'tfds:<name>')."""
  c = base_config('gan', arg)

  c.model.z_dim = 64
  c.model.embed_dim = 32  # label embedding fed to a conditional generator
  c.model.g_activation = 'relu'
  c.model.d_activation = 'leaky_relu'
  # MLP widths (points) and conv channels (images); each data kind uses its own pair.
  c.model.g_widths = (128, 128, 128)
  c.model.d_widths = (128, 128, 128)
  c.model.g_channels = (64, 32)
  c.model.d_channels = (32, 64)

  c.optim.g_lr = 2e-4
  c.optim.d_lr = 2e-4
  c.optim.b1 = 0.5  # DCGAN: the default 0.9 makes GAN training oscillate
  c.optim.b2 = 0.999

  c.gan = ml_collections.ConfigDict()
  c.gan.loss = 'non_saturating'  # 'minimax' | 'non_saturating' | 'hinge'
  c.gan.n_critic = 1
  c.gan.r1_gamma = 0.0  # γ of γ/2·||∇D(x)||² on real data; 0 = off
  c.gan.r1_every = 1  # lazy R1: every k-th D update, γ scaled by k
  c.gan.spectral_norm = False
  c.gan.conditional = False  # cGAN (projection D) on labelled data

  if arg in _POINTS:
    # PacGAN's toy nets are 4x400 (G) and 3x200 maxout (D) trained for 400k
    # steps; 3x128 ReLU MLPs with a larger learning rate reach similar mode
    # counts in 20k steps (about 2 CPU minutes). Wider (3x256) or 3x400 nets
    # were slower and no better at this budget.
    c.model.z_dim = 2
    c.model.g_widths = (128, 128, 128)
    c.model.d_widths = (128, 128, 128)
    c.model.d_activation = 'relu'
    c.optim.g_lr = 5e-4
    c.optim.d_lr = 5e-4
    c.data.batch_size = 256
    c.train.steps = 20_000 if arg == 'grid25' else 10_000
    c.train.log_every = 200
    c.train.checkpoint_every = 5000
    c.train.num_samples = 2500  # the size the mode metrics are defined on
    return c

  # Images. Spectral norm on D made 8x8 digits visibly smoother and more
  # digit-like after 3000 steps than a plain D, with or without R1 (γ = 0.1).
  c.gan.spectral_norm = True
  c.data.batch_size = 64
  if arg in ('digits', 'stacked_digits'):
    c.model.z_dim = 32
    c.model.g_channels = (64, 32)  # 4x4 -> 8x8
    c.model.d_channels = (32, 64)  # 8x8 -> 4x4 -> 2x2
    c.optim.g_lr = 1e-3  # 2e-4 and 5e-4 gave noisier digits at 3000 steps
    c.optim.d_lr = 1e-3
    c.train.steps = 3000
  elif arg == 'fashion_mnist':
    c.model.g_channels = (64, 32, 16)  # 7x7 -> 14x14 -> 28x28
    c.model.d_channels = (32, 64)  # 28 -> 14 -> 7
    c.train.steps = 2000
  else:  # 32x32 TFDS images; widen the nets on accelerators
    c.model.g_channels = (128, 64, 32, 16)  # 4x4 -> 32x32
    c.model.d_channels = (32, 64, 128)
    c.train.steps = 3000
  return c
