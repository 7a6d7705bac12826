r"""GAN configs: MLPs on 2-D points, DCGAN-style conv nets on images.

  python experiments/train.py --config trilemma_jax/families/gan/config.py:grid25 --workdir runs/gan_grid25
  python experiments/train.py --config trilemma_jax/families/gan/config.py:digits \
      --workdir runs/gan_digits --config.gan.loss=hinge --config.gan.r1_gamma=1.0

The 2-D defaults follow the PacGAN toy set-up (MLPs of a few hundred ReLU units,
Adam with β1 = 0.5) scaled to run on 2 CPU cores in a few minutes. The plain
GAN is expected to miss modes on grid25: that is the method, not a bug.
"""

from __future__ import annotations

import ml_collections

from trilemma_jax import data, losses, validation
from trilemma_jax.config import base_config
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families import adversarial


def get_config(dataset: str = 'grid25') -> ml_collections.ConfigDict:
  """The config for ``dataset`` (any name :func:`trilemma_jax.data.load_info` knows)."""
  kind = data.kind_of(dataset)
  c = base_config('gan', dataset, kind)

  c.model.latent_dim = 64
  c.model.embed_dim = 32  # label embedding fed to a conditional generator
  c.model.g_activation = 'relu'
  c.model.d_activation = 'leaky_relu'

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

  if kind == 'points':
    # PacGAN's toy nets are 4x400 (G) and 3x200 maxout (D) trained for 400k
    # steps; 3x128 ReLU MLPs with a larger learning rate reach similar mode
    # counts in 20k steps.
    c.model.latent_dim = 2
    c.model.points.g_widths = (128, 128, 128)
    c.model.points.d_widths = (128, 128, 128)
    c.model.d_activation = 'relu'
    c.optim.g_lr = 5e-4
    c.optim.d_lr = 5e-4
    c.data.batch_size = 256
    c.train.steps = 20_000 if dataset == 'grid25' else 10_000
    c.train.log_every = 200
    c.train.checkpoint_every = 5000
    c.train.num_samples = 2500  # the size the mode metrics are defined on
    return c

  # Images: spectral norm on D (smoother, more digit-like 8x8 digits than a plain D).
  c.gan.spectral_norm = True
  c.data.batch_size = 64
  im = c.model.image
  if dataset in ('digits', 'stacked_digits'):
    c.model.latent_dim = 32
    im.g_channels = (64, 32)  # 4x4 -> 8x8
    im.d_channels = (32, 64)  # 8x8 -> 4x4 -> 2x2
    c.optim.g_lr = 1e-3
    c.optim.d_lr = 1e-3
    c.train.steps = 3000
  elif dataset == 'fashion_mnist':
    im.g_channels = (64, 32, 16)  # 7x7 -> 14x14 -> 28x28
    im.d_channels = (32, 64)  # 28 -> 14 -> 7
    c.train.steps = 2000
  elif dataset == 'tfds:cifar10':
    # Paper scale, the same order of size as the CIFAR-10 DDPM (35.7M) and DDGAN
    # (48.4M + 12.5M) networks: 17.5M + 10.5M parameters (docs/paper_scale.md).
    c.model.latent_dim = 128
    im.g_channels = (1024, 1024, 512, 256)  # 4x4 -> 32x32
    im.d_channels = (256, 512, 1024)  # 32 -> 16 -> 8 -> 4
    c.train.steps = 100_000
    c.train.checkpoint_every = 10_000
    c.train.log_every = 500
  else:  # other 32x32 images; widen the nets on accelerators
    im.g_channels = (128, 64, 32, 16)  # 4x4 -> 32x32
    im.d_channels = (32, 64, 128)
    c.train.steps = 3000
  return c


def validate(config: ml_collections.ConfigDict, info: DatasetInfo) -> None:
  """Checks ``model``, ``optim`` and ``gan`` (the shared keys are checked before)."""
  widths = validation.tuple_of(validation.positive_int)
  section = (('model.points.g_widths', 'model.points.d_widths') if info.kind == 'points'
             else ('model.image.g_channels', 'model.image.d_channels'))
  validation.check_config(config, {
      **adversarial.CONFIG_CHECKS,
      'model.embed_dim': validation.positive_int,
      **{path: widths for path in section},
      'gan.loss': validation.one_of(tuple(losses.GAN_LOSSES)),
      'gan.n_critic': validation.positive_int,
      'gan.r1_gamma': validation.non_negative,
      'gan.r1_every': validation.positive_int,
      'gan.spectral_norm': validation.boolean,
      'gan.conditional': validation.boolean,
  })
  if config.gan.conditional and not info.num_classes:
    raise ValueError(f'config.gan.conditional=True needs labelled data, but {info.name!r} has '
                     'no labels; set --config.gan.conditional=False.')
  if info.kind == 'image':
    h, w, _ = info.shape
    doublings = len(config.model.image.g_channels) - 1
    if h % 2 ** doublings or w % 2 ** doublings:
      raise ValueError(
          f'config.model.image.g_channels={tuple(config.model.image.g_channels)}: the generator '
          f'doubles a base feature map {doublings} times, which cannot reach {h}x{w}; choose '
          f'a length L with {h} and {w} divisible by 2**(L-1).')
