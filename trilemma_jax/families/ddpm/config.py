r"""DDPM configs: a time-conditional MLP on 2-D points, Ho et al.'s U-Net on images.

  python experiments/train.py --config trilemma_jax/families/ddpm/config.py:grid25 \
      --workdir runs/ddpm_grid25
  python experiments/train.py --config trilemma_jax/families/ddpm/config.py:digits \
      --workdir runs/ddpm_digits

The 2-D and digits defaults are sized for a 2-core CPU (a few minutes).
``tfds:cifar10`` is Ho et al.'s CIFAR-10 model and recipe (35.7M parameters,
800k steps: an accelerator run). Override any key with --config.<key>=<value>.
"""

import ml_collections

from trilemma_jax import config as config_lib
from trilemma_jax import data, validation
from trilemma_jax import diffusion as dm
from trilemma_jax.config import base_config
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families.ddpm.family import LR_SCHEDULES


def get_config(dataset: str = 'grid25') -> ml_collections.ConfigDict:
  """The config for ``dataset`` (any name :func:`trilemma_jax.data.load_info` knows)."""
  kind = data.kind_of(dataset)
  c = base_config('ddpm', dataset, kind)

  c.ddpm = ml_collections.ConfigDict()
  c.ddpm.schedule = 'linear'  # 'linear' (Ho), 'cosine' (Nichol & Dhariwal), 'ddgan_vp'
  c.ddpm.timesteps = 1000
  c.ddpm.prediction = 'eps'  # the network's output: 'eps', 'x0' or 'v'
  c.ddpm.variance = 'beta'  # sigma_t² of p(x_{t-1}|x_t): 'beta' (Ho's CIFAR-10) or 'beta_tilde'
  # Clip the x0 estimate to [-1, 1] in samplers and the bound; None: images only.
  c.ddpm.clip_x0 = ml_collections.config_dict.placeholder(bool)
  c.ddpm.ddim_steps = (50, 4)  # one 'ddim<k>' sampler row per entry
  # The T-call ancestral sampler's row. False drops it (DDIM rows only), for
  # evaluations whose sample counts make T calls per sample too slow.
  c.ddpm.ancestral = True
  c.ddpm.ddim_eta = 0.0
  c.ddpm.vb_terms = 0  # KL terms of the bound per example; 0 = all T-1 (exact)

  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  # After warm-up: 'constant' (Ho et al.) or 'cosine' to 0 (more high-quality
  # samples on grid25 at CPU budgets).
  c.optim.decay = 'cosine'
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.grad_clip = 1.0

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 250
  c.eval.num_examples = 0  # 0: the whole test split

  if kind == 'points':
    c.model.points.hidden = (256, 256, 256, 256)  # TimeMLP
    c.model.points.time_dim = 128
    c.data.batch_size = 256
    c.train.steps = 6000
    c.eval.num_examples = 1000
    return c

  im = c.model.image  # U-Net
  im.ch = 16
  im.ch_mult = (1, 2)
  im.num_res_blocks = 1
  im.attn_resolutions = (4,)
  im.dropout = 0.0
  im.num_groups = 8
  if dataset in ('digits', 'stacked_digits'):
    c.data.batch_size = 64
    c.train.steps = 3000
    c.ddpm.vb_terms = 100
    if dataset == 'stacked_digits':
      c.eval.num_examples = 1000  # of its 10,000 test images: the bound's cost is per example
  elif dataset == 'fashion_mnist':
    im.ch = 32
    im.ch_mult = (1, 2, 2)
    im.attn_resolutions = (7,)
    c.train.steps = 5000
    c.ddpm.vb_terms = 100
    c.eval.num_examples = 1000
  else:  # 32x32 and larger images: Ho et al.'s CIFAR-10 U-Net (Appendix B), or a narrower one
    im.ch = 128 if dataset == 'tfds:cifar10' else 64
    im.ch_mult = (1, 2, 2, 2)
    im.num_res_blocks = 2
    im.attn_resolutions = (16,)
    im.dropout = 0.1
    im.num_groups = 32
    c.optim.lr = 2e-4
    if dataset == 'tfds:cifar10':  # and their recipe
      c.optim.warmup_steps = 5000
      c.optim.decay = 'constant'
      c.data.batch_size = 128
      c.ema.decay = 0.9999
      c.train.steps = 800_000
      c.train.checkpoint_every = 10_000
    else:
      c.optim.warmup_steps = 1000
      c.train.steps = 50_000
      c.ddpm.vb_terms = 100
      c.eval.num_examples = 1000
  return c


def step_schedules(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The keys that lay a schedule over ``train.steps`` here: the cosine decay of the
  learning rate (``optim.decay``)."""
  return ('optim.decay',) if config.optim.get('decay') == 'cosine' else ()


def validate(config: ml_collections.ConfigDict, info: DatasetInfo) -> None:
  """Checks ``model``, ``optim``, ``ddpm`` and ``eval`` (the shared keys are checked before)."""
  positive_ints = validation.tuple_of(validation.positive_int)
  if info.kind == 'points':
    section = {'model.points.hidden': positive_ints,
               'model.points.time_dim': validation.positive_int}
  else:
    section = {'model.image.ch': validation.positive_int,
               'model.image.ch_mult': positive_ints,
               'model.image.num_res_blocks': validation.positive_int,
               'model.image.attn_resolutions': validation.tuple_of(validation.positive_int,
                                                                   min_length=0),
               'model.image.dropout': validation.in_range(0.0, 1.0, high_open=True),
               'model.image.num_groups': validation.positive_int}
  d = config.ddpm
  validation.check_config(config, {'ddpm.timesteps': validation.positive_int})
  validation.check_config(config, {
      **section,
      'optim.lr': validation.positive,
      'optim.warmup_steps': validation.non_negative_int,
      'optim.decay': validation.one_of(LR_SCHEDULES),
      'optim.b1': validation.in_range(0.0, 1.0, high_open=True),
      'optim.b2': validation.in_range(0.0, 1.0, high_open=True),
      'optim.grad_clip': validation.non_negative,
      'ddpm.schedule': validation.one_of(tuple(dm.SCHEDULES)),
      'ddpm.prediction': validation.one_of(dm.PREDICTIONS),
      'ddpm.variance': validation.one_of(dm.REVERSE_VARIANCES),
      'ddpm.ddim_steps': validation.tuple_of(validation.int_range(1, d.timesteps),
                                             min_length=0),
      'ddpm.ddim_eta': validation.non_negative,
      'ddpm.vb_terms': validation.int_range(0, max(d.timesteps - 1, 0)),
      'eval.batch_size': validation.positive_int,
      'eval.num_examples': validation.non_negative_int,
  })
  if d.clip_x0 is not None:
    validation.boolean('config.ddpm.clip_x0', d.clip_x0)
  ancestral = config_lib.setting(config, 'ddpm.ancestral')
  validation.boolean('config.ddpm.ancestral', ancestral)
  if not ancestral and not d.ddim_steps:
    raise ValueError('config.ddpm.ancestral=False with config.ddpm.ddim_steps=() leaves the DDPM '
                     'no sampler; keep the ancestral sampler or give DDIM steps.')
  if config.optim.decay == 'cosine' and config.train.steps <= config.optim.warmup_steps:
    raise ValueError(
        f'config.optim.decay=cosine needs config.train.steps ({config.train.steps}) > '
        f'config.optim.warmup_steps ({config.optim.warmup_steps}); lower the warm-up.')
