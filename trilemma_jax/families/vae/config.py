r"""VAE configs: MLP encoder/decoder on 2-D points, conv halves on images.

  python experiments/train.py --config trilemma_jax/families/vae/config.py:digits \
      --workdir runs/vae_digits

Defaults are sized for a 2-core CPU (a few minutes) on the 2-D mixtures and the
8x8 digits; override any key with --config.<key>=<value>.
"""

import ml_collections

from trilemma_jax import data, validation
from trilemma_jax.config import base_config
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families.vae.family import LIKELIHOODS


def get_config(dataset: str = 'digits') -> ml_collections.ConfigDict:
  """The config for ``dataset`` (any name :func:`trilemma_jax.data.load_info` knows)."""
  kind = data.kind_of(dataset)
  c = base_config('vae', dataset, kind)

  c.vae = ml_collections.ConfigDict()
  c.vae.likelihood = 'gaussian'  # 'gaussian' (learned variance) or 'bernoulli'
  c.vae.beta = 1.0
  c.vae.iwae_samples = 100  # K of the importance-weighted bound reported as NLL
  # Floor of the Gaussian decoder's log-variance (soft, via softplus).
  c.vae.min_log_var = -14.0

  c.model.latent_dim = 16

  c.optim.lr = 1e-3
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.grad_clip = 10.0

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 50
  c.eval.num_examples = 0  # 0: the whole test split

  if kind == 'points':
    c.model.latent_dim = 2
    c.model.points.hidden = (256, 256, 256)  # MLP widths
    c.data.batch_size = 256
    c.train.steps = 4000
    return c

  im = c.model.image
  im.channels = (32, 64)  # conv widths, one 2x down/upsampling stage each
  im.conv_hidden = 256
  if dataset in ('digits', 'stacked_digits'):
    c.train.steps = 3000
    if dataset == 'stacked_digits':
      c.eval.num_examples = 1000  # of its 10,000 test images: the bound's cost is per example
  elif dataset == 'fashion_mnist':
    c.model.latent_dim = 32
    im.channels = (16, 32)
    c.data.batch_size = 64
    # A log-variance floor at one quantisation bin (sigma = 2/255): the default
    # floor diverged on 256-level pixels (docs/vae_fashion.md).
    c.vae.min_log_var = -9.7
    c.train.steps = 3000
    c.eval.num_examples = 2000
  elif dataset == 'tfds:cifar10':
    # Paper scale, the same order of size as the CIFAR-10 DDPM (35.7M) and DDGAN
    # networks: 28.7M parameters (docs/paper_scale.md).
    c.model.latent_dim = 128
    im.channels = (128, 256, 512)
    im.conv_hidden = 1024
    c.train.steps = 200_000
    c.train.checkpoint_every = 10_000
    c.train.log_every = 500
    c.eval.num_examples = 10_000
  else:  # tfds:<name> and npz:<path>: a moderate image default
    c.model.latent_dim = 64
    im.channels = (32, 64, 128)
    c.train.steps = 20000
    c.eval.num_examples = 2000
  return c


def validate(config: ml_collections.ConfigDict, info: DatasetInfo) -> None:
  """Checks ``model``, ``optim``, ``vae`` and ``eval`` (the shared keys are checked before)."""
  positive_ints = validation.tuple_of(validation.positive_int)
  section = ({'model.points.hidden': positive_ints} if info.kind == 'points' else
             {'model.image.channels': positive_ints,
              'model.image.conv_hidden': validation.positive_int})
  validation.check_config(config, {
      'model.latent_dim': validation.positive_int,
      **section,
      'optim.lr': validation.positive,
      'optim.b1': validation.in_range(0.0, 1.0, high_open=True),
      'optim.b2': validation.in_range(0.0, 1.0, high_open=True),
      'optim.grad_clip': validation.non_negative,
      'vae.likelihood': validation.one_of(LIKELIHOODS),
      'vae.beta': validation.positive,
      'vae.iwae_samples': validation.positive_int,
      'vae.min_log_var': validation.in_range(-100.0, 100.0),
      'eval.batch_size': validation.positive_int,
      'eval.num_examples': validation.non_negative_int,
  })
  if info.kind == 'image':
    factor = 2 ** len(config.model.image.channels)
    if info.shape[0] % factor or info.shape[1] % factor:
      raise ValueError(
          f'config.model.image.channels={tuple(config.model.image.channels)} halves the '
          f'resolution {len(config.model.image.channels)} times, but '
          f'{info.shape[0]}x{info.shape[1]} is not divisible by {factor}; use fewer stages.')
