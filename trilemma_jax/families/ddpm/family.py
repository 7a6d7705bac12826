"""DDPM (Ho et al. 2020): noise-prediction training, ancestral and DDIM samplers, bits/dim.

The denoiser is any ``apply_fn(params, x_t, t, rng) -> output`` with ``t`` the
integer step ``[B]`` in ``1..T`` (see :mod:`trilemma_jax.diffusion` for the index
convention); its output is read as ε, x0 or v (``prediction``).

Likelihood: :func:`variational_bound` evaluates Ho et al.'s bound
``L_T + Σ_{t=2..T} L_{t-1} + L_0`` per example, where ``L_0 = -log p(x_0|x_1)`` is
a discretised Gaussian over the data's ``levels`` bins of width
``Δ = 2 / (levels - 1)`` on [-1, 1]. That is a bound on the discrete
``-log P(x)``, the scale of the VAE's dequantised IWAE NLL (density minus
``D log Δ``). For data without levels (2-D points) ``L_0`` is a Gaussian density
and the result a differential (continuous) bits/dim. The middle sum is exact
(all ``T - 1`` KL terms, one model call each, in a ``lax.scan``) by default, or
an unbiased systematic-sampling estimate from ``num_terms`` of them.

The denoiser computes in ``config.model.compute_dtype``; the family's
``apply_fn`` casts its output to float32, so the loss, the bound and every
sampler step run in float32 under mixed precision too.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from trilemma_jax import config as config_lib
from trilemma_jax import diffusion as dm
from trilemma_jax import losses, perf
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families.ddpm.nets import TimeMLP, UNet
from trilemma_jax.train_state import (Family, TrainState, ema_decay_with_warmup, ema_update,
                                      new_state)

# (params, x_t [B, ...], t int32 [B], rng) -> network output [B, ...]
ApplyFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]
SAMPLERS = ('ancestral', 'ddim')
NET = 'denoiser'  # the one network's key in params and ema


# ------------------------------------------------------------------ training


def diffusion_loss(apply_fn: ApplyFn, params, schedule: dm.Schedule, x0: jax.Array,
                   rng: jax.Array, *, prediction: str = 'eps') -> jax.Array:
  """Ho et al.'s simple loss per example ``[B]``, t uniform in ``1..T``.

  ``|| target - f(sqrt(ab_t) x0 + sqrt(1 - ab_t) ε, t) ||²`` averaged over the
  dimensions, with target ε, x0 or v by ``prediction``.
  """
  key_t, key_noise, key_model = jax.random.split(rng, 3)
  t = jax.random.randint(key_t, (x0.shape[0],), 1, schedule.num_steps + 1)
  noise = jax.random.normal(key_noise, x0.shape, x0.dtype)
  xt = dm.q_sample(schedule, x0, t, noise)
  target = dm.prediction_target(schedule, prediction, x0, t, noise)
  return losses.mse_per_example(target, apply_fn(params, xt, t, key_model))


def make_train_step(apply_fn: ApplyFn, optimizer: optax.GradientTransformation,
                    schedule: dm.Schedule, *, prediction: str, ema_decay: float,
                    ema_warmup: bool = True):
  """``(state, batch) -> (state, metrics)``: one optimiser step on the mean simple loss."""

  def train_step(state: TrainState, batch):
    def loss_fn(params):
      per_example = diffusion_loss(apply_fn, params[NET], schedule, batch['x'],
                                   state.step_rng(), prediction=prediction)
      return jnp.mean(per_example)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay_with_warmup(state.step, ema_decay, ema_warmup)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         ema={NET: ema_update(state.ema[NET], params[NET], decay)}), metrics

  return train_step


LR_SCHEDULES = ('constant', 'cosine')


def make_optimizer(lr: float, *, warmup_steps: int = 0, decay: str = 'constant',
                   total_steps: int = 0, b1: float = 0.9, b2: float = 0.999,
                   grad_clip: float = 1.0) -> optax.GradientTransformation:
  """Adam with linear warm-up, then a constant (Ho et al.) or cosine-decayed rate; clipping.

  Args:
    lr: peak learning rate.
    warmup_steps: linear warm-up from 0.
    decay: 'constant' or 'cosine' (to 0 at ``total_steps``).
    total_steps: length of the run (needed by 'cosine').
    b1, b2: Adam moments.
    grad_clip: global-norm clip; 0 disables it.
  """
  if decay == 'constant':
    rate = optax.linear_schedule(0.0, lr, warmup_steps) if warmup_steps > 0 else lr
  elif decay == 'cosine':
    if total_steps <= warmup_steps:
      raise ValueError(
          f'A cosine learning-rate decay needs total_steps ({total_steps}) > warmup_steps '
          f'({warmup_steps}).')
    rate = optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, total_steps)
  else:
    raise ValueError(f'Unknown learning-rate decay {decay!r}; expected one of {LR_SCHEDULES}.')
  chain = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
  return optax.chain(*chain, optax.adam(rate, b1=b1, b2=b2))


# ------------------------------------------------------------------ sampling


def make_denoise_fn(apply_fn: ApplyFn, params, schedule: dm.Schedule, *, prediction: str,
                    clip_x0: bool) -> dm.DenoiseFn:
  """The network as a :data:`~trilemma_jax.diffusion.DenoiseFn` ``-> (x0_hat, eps_hat)``."""

  def denoise(xt, t, rng):
    out = apply_fn(params, xt, t, rng)
    return dm.x0_eps_from_output(schedule, prediction, xt, t, out, clip_x0)

  return denoise


def sample(apply_fn: ApplyFn, params, schedule: dm.Schedule, rng: jax.Array, n: int,
           shape: tuple[int, ...], *, prediction: str = 'eps', clip_x0: bool = False,
           variance: str = 'beta', sampler: str = 'ancestral', steps: int | None = None,
           eta: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """``n`` samples from x_T ~ N(0, I) with a compiled sampler.

  Args:
    apply_fn, params: the denoiser.
    schedule: the noise schedule it was trained with.
    rng: key (x_T from one half, the per-step noise from the other).
    n: number of samples (static).
    shape: per-example shape.
    prediction: what the network outputs ('eps', 'x0', 'v').
    clip_x0: clip the x0 estimate to [-1, 1] at every step (images).
    variance: ancestral sampler's sigma_t²: 'beta' or 'beta_tilde'.
    sampler: 'ancestral' (T model calls) or 'ddim' (``steps`` calls).
    steps: DDIM steps in 1..T (static); ignored by 'ancestral'.
    eta: DDIM stochasticity (0 = deterministic).

  Returns:
    ``(samples [n, *shape], nfe)`` with nfe the int32 count of model calls.
  """
  key_init, key_loop = jax.random.split(rng)
  x_T = jax.random.normal(key_init, (n, *shape))
  denoise = make_denoise_fn(apply_fn, params, schedule, prediction=prediction, clip_x0=clip_x0)
  if sampler == 'ancestral':
    return dm.ancestral_sample(schedule, denoise, x_T, key_loop,
                               log_variance=dm.reverse_log_variance(schedule, variance))
  if sampler == 'ddim':
    if steps is None:
      raise ValueError("The 'ddim' sampler needs steps=<number of model calls>.")
    return dm.ddim_sample(schedule, denoise, x_T, key_loop, steps=steps, eta=eta)
  raise ValueError(f'Unknown sampler {sampler!r}; expected one of {SAMPLERS}.')


# ---------------------------------------------------------------- likelihood


def _kl_term_times(num_steps: int, num_terms: int, k: jax.Array, offset: jax.Array) -> jax.Array:
  """The ``k``-th of ``num_terms`` times in ``2..T`` per example, ``[B]``.

  Systematic sampling in integers: with ``s = k (T-1) + offset``, ``offset``
  uniform in ``0..T-2``, ``t = 2 + s // num_terms`` visits every step with
  probability ``num_terms / (T-1)`` (so ``(T-1)/num_terms`` times the sum of the
  visited terms is unbiased), and ``num_terms = T - 1`` visits each step once.
  """
  return 2 + (k * (num_steps - 1) + offset) // num_terms


def variational_bound(apply_fn: ApplyFn, params, schedule: dm.Schedule, x0: jax.Array,
                      rng: jax.Array, *, prediction: str = 'eps', clip_x0: bool = False,
                      variance: str = 'beta', bin_width: float | None = None,
                      num_terms: int = 0) -> dict[str, jax.Array]:
  """Ho et al.'s variational bound on ``-log p(x_0)`` per example, in nats.

  Args:
    apply_fn, params: the denoiser (deterministic evaluation).
    schedule: its noise schedule, T >= 1.
    x0: ``[B, ...]`` test data (on the level grid in [-1, 1] if ``bin_width``).
    rng: key for the ``x_t`` draws.
    prediction, clip_x0: how the network output becomes an x0 estimate.
    variance: the reverse process' fixed sigma_t² ('beta' or 'beta_tilde').
    bin_width: ``2 / (levels - 1)`` for the discretised decoder ``L_0``; None
      for a Gaussian density decoder (continuous data).
    num_terms: KL terms ``t = 2..T`` evaluated; 0 means all ``T - 1`` (exact
      sum), else an unbiased estimate from that many (static, ``<= T - 1``).

  Returns:
    ``{'prior', 'diffusion', 'decoder', 'total'}``, each ``[B]`` nats:
    ``L_T``, ``Σ_{t>=2} L_{t-1}`` (or its estimate), ``L_0``, and their sum.
  """
  num_steps = schedule.num_steps
  num_terms = num_terms or num_steps - 1
  if num_steps > 1 and not 1 <= num_terms <= num_steps - 1:
    raise ValueError(
        f'num_terms={num_terms} KL terms requested but T={num_steps} has {num_steps - 1}; '
        'use 0 for all of them.')
  batch = x0.shape[0]
  log_var = dm.reverse_log_variance(schedule, variance)
  key_offset, key_loop, key_decoder = jax.random.split(rng, 3)

  def x0_estimate(t, key):
    key_noise, key_model = jax.random.split(key)
    xt = dm.q_sample(schedule, x0, t, jax.random.normal(key_noise, x0.shape, x0.dtype))
    out = apply_fn(params, xt, t, key_model)
    x0_hat, _ = dm.x0_eps_from_output(schedule, prediction, xt, t, out, clip_x0)
    return xt, x0_hat

  diffusion = jnp.zeros((batch,), jnp.float32)
  if num_steps > 1:
    offset = jax.random.randint(key_offset, (batch,), 0, num_steps - 1)

    def kl_term(total, k):
      t = _kl_term_times(num_steps, num_terms, k, offset)
      xt, x0_hat = x0_estimate(t, jax.random.fold_in(key_loop, k))
      true_mean, _, true_log_var = dm.posterior_mean_variance(schedule, x0, xt, t)
      model_mean, _, _ = dm.posterior_mean_variance(schedule, x0_hat, xt, t)
      model_log_var = log_var[t].reshape((batch,) + (1,) * (x0.ndim - 1))
      kl = dm.normal_kl(true_mean, true_log_var, model_mean, model_log_var)
      return total + losses.sum_except_batch(kl), None

    diffusion, _ = jax.lax.scan(kl_term, diffusion, jnp.arange(num_terms, dtype=jnp.int32))
    diffusion = diffusion * ((num_steps - 1) / num_terms)

  # At t = 1 the posterior mean is x0 itself, so the decoder is centred on x0_hat.
  t1 = jnp.ones((batch,), jnp.int32)
  _, x0_hat = x0_estimate(t1, key_decoder)
  if bin_width is None:
    decoder = -losses.gaussian_log_prob(x0, x0_hat, jnp.broadcast_to(log_var[1], x0.shape))
  else:
    decoder = -losses.sum_except_batch(
        dm.discretized_gaussian_log_likelihood(x0, x0_hat, 0.5 * log_var[1], bin_width))
  prior = dm.prior_kl(schedule, x0)
  return {'prior': prior, 'diffusion': diffusion, 'decoder': decoder,
          'total': prior + diffusion + decoder}


# ------------------------------------------------------------------ the family


def make_denoiser(config: ml_collections.ConfigDict, info: DatasetInfo) -> nn.Module:
  """A :class:`TimeMLP` for points, a :class:`UNet` for images (``config.model.<kind>``)."""
  m = config.model[info.kind]
  dtype = config_lib.compute_dtype(config)
  if info.kind == 'points':
    return TimeMLP(hidden=tuple(m.hidden), time_dim=m.time_dim, dtype=dtype)
  return UNet(ch=m.ch, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
              attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout,
              num_groups=m.num_groups, dtype=dtype)


def build_family(config: ml_collections.ConfigDict, info: DatasetInfo) -> Family:
  """The DDPM :class:`Family` for a validated ``config`` on ``info``."""
  d, o = config.ddpm, config.optim
  schedule = dm.get_schedule(d.schedule, d.timesteps)
  net = make_denoiser(config, info)
  optimizer = make_optimizer(o.lr, warmup_steps=o.warmup_steps, decay=o.decay,
                             total_steps=config.train.steps, b1=o.b1, b2=o.b2,
                             grad_clip=o.grad_clip)
  clip_x0 = info.kind == 'image' if d.clip_x0 is None else bool(d.clip_x0)
  bin_width = None if info.levels is None else 2.0 / (info.levels - 1)
  dim = math.prod(info.shape)

  def train_apply(params, xt, t, rng):
    out = net.apply({'params': params}, xt, t, train=True, rngs={'dropout': rng})
    return out.astype(jnp.float32)

  def eval_apply(params, xt, t, rng):
    del rng
    return net.apply({'params': params}, xt, t, train=False).astype(jnp.float32)

  def init(rng, example_batch):
    x = jnp.asarray(example_batch['x'])
    t = jnp.ones((x.shape[0],), jnp.int32)
    params = {NET: net.init({'params': perf.param_init_key(rng)}, x, t)['params']}
    return new_state(params, optimizer.init(params), rng, ema=params)

  def sample_fn(state, rng, n, *, sampler='ancestral', steps=None, eta=0.0):
    x, _ = sample(eval_apply, state.ema[NET], schedule, rng, n, info.shape,
                  prediction=d.prediction, clip_x0=clip_x0, variance=d.variance,
                  sampler=sampler, steps=steps, eta=eta)
    return x

  def evaluate(state, batch, rng):
    terms = variational_bound(eval_apply, state.ema[NET], schedule, batch['x'], rng,
                              prediction=d.prediction, clip_x0=clip_x0, variance=d.variance,
                              bin_width=bin_width, num_terms=d.vb_terms)
    to_bpd = 1.0 / (dim * math.log(2.0))
    return {'nll_bits_per_dim': terms['total'] * to_bpd,
            'prior_bits_per_dim': terms['prior'] * to_bpd,
            'diffusion_bits_per_dim': terms['diffusion'] * to_bpd,
            'decoder_bits_per_dim': terms['decoder'] * to_bpd}

  samplers = ({'ancestral': ({'sampler': 'ancestral'}, d.timesteps)}
              if config_lib.setting(config, 'ddpm.ancestral') else {})
  for steps in d.ddim_steps:
    samplers[f'ddim{steps}'] = ({'sampler': 'ddim', 'steps': steps, 'eta': d.ddim_eta}, steps)
  return Family(
      name=config.family,
      init=init,
      train_step=make_train_step(train_apply, optimizer, schedule, prediction=d.prediction,
                                 ema_decay=config.ema.decay, ema_warmup=config.ema.warmup),
      sample=sample_fn,
      samplers=samplers,
      evaluate=evaluate,
  )
