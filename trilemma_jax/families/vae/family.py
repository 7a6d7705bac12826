"""The variational auto-encoder: ELBO with analytic KL, β, IWAE bound, prior samples.

Likelihoods:
  * ``'gaussian'``: a diagonal Gaussian with a per-dimension learned variance. On
    quantised image data (``levels`` set) training and evaluation see uniformly
    dequantised pixels ``x + (u - ½)Δ`` with ``Δ = 2 / (levels - 1)``, and the
    reported NLL is the discrete one: ``-log P(x) <= -log p(x + uΔ) - D log Δ``.
    This is the scale on which the DDPM bound is reported too.
  * ``'bernoulli'``: the cross-entropy VAE on targets ``(x + 1) / 2``. It is not a
    density of multi-level pixels, so its evaluation reports the bounds in nats
    on that scale (``iwae_nats``) and no bits/dim.

The networks compute in ``config.model.compute_dtype``; :func:`encode` and
:func:`decode` hand their outputs on as float32, so the ELBO, the IWAE bound
and the samplers run in float32 under mixed precision too.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from trilemma_jax import config as config_lib
from trilemma_jax import losses
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.families.vae.nets import make_vae_net
from trilemma_jax.train_state import (Family, TrainState, ema_decay_with_warmup, ema_update,
                                      new_state)

LIKELIHOODS = ('gaussian', 'bernoulli')
NET = 'vae'  # the one network's key in params and ema
MIN_LOG_VAR = -14.0  # default floor of the decoder's log-variance (config.vae.min_log_var)


def _outputs_per_dim(likelihood: str) -> int:
  return 2 if likelihood == 'gaussian' else 1


def decoder_log_var(raw: jax.Array, min_log_var: float = MIN_LOG_VAR) -> jax.Array:
  """The Gaussian decoder's log-variance: ``raw`` softly floored at ``min_log_var``."""
  return min_log_var + jax.nn.softplus(raw - min_log_var)


def log_likelihood(x: jax.Array, out: jax.Array, likelihood: str,
                   min_log_var: float = MIN_LOG_VAR) -> jax.Array:
  """log p(x|z) per example ``[B]`` from the decoder output ``[B, *shape, k]``."""
  if likelihood == 'gaussian':
    mean, raw = out[..., 0], out[..., 1]
    log_var = decoder_log_var(raw, min_log_var)
    return losses.gaussian_log_prob(x, mean, log_var)
  return losses.bernoulli_log_prob((x + 1.0) / 2.0, out[..., 0])


def dequantise(x: jax.Array, rng: jax.Array, levels: int | None) -> jax.Array:
  """Adds uniform noise over one quantisation bin (identity when ``levels`` is None)."""
  if levels is None:
    return x
  width = 2.0 / (levels - 1)
  return x + (jax.random.uniform(rng, x.shape) - 0.5) * width


def log_bin_volume(shape: tuple[int, ...], levels: int | None) -> float:
  """``D log Δ``: converts a density of dequantised data to a discrete log-probability."""
  if levels is None:
    return 0.0
  return math.prod(shape) * math.log(2.0 / (levels - 1))


def encode(net: nn.Module, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(mean, log_var)`` of q(z|x) as float32, whatever dtype the encoder computes in."""
  mean, log_var = net.apply({'params': params}, x)
  return mean.astype(jnp.float32), log_var.astype(jnp.float32)


def decode(net: nn.Module, params, z: jax.Array) -> jax.Array:
  """The decoder's likelihood parameters ``[B, *shape, k]`` as float32."""
  return net.apply({'params': params}, z, method='decode').astype(jnp.float32)


def elbo_terms(net: nn.Module, params, x: jax.Array, rng: jax.Array, *, likelihood: str,
               beta: float = 1.0, min_log_var: float = MIN_LOG_VAR) -> dict[str, jax.Array]:
  """Per-example ELBO terms, each ``[B]``, in nats.

  Returns:
    ``recon`` = -log p(x|z) for one z ~ q(z|x); ``kl`` = KL(q(z|x) || N(0, I))
    in closed form; ``loss`` = recon + β·kl (the negative β-ELBO);
    ``kl_mc`` = log q(z|x) - log p(z) at the same z (its Monte-Carlo estimate).
  """
  mean, log_var = encode(net, params, x)
  eps = jax.random.normal(rng, mean.shape)
  z = mean + jnp.exp(0.5 * log_var) * eps
  out = decode(net, params, z)
  recon = -log_likelihood(x, out, likelihood, min_log_var)
  kl = losses.gaussian_kl_standard_normal(mean, log_var)
  kl_mc = losses.gaussian_log_prob(z, mean, log_var) - losses.standard_normal_log_prob(z)
  return {'recon': recon, 'kl': kl, 'loss': recon + beta * kl, 'kl_mc': kl_mc}


def iwae_bound(net: nn.Module, params, x: jax.Array, rng: jax.Array, *, likelihood: str,
               num_samples: int, min_log_var: float = MIN_LOG_VAR) -> jax.Array:
  """The importance-weighted bound log (1/K) Σ_k p(x, z_k) / q(z_k|x), ``[B]`` nats.

  With ``num_samples=1`` it equals ``-(recon + kl_mc)`` of :func:`elbo_terms` at the
  same key; it does not decrease (in expectation) as K grows (Burda et al. 2016).
  """
  mean, log_var = encode(net, params, x)
  batch = x.shape[0]
  eps = jax.random.normal(rng, (num_samples, *mean.shape))
  z = mean + jnp.exp(0.5 * log_var) * eps  # [K, B, L]
  flat_z = z.reshape(num_samples * batch, -1)
  out = decode(net, params, flat_z)
  x_rep = jnp.broadcast_to(x, (num_samples, *x.shape)).reshape(num_samples * batch, *x.shape[1:])
  log_px = log_likelihood(x_rep, out, likelihood, min_log_var).reshape(num_samples, batch)
  log_pz = losses.standard_normal_log_prob(flat_z).reshape(num_samples, batch)
  log_qz = jax.vmap(lambda zk: losses.gaussian_log_prob(zk, mean, log_var))(z)
  return jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(num_samples)


def make_train_step(net: nn.Module, optimizer: optax.GradientTransformation, *,
                    likelihood: str, beta: float, levels: int | None, ema_decay: float,
                    ema_warmup: bool = True, min_log_var: float = MIN_LOG_VAR):
  """``(state, batch) -> (state, metrics)`` minimising the negative β-ELBO."""

  def train_step(state: TrainState, batch):
    rng_deq, rng_z = jax.random.split(state.step_rng())
    x = dequantise(batch['x'], rng_deq, levels if likelihood == 'gaussian' else None)

    def loss_fn(params):
      terms = elbo_terms(net, params[NET], x, rng_z, likelihood=likelihood, beta=beta,
                         min_log_var=min_log_var)
      return jnp.mean(terms['loss']), terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay_with_warmup(state.step, ema_decay, ema_warmup)
    metrics = {
        'loss': loss,
        'recon': jnp.mean(terms['recon']),
        'kl': jnp.mean(terms['kl']),
        'grad_norm': optax.tree.norm(grads),
    }
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                        ema={NET: ema_update(state.ema[NET], params[NET], decay)})
    return new, metrics

  return train_step


def sample(net: nn.Module, params, rng: jax.Array, n: int, *, latent_dim: int,
           likelihood: str, noise: bool = False,
           min_log_var: float = MIN_LOG_VAR) -> jax.Array:
  """Decodes ``n`` prior draws z ~ N(0, I).

  With ``noise=False`` the decoder's mean (Bernoulli: probabilities mapped to
  [-1, 1]); with ``noise=True`` a draw from the Gaussian p(x|z) itself.
  """
  rng_z, rng_x = jax.random.split(rng)
  z = jax.random.normal(rng_z, (n, latent_dim))
  out = decode(net, params, z)
  if likelihood == 'bernoulli':
    return 2.0 * jax.nn.sigmoid(out[..., 0]) - 1.0
  mean = out[..., 0]
  if not noise:
    return mean
  log_var = decoder_log_var(out[..., 1], min_log_var)
  return mean + jnp.exp(0.5 * log_var) * jax.random.normal(rng_x, mean.shape)


def reconstruct(net: nn.Module, params, x: jax.Array, *, likelihood: str) -> jax.Array:
  """Decoder mean at the posterior mean of q(z|x), ``[B, *shape]``."""
  mean, _ = encode(net, params, x)
  out = decode(net, params, mean)
  if likelihood == 'bernoulli':
    return 2.0 * jax.nn.sigmoid(out[..., 0]) - 1.0
  return out[..., 0]


def make_optimizer(lr: float, *, b1: float = 0.9, b2: float = 0.999,
                   grad_clip: float = 0.0) -> optax.GradientTransformation:
  chain = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
  return optax.chain(*chain, optax.adam(lr, b1=b1, b2=b2))


def make_net(config: ml_collections.ConfigDict, info: DatasetInfo) -> nn.Module:
  """The encoder-decoder of a validated ``config`` on ``info`` (``config.model.<kind>``)."""
  m = config.model
  section = m[info.kind]
  return make_vae_net(info.shape, latent_dim=m.latent_dim,
                      outputs_per_dim=_outputs_per_dim(config.vae.likelihood),
                      **({'hidden': tuple(section.hidden)} if info.kind == 'points' else
                         {'channels': tuple(section.channels),
                          'conv_hidden': section.conv_hidden}),
                      dtype=config_lib.compute_dtype(config))


def build_family(config: ml_collections.ConfigDict, info: DatasetInfo) -> Family:
  """The VAE :class:`Family` for a validated ``config`` on ``info``."""
  v, m, o = config.vae, config.model, config.optim
  net = make_net(config, info)
  optimizer = make_optimizer(o.lr, b1=o.b1, b2=o.b2, grad_clip=o.grad_clip)
  levels = info.levels
  dim = math.prod(info.shape)
  min_log_var = float(v.min_log_var)

  def init(rng, example_batch):
    x = jnp.asarray(example_batch['x'])
    z = jnp.zeros((x.shape[0], m.latent_dim))
    params = {NET: net.init(jax.random.fold_in(rng, 0), x, z, method='init_all')['params']}
    return new_state(params, optimizer.init(params), rng, ema=params)

  def sample_fn(state, rng, n, *, noise=False):
    return sample(net, state.ema[NET], rng, n, latent_dim=m.latent_dim,
                  likelihood=v.likelihood, noise=noise, min_log_var=min_log_var)

  def evaluate(state, batch, rng):
    rng_deq, rng_z = jax.random.split(rng)
    deq_levels = levels if v.likelihood == 'gaussian' else None
    x = dequantise(batch['x'], rng_deq, deq_levels)
    bound = iwae_bound(net, state.ema[NET], x, rng_z, likelihood=v.likelihood,
                       num_samples=v.iwae_samples, min_log_var=min_log_var)
    bound = bound + log_bin_volume(info.shape, deq_levels)
    out = {'iwae_nats': -bound}
    if v.likelihood == 'gaussian':
      out['nll_bits_per_dim'] = -bound / (dim * math.log(2.0))
    return out

  # Points: draws from p(x|z), whose spread is part of the model; images: the decoder
  # mean, as VAE samples are conventionally shown and scored.
  samplers = ({'prior': ({'noise': True}, 1)} if info.kind == 'points'
              else {'prior_mean': ({'noise': False}, 1)})
  return Family(
      name=config.family,
      init=init,
      train_step=make_train_step(net, optimizer, likelihood=v.likelihood, beta=v.beta,
                                 levels=levels, ema_decay=config.ema.decay,
                                 ema_warmup=config.ema.warmup, min_log_var=min_log_var),
      sample=sample_fn,
      samplers=samplers,
      evaluate=evaluate,
      reconstruct=lambda state, x: reconstruct(net, state.ema[NET], x,
                                               likelihood=v.likelihood),
  )
