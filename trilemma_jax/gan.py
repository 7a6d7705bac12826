"""The GAN family: a generator and a discriminator trained in one compiled step.

Each step updates the discriminator ``n_critic`` times on the same real batch,
each time with fresh latent noise, then the generator once, then the EMA of
the generator weights (which is what :func:`make_sampler` draws from).

Losses (see :mod:`trilemma_jax.losses`): the original min-max game
(Goodfellow et al. 2014, saturating G loss), its non-saturating variant and
the hinge loss (Lim & Ye 2017; Miyato et al. 2018). Options: R1 penalty
γ/2·||∇ₓD(x)||² on real data (Mescheder et al. 2018), lazily every ``k``
discriminator updates with γ scaled by ``k`` (Karras et al. 2020, StyleGAN2);
spectral normalisation of D (Miyato et al. 2018); class conditioning with a
projection discriminator (see :mod:`trilemma_jax.nets.gan_nets`).

State layout: ``params`` / ``opt_state`` are ``{'generator': ..., 'discriminator':
...}``; ``ema_params`` holds the generator only; ``model_state`` is
``{'discriminator': {'batch_stats': ...}}`` with spectral norm (the power-iteration
vectors, advanced by discriminator updates only) and ``{}`` without.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from trilemma_jax import losses
from trilemma_jax.nets.dcgan import ConvFeatures, ConvGenerator
from trilemma_jax.nets.gan_nets import Discriminator, Generator
from trilemma_jax.nets.mlp import MLP
from trilemma_jax.train_state import (Batch, Family, Metrics, TrainState, ema_decay_with_warmup,
                                      ema_update)

GENERATOR, DISCRIMINATOR = 'generator', 'discriminator'


def init_state(generator: Generator, discriminator: Discriminator,
               g_optimizer: optax.GradientTransformation,
               d_optimizer: optax.GradientTransformation, rng: jax.Array, example_batch: Batch,
               *, z_dim: int) -> TrainState:
  """A fresh :class:`TrainState` for the pair of networks.

  Args:
    generator, discriminator: the (unbound) modules.
    g_optimizer, d_optimizer: their optax optimisers.
    rng: the run's base key ``uint32[2]``, stored as ``state.rng``.
    example_batch: ``{'x': [B, *shape], 'label': [B]}``; only shapes are used.
    z_dim: latent dimension.
  """
  x = jnp.asarray(example_batch['x'])[:1]
  labels = jnp.zeros((1,), jnp.int32) if generator.num_classes is not None else None
  g_key, d_key = jax.random.split(rng)
  g_params = generator.init(g_key, jnp.zeros((1, z_dim), jnp.float32), labels)['params']
  d_variables = dict(discriminator.init(d_key, x, labels, update_stats=False))
  d_params = d_variables.pop('params')
  model_state = {DISCRIMINATOR: d_variables} if d_variables else {}
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params={GENERATOR: g_params, DISCRIMINATOR: d_params},
      opt_state={GENERATOR: g_optimizer.init(g_params), DISCRIMINATOR: d_optimizer.init(d_params)},
      ema_params=g_params,
      model_state=model_state,
      rng=rng,
  )


def make_train_step(generator: Generator, discriminator: Discriminator,
                    g_optimizer: optax.GradientTransformation,
                    d_optimizer: optax.GradientTransformation, *, z_dim: int,
                    loss: str = 'non_saturating', n_critic: int = 1, r1_gamma: float = 0.0,
                    r1_every: int = 1, ema_decay: float = 0.999,
                    ema_warmup: bool = True) -> Callable[[TrainState, Batch],
                                                          tuple[TrainState, Metrics]]:
  """The pure step ``(state, batch) -> (state, metrics)``: n_critic D updates, one G update.

  Args:
    generator, discriminator: the modules (conditional iff their ``num_classes`` is set;
      fakes then take the labels of the real batch).
    g_optimizer, d_optimizer: optax optimisers matching ``state.opt_state``.
    z_dim: latent dimension.
    loss: 'minimax' (saturating G loss), 'non_saturating' or 'hinge'.
    n_critic: discriminator updates per step (same real batch, fresh noise each).
    r1_gamma: weight γ of the R1 penalty γ/2·||∇ₓD(x)||²; 0 disables it.
    r1_every: apply R1 on every k-th discriminator update, weighted γ·k.
    ema_decay, ema_warmup: generator EMA (see ``ema_decay_with_warmup``).

  Returns:
    The step. Metrics (scalars; D-side ones averaged over the n_critic updates):
    ``d_loss`` (adversarial part), ``r1`` (mean ||∇ₓD(x)||², measured on every
    update even when not penalised), ``d_real`` / ``d_fake`` (mean sigmoid of
    the logits), ``logit_real`` / ``logit_fake``, ``d_grad_norm``, ``g_loss``,
    ``g_grad_norm``.
  """
  d_loss_fn, g_loss_fn = losses.gan_losses(loss)
  _check_positive_int('n_critic', n_critic)
  _check_positive_int('r1_every', r1_every)
  if r1_gamma < 0:
    raise ValueError(f'r1_gamma must be >= 0, got {r1_gamma}.')
  conditional = generator.num_classes is not None
  if conditional != (discriminator.num_classes is not None):
    raise ValueError('The generator and the discriminator must both be conditional or neither.')
  # Lazy regularisation: the penalty is applied 1/k as often, so k times stronger.
  r1_weight = 0.5 * r1_gamma * r1_every

  def d_apply(d_params, d_state, x, labels, update_stats):
    variables = {'params': d_params, **d_state}
    if update_stats and d_state:
      return discriminator.apply(variables, x, labels, update_stats=True, mutable=list(d_state))
    return discriminator.apply(variables, x, labels, update_stats=False), d_state

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    x_real = batch['x']
    labels = batch['label'] if conditional else None
    b = x_real.shape[0]
    key = state.step_rng()
    d_key, g_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    g_params = state.params[GENERATOR]
    d_state0 = state.model_state.get(DISCRIMINATOR, {})

    def r1_of(d_params, d_state):
      # Every D evaluation of one update uses the stats from before it, so they
      # all see the same normalised weights.
      logit_fn = lambda x: d_apply(d_params, d_state, x, labels, False)[0]
      return losses.r1_penalty(logit_fn, x_real)

    def d_update(carry, i):
      d_params, d_opt_state, d_state = carry
      z = jax.random.normal(jax.random.fold_in(d_key, i), (b, z_dim), x_real.dtype)
      x_fake = jax.lax.stop_gradient(generator.apply({'params': g_params}, z, labels))
      apply_r1 = (state.step * n_critic + i) % r1_every == 0

      def loss_fn(d_params):
        real_logits, new_d_state = d_apply(d_params, d_state, x_real, labels, True)
        fake_logits, _ = d_apply(d_params, d_state, x_fake, labels, False)
        adv = jnp.mean(d_loss_fn(real_logits, fake_logits))
        if r1_gamma == 0:
          r1 = r1_of(jax.lax.stop_gradient(d_params), d_state)
          total = adv
        else:
          r1 = losses.lazy_penalty(lambda p: r1_of(p, d_state), d_params, apply_r1,
                                   every=r1_every)
          total = adv + jnp.where(apply_r1, r1_weight, 0.0) * jnp.mean(r1)
        aux = (new_d_state, adv, jnp.mean(r1), real_logits, fake_logits)
        return total, aux

      grads, (new_d_state, adv, r1, real_logits, fake_logits) = jax.grad(
          loss_fn, has_aux=True)(d_params)
      updates, d_opt_state = d_optimizer.update(grads, d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, updates)
      metrics = {
          'd_loss': adv,
          'r1': r1,
          'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
          'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)),
          'logit_real': jnp.mean(real_logits),
          'logit_fake': jnp.mean(fake_logits),
          'd_grad_norm': optax.tree.norm(grads),
      }
      return (d_params, d_opt_state, new_d_state), metrics

    # A Python loop over the (few, static) D updates rather than lax.scan: XLA:CPU
    # runs the body of a while loop markedly slower (see ddgan.make_train_step).
    carry, d_metrics = (state.params[DISCRIMINATOR], state.opt_state[DISCRIMINATOR], d_state0), []
    for i in range(n_critic):
      carry, m = d_update(carry, i)
      d_metrics.append(m)
    d_params, d_opt_state, d_state = carry
    d_metrics = jax.tree.map(lambda *v: jnp.stack(v), *d_metrics)

    z = jax.random.normal(g_key, (b, z_dim), x_real.dtype)

    def g_objective(g_params):
      x_fake = generator.apply({'params': g_params}, z, labels)
      fake_logits, _ = d_apply(d_params, d_state, x_fake, labels, False)
      return jnp.mean(g_loss_fn(fake_logits))

    g_loss, g_grads = jax.value_and_grad(g_objective)(g_params)
    g_updates, g_opt_state = g_optimizer.update(g_grads, state.opt_state[GENERATOR], g_params)
    g_params = optax.apply_updates(g_params, g_updates)

    decay = ema_decay_with_warmup(state.step, ema_decay, ema_warmup)
    new_state = state.replace(
        step=state.step + 1,
        params={GENERATOR: g_params, DISCRIMINATOR: d_params},
        opt_state={GENERATOR: g_opt_state, DISCRIMINATOR: d_opt_state},
        ema_params=ema_update(state.ema_params, g_params, decay),
        model_state={DISCRIMINATOR: d_state} if d_state else {},
    )
    metrics = {k: jnp.mean(v) for k, v in d_metrics.items()}
    metrics['g_loss'] = g_loss
    metrics['g_grad_norm'] = optax.tree.norm(g_grads)
    return new_state, metrics

  return train_step


def make_sampler(generator: Generator, *, z_dim: int) -> Callable[..., jax.Array]:
  """``sample(state, rng, n, *, label=None) -> [n, *shape]`` from the EMA generator (NFE 1).

  A conditional generator draws labels uniformly, or uses ``label`` (a static
  int) for all ``n`` samples.
  """
  num_classes = generator.num_classes

  def sample(state: TrainState, rng: jax.Array, n: int, *, label: int | None = None) -> jax.Array:
    z_key, y_key = jax.random.split(rng)
    z = jax.random.normal(z_key, (n, z_dim), jnp.float32)
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
    return generator.apply({'params': state.ema_params}, z, labels)

  return sample


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f'{name} must be a positive integer, got {value!r}.')


def build_networks(config: ml_collections.ConfigDict, info: Any) -> tuple[Generator,
                                                                            Discriminator]:
  """The generator and discriminator for ``info``: MLPs for points, DCGAN nets for images."""
  m, g = config.model, config.gan
  num_classes = None
  if g.conditional:
    if not info.num_classes:
      raise ValueError(
          f'config.gan.conditional=True needs labelled data, but {info.name} has no '
          'num_classes; set --config.gan.conditional=False.')
    num_classes = info.num_classes
  shape = tuple(info.shape)
  if info.kind == 'points':
    g_body = MLP(widths=tuple(m.g_widths), out_dim=math.prod(shape), activation=m.g_activation)
    trunk = MLP(widths=tuple(m.d_widths), activation=m.d_activation,
                spectral_norm=g.spectral_norm)
  elif info.kind == 'image':
    g_body = ConvGenerator(image_shape=shape, channels=tuple(m.g_channels),
                           activation=m.g_activation)
    g_body.base_resolution()  # fail here, not inside init, if the shape does not fit
    trunk = ConvFeatures(channels=tuple(m.d_channels), activation=m.d_activation,
                         spectral_norm=g.spectral_norm)
  else:
    raise ValueError(f"Unknown data kind {info.kind!r}; expected 'points' or 'image'.")
  generator = Generator(body=g_body, out_shape=shape, num_classes=num_classes,
                        embed_dim=m.embed_dim)
  discriminator = Discriminator(trunk=trunk, num_classes=num_classes,
                                spectral_norm=g.spectral_norm)
  return generator, discriminator


def build_family(config: ml_collections.ConfigDict, info: Any) -> Family:
  """The GAN :class:`Family` for ``config`` (``experiments/configs/gan.py``) on ``info``."""
  _check_positive_int('config.model.z_dim', config.model.z_dim)
  generator, discriminator = build_networks(config, info)
  o = config.optim
  g_optimizer = optax.adam(o.g_lr, b1=o.b1, b2=o.b2)
  d_optimizer = optax.adam(o.d_lr, b1=o.b1, b2=o.b2)
  z_dim = config.model.z_dim
  try:
    train_step = make_train_step(
        generator, discriminator, g_optimizer, d_optimizer, z_dim=z_dim,
        loss=config.gan.loss, n_critic=config.gan.n_critic, r1_gamma=float(config.gan.r1_gamma),
        r1_every=config.gan.r1_every, ema_decay=config.ema.decay, ema_warmup=config.ema.warmup)
  except ValueError as e:
    raise ValueError(f'config.gan: {e}') from None

  def init(rng: jax.Array, example_batch: Batch) -> TrainState:
    return init_state(generator, discriminator, g_optimizer, d_optimizer, rng, example_batch,
                      z_dim=z_dim)

  return Family(
      name='gan',
      init=init,
      train_step=train_step,
      sample=make_sampler(generator, z_dim=z_dim),
      samplers={'generator': ({}, 1)},
      evaluate=None,
  )
