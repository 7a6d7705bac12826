"""The GAN family: a generator and a discriminator trained in one compiled step.

Each step updates the discriminator ``n_critic`` times on the same real batch,
each time with fresh latent noise, then the generator once, then the EMA of
the generator weights (which the sampler draws from); the step itself is the
shared adversarial core (:mod:`trilemma_jax.families.adversarial`).

Losses (see :mod:`trilemma_jax.losses`): the original min-max game
(Goodfellow et al. 2014, saturating G loss), its non-saturating variant and
the hinge loss (Lim & Ye 2017; Miyato et al. 2018). Options: R1 penalty
γ/2·||∇ₓD(x)||² on real data (Mescheder et al. 2018), lazily every ``k``
discriminator updates with γ scaled by ``k`` (Karras et al. 2020, StyleGAN2);
spectral normalisation of D (Miyato et al. 2018); class conditioning with a
projection discriminator (see :mod:`trilemma_jax.families.gan.nets`).

The networks compute in ``config.model.compute_dtype``; the generator's samples
and the discriminator's logits are cast to float32 here, so the losses, R1 and
the sampler's output are float32 under mixed precision too.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from trilemma_jax import config as config_lib
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families import adversarial
from trilemma_jax.families.adversarial import DISCRIMINATOR, GENERATOR, Draw
from trilemma_jax.families.gan.nets import (ConvFeatures, ConvGenerator, Discriminator,
                                            Generator)
from trilemma_jax.nets.mlp import MLP
from trilemma_jax.train_state import Batch, Family, TrainState


def make_draw(generator: Generator, *, latent_dim: int) -> adversarial.DrawFn:
  """Real batch, ``G(z)`` with fresh ``z ~ N(0, I)`` (the batch's labels if conditional)."""
  conditional = generator.num_classes is not None

  def draw(g_params, batch: Batch, key: jax.Array) -> Draw:
    x_real = batch['x']
    labels = batch['label'] if conditional else None
    z = jax.random.normal(key, (x_real.shape[0], latent_dim), x_real.dtype)
    x_fake = generator.apply({'params': g_params}, z, labels).astype(jnp.float32)
    return Draw(real=x_real, fake=x_fake, cond=labels, metrics={})

  return draw


def make_d_apply(discriminator: Discriminator) -> adversarial.DApplyFn:
  """``D(x, labels)``; with spectral norm its power iterations advance on ``update_stats``."""

  def d_apply(d_params, d_state, x, labels, update_stats):
    return adversarial.apply_discriminator(discriminator, d_params, d_state, x, labels,
                                           update_stats=update_stats)

  return d_apply


def init_networks(generator: Generator, discriminator: Discriminator, rng: jax.Array,
                  example_batch: Batch, *, latent_dim: int):
  """``(generator params, discriminator variables)`` for the shapes of ``example_batch``."""
  x = jnp.asarray(example_batch['x'])[:1]
  labels = jnp.zeros((1,), jnp.int32) if generator.num_classes is not None else None
  g_key, d_key = jax.random.split(rng)
  g_params = generator.init(g_key, jnp.zeros((1, latent_dim), jnp.float32), labels)['params']
  return g_params, discriminator.init(d_key, x, labels, update_stats=False)


def init_state(generator: Generator, discriminator: Discriminator,
               g_optimizer: optax.GradientTransformation,
               d_optimizer: optax.GradientTransformation, rng: jax.Array, example_batch: Batch,
               *, latent_dim: int) -> TrainState:
  """A fresh state for the pair (see :func:`trilemma_jax.families.adversarial.init_state`)."""
  g_params, d_variables = init_networks(generator, discriminator, rng, example_batch,
                                        latent_dim=latent_dim)
  return adversarial.init_state(g_params, d_variables, g_optimizer, d_optimizer, rng)


def make_train_step(generator: Generator, discriminator: Discriminator,
                    g_optimizer: optax.GradientTransformation,
                    d_optimizer: optax.GradientTransformation, *, latent_dim: int,
                    **options) -> Callable:
  """The GAN step; ``options`` as for :func:`trilemma_jax.families.adversarial.make_train_step`.

  The generator and the discriminator must both be conditional or neither;
  lazy R1 is rescaled by its interval (StyleGAN2).
  """
  if (generator.num_classes is None) != (discriminator.num_classes is None):
    raise ValueError('The generator and the discriminator must both be conditional or neither.')
  return adversarial.make_train_step(
      make_draw(generator, latent_dim=latent_dim), make_d_apply(discriminator), g_optimizer,
      d_optimizer, r1_rescale=True, **options)


def make_sampler(generator: Generator, *, latent_dim: int) -> Callable[..., jax.Array]:
  """``sample(state, rng, n, *, label=None) -> [n, *shape]`` from the EMA generator (NFE 1).

  A conditional generator draws labels uniformly, or uses ``label`` (a static
  int) for all ``n`` samples.
  """
  num_classes = generator.num_classes

  def sample(state: TrainState, rng: jax.Array, n: int, *, label: int | None = None) -> jax.Array:
    z_key, y_key = jax.random.split(rng)
    z = jax.random.normal(z_key, (n, latent_dim), jnp.float32)
    labels = None
    if num_classes is None:
      if label is not None:
        raise ValueError('label= was given, but the generator is unconditional.')
    elif label is None:
      labels = jax.random.randint(y_key, (n,), 0, num_classes)
    else:
      if not 0 <= label < num_classes:
        raise ValueError(f'label must be in [0, {num_classes}), got {label}.')
      labels = jnp.full((n,), label, jnp.int32)
    return generator.apply({'params': state.ema[GENERATOR]}, z, labels).astype(jnp.float32)

  return sample


def build_networks(config: ml_collections.ConfigDict,
                   info: DatasetInfo) -> tuple[Generator, Discriminator]:
  """The generator and discriminator for ``info``: MLPs for points, DCGAN nets for images."""
  m, g = config.model, config.gan
  num_classes = info.num_classes if g.conditional else None
  shape = tuple(info.shape)
  dtype = config_lib.compute_dtype(config)
  if info.kind == 'points':
    p = m.points
    g_body = MLP(widths=tuple(p.g_widths), out_dim=math.prod(shape), activation=m.g_activation,
                 dtype=dtype)
    trunk = MLP(widths=tuple(p.d_widths), activation=m.d_activation,
                spectral_norm=g.spectral_norm, dtype=dtype)
  else:
    im = m.image
    g_body = ConvGenerator(image_shape=shape, channels=tuple(im.g_channels),
                           activation=m.g_activation, dtype=dtype)
    trunk = ConvFeatures(channels=tuple(im.d_channels), activation=m.d_activation,
                         spectral_norm=g.spectral_norm, dtype=dtype)
  generator = Generator(body=g_body, out_shape=shape, num_classes=num_classes,
                        embed_dim=m.embed_dim, dtype=dtype)
  discriminator = Discriminator(trunk=trunk, num_classes=num_classes,
                                spectral_norm=g.spectral_norm, dtype=dtype)
  return generator, discriminator


def build_family(config: ml_collections.ConfigDict, info: DatasetInfo) -> Family:
  """The GAN :class:`Family` for a validated ``config`` on ``info``."""
  generator, discriminator = build_networks(config, info)
  o, g = config.optim, config.gan
  g_optimizer = optax.adam(o.g_lr, b1=o.b1, b2=o.b2)
  d_optimizer = optax.adam(o.d_lr, b1=o.b1, b2=o.b2)
  latent_dim = config.model.latent_dim
  train_step = make_train_step(
      generator, discriminator, g_optimizer, d_optimizer, latent_dim=latent_dim, loss=g.loss,
      n_critic=g.n_critic, r1_gamma=float(g.r1_gamma), r1_every=g.r1_every,
      ema_decay=config.ema.decay, ema_warmup=config.ema.warmup)

  return adversarial.make_family(
      config.family,
      lambda rng, batch: init_networks(generator, discriminator, rng, batch,
                                       latent_dim=latent_dim),
      g_optimizer, d_optimizer, train_step, make_sampler(generator, latent_dim=latent_dim),
      {'generator': ({}, 1)})

