"""The denoising diffusion GAN family (Xiao, Kreis & Vahdat, ICLR 2022).

A diffusion with few large steps (T = 1, 2, 4, 8) whose reverse step is a
conditional GAN instead of a Gaussian: the generator predicts the clean data,
``x0_hat = G(x_t, z, t)`` with a latent ``z``, and the step draws
``x_{t-1} ~ q(x_{t-1} | x_t, x_0 = x0_hat)`` (the Gaussian posterior of the
forward process, :func:`trilemma_jax.diffusion.posterior_sample`). The
discriminator ``D(x_{t-1}, x_t, t)`` tells the real pairs of the forward chain
from these fake pairs. T = 1 is a one-shot GAN with the same networks
(``x_1`` is nearly pure noise and ``x_0 = G(x_1, z, 1)``).

Time indices follow :mod:`trilemma_jax.diffusion`: ``t`` in ``1..T``, index 0 is
the data, the schedule is the official VP discretisation
(:func:`~trilemma_jax.diffusion.ddgan_vp_schedule`).

One compiled step (official ``train_ddgan.py`` order): ``n_critic`` discriminator
updates, then one generator update on fresh ``t``, pairs and ``z``, then the EMA of
the generator.

* Real pair: ``x_{t-1} ~ q(x_{t-1} | x_0)`` then ``x_t ~ q(x_t | x_{t-1})``.
* Fake pair: ``x0_hat = G(x_t, z, t)``, ``x'_{t-1} ~ q(x_{t-1} | x_t, x0_hat)``,
  scored as ``D(x'_{t-1}, x_t, t)``.
* Losses (non-saturating): D ``softplus(-D(real)) + softplus(D(fake))``, G
  ``softplus(-D(fake))``; R1 ``gamma/2 ||grad_{x_{t-1}} D(real)||^2`` on the real
  ``x_{t-1}`` (``x_t`` held fixed), applied on every ``r1_every``-th
  discriminator update. Lazy R1 follows the official code: the penalty is NOT
  multiplied by ``r1_every`` (StyleGAN2 and :mod:`trilemma_jax.gan` do), so the
  official gamma = 0.02 every 15 steps means what it meant there; the average
  strength is ``gamma / r1_every``.

Data scale: the schedule assumes data of roughly unit scale (``x_T`` has
variance ~1). ``data_scale`` multiplies the data on the way in and divides the
samples on the way out, so a run on the 2-D mixtures (coordinates up to 4)
can train on unit-scale data while every sample comes back in data
coordinates.

State layout (as :mod:`trilemma_jax.gan`): ``params`` / ``opt_state`` are
``{'generator': ..., 'discriminator': ...}``; ``ema_params`` holds the generator
only; ``model_state`` is ``{}``.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from trilemma_jax import diffusion, losses
from trilemma_jax.diffusion import Schedule
from trilemma_jax.nets.ddgan_nets import (ConvDiscriminator, MLPDiscriminator, MLPGenerator,
                                          SkipGenerator, UNetGenerator)
from trilemma_jax.train_state import (Batch, Family, Metrics, TrainState, ema_decay_with_warmup,
                                      ema_update)

GENERATOR, DISCRIMINATOR = 'generator', 'discriminator'


# ------------------------------------------------------------------ the pairs


def sample_t(key: jax.Array, batch: int, num_steps: int) -> jax.Array:
  """``[batch]`` int32 time indices, uniform in ``1..num_steps``."""
  return jax.random.randint(key, (batch,), 1, num_steps + 1, dtype=jnp.int32)


def real_pairs(schedule: Schedule, x0: jax.Array, t: jax.Array,
               key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A draw of ``(x_{t-1}, x_t)`` from the forward chain started at ``x0``.

  ``x_{t-1} ~ q(x_{t-1} | x_0)`` then ``x_t ~ q(x_t | x_{t-1})`` (the official
  ``q_sample_pairs``), so the pair has the joint law of the chain.

  Args:
    schedule: the noise schedule.
    x0: ``[B, ...]`` data (already scaled).
    t: ``[B]`` int in ``1..T``.
    key: randomness of the two noises.

  Returns:
    ``(x_prev, x_t)``, both ``[B, ...]``.
  """
  k1, k2 = jax.random.split(key)
  x_prev = diffusion.q_sample(schedule, x0, t - 1, jax.random.normal(k1, x0.shape, x0.dtype))
  x_t = diffusion.q_step_sample(schedule, x_prev, t, jax.random.normal(k2, x0.shape, x0.dtype))
  return x_prev, x_t


def fake_prev(schedule: Schedule, x0_hat: jax.Array, x_t: jax.Array, t: jax.Array,
              key: jax.Array) -> jax.Array:
  """``x'_{t-1} ~ q(x_{t-1} | x_t, x_0 = x0_hat)``: the generator's reverse step, ``[B, ...]``.

  Exactly ``x0_hat`` at ``t = 1`` (the posterior variance is 0 there).
  """
  noise = jax.random.normal(key, x_t.shape, x_t.dtype)
  return diffusion.posterior_sample(schedule, x0_hat, x_t, t, noise)


def update_inputs(schedule: Schedule, generator_fn: Callable[[jax.Array, jax.Array, jax.Array],
                                                               jax.Array],
                  x0: jax.Array, key: jax.Array, *, nz: int) -> dict[str, jax.Array]:
  """Everything one discriminator or generator update looks at.

  ``key`` is split four ways, in this order: ``t``, the real pair, ``z``, the
  posterior noise of the fake step.

  Args:
    schedule: the noise schedule.
    generator_fn: ``(x_t, z, t) -> x0_hat``.
    x0: ``[B, ...]`` data (already scaled).
    key: randomness of the update.
    nz: latent dimension.

  Returns:
    ``t`` ``[B]``, the real pair ``x_prev`` / ``x_t``, ``z`` ``[B, nz]``, ``x0_hat``
    and the fake ``x_fake`` (= ``x'_{t-1}``), all ``[B, ...]``.
  """
  t_key, pair_key, z_key, post_key = jax.random.split(key, 4)
  b = x0.shape[0]
  t = sample_t(t_key, b, schedule.num_steps)
  x_prev, x_t = real_pairs(schedule, x0, t, pair_key)
  z = jax.random.normal(z_key, (b, nz), x0.dtype)
  x0_hat = generator_fn(x_t, z, t)
  return {'t': t, 'x_prev': x_prev, 'x_t': x_t, 'z': z, 'x0_hat': x0_hat,
          'x_fake': fake_prev(schedule, x0_hat, x_t, t, post_key)}


# --------------------------------------------------------------- state, step


def init_state(generator: nn.Module, discriminator: nn.Module,
               g_optimizer: optax.GradientTransformation,
               d_optimizer: optax.GradientTransformation, rng: jax.Array, example_batch: Batch,
               *, nz: int) -> TrainState:
  """A fresh :class:`TrainState` for the pair of networks.

  Args:
    generator: module called as ``G(x_t, z, t)``.
    discriminator: module called as ``D(x_prev, x_t, t)``.
    g_optimizer, d_optimizer: their optax optimisers.
    rng: the run's base key ``uint32[2]``, stored as ``state.rng``.
    example_batch: ``{'x': [B, *shape], ...}``; only the shape is used.
    nz: latent dimension.
  """
  x = jnp.zeros_like(jnp.asarray(example_batch['x'])[:1])
  t = jnp.ones((1,), jnp.int32)
  g_key, d_key = jax.random.split(rng)
  g_params = generator.init(g_key, x, jnp.zeros((1, nz), x.dtype), t)['params']
  d_params = discriminator.init(d_key, x, x, t)['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params={GENERATOR: g_params, DISCRIMINATOR: d_params},
      opt_state={GENERATOR: g_optimizer.init(g_params), DISCRIMINATOR: d_optimizer.init(d_params)},
      ema_params=g_params,
      model_state={},
      rng=rng,
  )


def make_train_step(generator: nn.Module, discriminator: nn.Module,
                    g_optimizer: optax.GradientTransformation,
                    d_optimizer: optax.GradientTransformation, schedule: Schedule, *, nz: int,
                    data_scale: float = 1.0, n_critic: int = 1, r1_gamma: float = 0.02,
                    r1_every: int = 1, ema_decay: float = 0.999,
                    ema_warmup: bool = True) -> Callable[[TrainState, Batch],
                                                          tuple[TrainState, Metrics]]:
  """The pure step ``(state, batch) -> (state, metrics)`` (see the module docstring).

  Args:
    generator, discriminator: the modules.
    g_optimizer, d_optimizer: optax optimisers matching ``state.opt_state``.
    schedule: the diffusion with ``T = schedule.num_steps`` steps.
    nz: latent dimension.
    data_scale: the networks see ``data_scale * batch['x']``.
    n_critic: discriminator updates per step (same real batch, fresh t, pairs, z).
    r1_gamma: gamma of the R1 penalty gamma/2 ||grad D(real)||^2; 0 disables it.
    r1_every: apply R1 on every k-th discriminator update (not rescaled by k).
    ema_decay, ema_warmup: generator EMA (see ``ema_decay_with_warmup``).

  Returns:
    The step. Metrics (scalars; D-side ones averaged over the n_critic updates):
    ``d_loss`` (adversarial part), ``r1`` (mean ||grad D||^2, measured on every
    update), ``d_real`` / ``d_fake`` (mean sigmoid of the logits),
    ``logit_real`` / ``logit_fake``, ``d_grad_norm``, ``g_loss``, ``g_grad_norm``,
    ``x0_rmse`` (root mean squared error of the generator's ``x0_hat`` against
    the ``x0`` that made ``x_t``, in data units; not a training target).
  """
  _check_positive_int('n_critic', n_critic)
  _check_positive_int('r1_every', r1_every)
  if r1_gamma < 0:
    raise ValueError(f'r1_gamma must be >= 0, got {r1_gamma}.')
  if not data_scale > 0:
    raise ValueError(f'data_scale must be positive, got {data_scale}.')

  def g_apply(g_params, x_t, z, t):
    return generator.apply({'params': g_params}, x_t, z, t)

  def d_apply(d_params, x_prev, x_t, t):
    return discriminator.apply({'params': d_params}, x_prev, x_t, t)

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    x0 = batch['x'] * data_scale
    key = state.step_rng()
    d_key, g_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    g_params = state.params[GENERATOR]

    def d_update(carry, i):
      d_params, d_opt_state = carry
      u = update_inputs(schedule, lambda *a: g_apply(g_params, *a), x0,
                        jax.random.fold_in(d_key, i), nz=nz)
      t, x_prev, x_t = u['t'], u['x_prev'], u['x_t']
      x_fake = jax.lax.stop_gradient(u['x_fake'])
      apply_r1 = (state.step * n_critic + i) % r1_every == 0

      def r1_of(p):
        return losses.r1_penalty(lambda v: d_apply(p, v, x_t, t), x_prev)

      def loss_fn(d_params):
        real_logits = d_apply(d_params, x_prev, x_t, t)
        fake_logits = d_apply(d_params, x_fake, x_t, t)
        adv = jnp.mean(losses.d_loss_minimax(real_logits, fake_logits))
        if r1_gamma == 0:
          r1 = r1_of(jax.lax.stop_gradient(d_params))
          total = adv
        else:
          r1 = losses.lazy_penalty(r1_of, d_params, apply_r1, every=r1_every)
          total = adv + jnp.where(apply_r1, 0.5 * r1_gamma, 0.0) * jnp.mean(r1)
        return total, (adv, jnp.mean(r1), real_logits, fake_logits)

      grads, (adv, r1, real_logits, fake_logits) = jax.grad(loss_fn, has_aux=True)(d_params)
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
      return (d_params, d_opt_state), metrics

    # A Python loop (n_critic is small and static), not lax.scan: inside XLA's
    # while loop the conv nets of a step ran ~5x slower on CPU (0.25 s against
    # 1.3 s per digits step, also with unroll=True).
    carry, d_metrics = (state.params[DISCRIMINATOR], state.opt_state[DISCRIMINATOR]), []
    for i in range(n_critic):
      carry, m = d_update(carry, i)
      d_metrics.append(m)
    d_params, d_opt_state = carry
    d_metrics = jax.tree.map(lambda *v: jnp.stack(v), *d_metrics)

    def g_objective(g_params):
      u = update_inputs(schedule, lambda *a: g_apply(g_params, *a), x0, g_key, nz=nz)
      logits = d_apply(d_params, u['x_fake'], u['x_t'], u['t'])
      return jnp.mean(losses.g_loss_non_saturating(logits)), u['x0_hat']

    (g_loss, x0_hat), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_params)
    g_updates, g_opt_state = g_optimizer.update(g_grads, state.opt_state[GENERATOR], g_params)
    g_params = optax.apply_updates(g_params, g_updates)

    decay = ema_decay_with_warmup(state.step, ema_decay, ema_warmup)
    new_state = state.replace(
        step=state.step + 1,
        params={GENERATOR: g_params, DISCRIMINATOR: d_params},
        opt_state={GENERATOR: g_opt_state, DISCRIMINATOR: d_opt_state},
        ema_params=ema_update(state.ema_params, g_params, decay),
    )
    metrics = {k: jnp.mean(v) for k, v in d_metrics.items()}
    metrics['g_loss'] = g_loss
    metrics['g_grad_norm'] = optax.tree.norm(g_grads)
    metrics['x0_rmse'] = jnp.sqrt(jnp.mean(jnp.square(x0_hat - x0))) / data_scale
    return new_state, metrics

  return train_step


# ------------------------------------------------------------------- sampling


def sample_chain(generator: nn.Module, g_params: Any, schedule: Schedule, rng: jax.Array,
                 x_T: jax.Array, *, nz: int) -> jax.Array:
  """Runs the reverse chain ``x_T -> x_0`` in T compiled steps (``lax.scan``); NFE = T.

  Step ``t = T..1``: ``x0_hat = G(x_t, z_t, t)`` with a fresh ``z_t``, then
  ``x_{t-1} ~ q(x_{t-1} | x_t, x0_hat)``; at ``t = 1`` this is ``x0_hat`` itself.
  The randomness of step ``t`` comes from ``fold_in(rng, t)``.

  Args:
    generator: module called as ``G(x_t, z, t)``.
    g_params: its parameters (the EMA ones for sampling).
    schedule: the diffusion.
    rng: key of the latents and posterior noises.
    x_T: ``[n, ...]`` the starting noise (network scale).
    nz: latent dimension.

  Returns:
    ``[n, ...]`` samples on the network's scale.
  """
  n = x_T.shape[0]

  def step(x, t):
    z_key, noise_key = jax.random.split(jax.random.fold_in(rng, t))
    tb = jnp.full((n,), t, jnp.int32)
    z = jax.random.normal(z_key, (n, nz), x.dtype)
    x0_hat = generator.apply({'params': g_params}, x, z, tb)
    return fake_prev(schedule, x0_hat, x, tb, noise_key), None

  ts = jnp.arange(schedule.num_steps, 0, -1, dtype=jnp.int32)
  x, _ = jax.lax.scan(step, x_T, ts)
  return x


def make_sampler(generator: nn.Module, schedule: Schedule, shape: tuple[int, ...], *, nz: int,
                 data_scale: float = 1.0) -> Callable[..., jax.Array]:
  """``sample(state, rng, n) -> [n, *shape]`` in data coordinates from the EMA generator."""

  def sample(state: TrainState, rng: jax.Array, n: int) -> jax.Array:
    prior_key, chain_key = jax.random.split(rng)
    x_T = jax.random.normal(prior_key, (n, *shape), jnp.float32)
    return sample_chain(generator, state.ema_params, schedule, chain_key, x_T, nz=nz) / data_scale

  return sample


# --------------------------------------------------------------------- config


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f'{name} must be a positive integer, got {value!r}.')


def build_networks(config: ml_collections.ConfigDict, info: Any) -> tuple[nn.Module, nn.Module]:
  """The generator and discriminator for ``info``: MLPs for points, U-Net/conv for images."""
  m = config.model
  time_scale = 1000.0 / config.ddgan.num_steps
  if info.kind == 'points':
    generator = MLPGenerator(width=m.g_width, num_blocks=m.g_blocks, z_dim_emb=m.z_emb_dim,
                             mapping_layers=m.mapping_layers, time_dim=m.time_dim,
                             num_groups=m.num_groups, activation=m.g_activation,
                             fourier_octaves=m.g_fourier_octaves,
                             time_scale=time_scale)
    discriminator = MLPDiscriminator(widths=tuple(m.d_widths), time_dim=m.time_dim,
                                     activation=m.d_activation,
                                     fourier_octaves=m.d_fourier_octaves, time_scale=time_scale)
  elif info.kind == 'image':
    generator = UNetGenerator(ch=m.ch, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                              z_dim_emb=m.z_emb_dim, mapping_layers=m.mapping_layers,
                              num_groups=m.num_groups, activation=m.g_activation,
                              time_scale=time_scale)
    discriminator = ConvDiscriminator(channels=tuple(m.d_channels), time_dim=m.time_dim,
                                      activation=m.d_activation, time_scale=time_scale)
  else:
    raise ValueError(f"Unknown data kind {info.kind!r}; expected 'points' or 'image'.")
  if config.ddgan.sigma_data:
    schedule = diffusion.ddgan_vp_schedule(config.ddgan.num_steps, beta_min=config.ddgan.beta_min,
                                           beta_max=config.ddgan.beta_max)
    generator = SkipGenerator(generator, tuple(float(a) for a in schedule.alpha_bars),
                              float(config.ddgan.sigma_data))
  return generator, discriminator


def _optimizer(lr: float, o: ml_collections.ConfigDict,
               steps: int) -> optax.GradientTransformation:
  # Official recipe: cosine annealing of both learning rates down to 1e-5.
  schedule = optax.cosine_decay_schedule(lr, steps, alpha=min(o.min_lr / lr, 1.0)) \
      if o.cosine_decay else lr
  return optax.adam(schedule, b1=o.b1, b2=o.b2)


def build_family(config: ml_collections.ConfigDict, info: Any) -> Family:
  """The DDGAN :class:`Family` for ``config`` (``experiments/configs/ddgan.py``) on ``info``."""
  d = config.ddgan
  if isinstance(d.num_steps, bool) or not isinstance(d.num_steps, int) or d.num_steps < 1:
    raise ValueError(
        f'config.ddgan.num_steps must be a positive integer (the paper uses 1, 2, 4, 8), '
        f'got {d.num_steps!r}.')
  _check_positive_int('config.model.nz', config.model.nz)
  _check_positive_int('config.ddgan.n_critic', d.n_critic)
  if not d.data_scale > 0:
    raise ValueError(f'config.ddgan.data_scale must be positive, got {d.data_scale}.')
  schedule = diffusion.ddgan_vp_schedule(d.num_steps, beta_min=d.beta_min, beta_max=d.beta_max)
  generator, discriminator = build_networks(config, info)
  o = config.optim
  g_optimizer = _optimizer(o.g_lr, o, config.train.steps)
  d_optimizer = _optimizer(o.d_lr, o, config.train.steps * d.n_critic)
  nz = config.model.nz
  try:
    train_step = make_train_step(
        generator, discriminator, g_optimizer, d_optimizer, schedule, nz=nz,
        data_scale=float(d.data_scale), n_critic=d.n_critic, r1_gamma=float(d.r1_gamma),
        r1_every=d.r1_every, ema_decay=config.ema.decay, ema_warmup=config.ema.warmup)
  except ValueError as e:
    raise ValueError(f'config.ddgan: {e}') from None

  def init(rng: jax.Array, example_batch: Batch) -> TrainState:
    return init_state(generator, discriminator, g_optimizer, d_optimizer, rng, example_batch,
                      nz=nz)

  return Family(
      name='ddgan',
      init=init,
      train_step=train_step,
      sample=make_sampler(generator, schedule, tuple(info.shape), nz=nz,
                          data_scale=float(d.data_scale)),
      samplers={f'ddgan{d.num_steps}': ({}, d.num_steps)},
      evaluate=None,
  )
