"""Loss primitives. Each returns one value per example; the caller reduces.

The objectives of the families (ELBO, min-max GAN loss, noise-prediction loss)
are composed from these in the family modules.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from trilemma_jax import perf

_LOG_2PI = math.log(2.0 * math.pi)


def sum_except_batch(x: jax.Array) -> jax.Array:
  """``[B, ...] -> [B]``: the sum over every axis but the first."""
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


# ----------------------------------------------------------------------------- VAE


def gaussian_kl_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_var)) || N(0, I)) in nats, ``[B]``.

  ½ Σ (μ² + σ² − log σ² − 1), summed over all non-batch axes.
  """
  return 0.5 * sum_except_batch(jnp.square(mean) + jnp.exp(log_var) - log_var - 1.0)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """log N(x; mean, exp(log_var)) summed over non-batch axes, ``[B]``."""
  return -0.5 * sum_except_batch(
      _LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
  """log N(z; 0, I) summed over non-batch axes, ``[B]``."""
  return -0.5 * sum_except_batch(_LOG_2PI + jnp.square(z))


def bernoulli_log_prob(x01: jax.Array, logits: jax.Array) -> jax.Array:
  """log Bernoulli(x01; sigmoid(logits)) with x01 ∈ [0, 1] (continuous targets allowed), ``[B]``."""
  return -sum_except_batch(
      jnp.logaddexp(0.0, logits) - x01 * logits)


# ----------------------------------------------------------------------------- GAN
# Conventions: ``real_logits`` / ``fake_logits`` are the discriminator's raw
# outputs ``[B]``; D(x) = sigmoid(logit) for the log-loss variants.


def d_loss_minimax(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """−log D(x) − log(1 − D(G(z))) = softplus(−r) + softplus(f), ``[B]``.

  The discriminator loss is the same for the saturating and non-saturating games.
  """
  return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def g_loss_saturating(fake_logits: jax.Array) -> jax.Array:
  """The original min-max generator loss log(1 − D(G(z))) = −softplus(f), ``[B]``."""
  return -jax.nn.softplus(fake_logits)


def g_loss_non_saturating(fake_logits: jax.Array) -> jax.Array:
  """−log D(G(z)) = softplus(−f), ``[B]``."""
  return jax.nn.softplus(-fake_logits)


def d_loss_hinge(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """max(0, 1 − r) + max(0, 1 + f), ``[B]``."""
  return jax.nn.relu(1.0 - real_logits) + jax.nn.relu(1.0 + fake_logits)


def g_loss_hinge(fake_logits: jax.Array) -> jax.Array:
  """−f, ``[B]``."""
  return -fake_logits


GAN_LOSSES: dict[str, tuple[Callable, Callable]] = {
    'minimax': (d_loss_minimax, g_loss_saturating),
    'non_saturating': (d_loss_minimax, g_loss_non_saturating),
    'hinge': (d_loss_hinge, g_loss_hinge),
}


def gan_losses(name: str) -> tuple[Callable, Callable]:
  """``(d_loss, g_loss)`` for 'minimax', 'non_saturating' or 'hinge'."""
  try:
    return GAN_LOSSES[name]
  except KeyError:
    raise ValueError(
        f'Unknown GAN loss {name!r}; expected one of {sorted(GAN_LOSSES)}.') from None


def r1_penalty(logit_fn: Callable[[jax.Array], jax.Array], x_real: jax.Array) -> jax.Array:
  """R1 = ||∇_x D(x)||² on real data, per example ``[B]`` (without the γ/2 factor).

  Args:
    logit_fn: maps a batch ``[B, ...]`` to logits ``[B]``; examples must not
      interact (no batch statistics), so the gradient of the sum is per example.
    x_real: real batch ``[B, ...]``.
  """
  grads = jax.grad(lambda x: jnp.sum(logit_fn(x)))(x_real)
  return sum_except_batch(jnp.square(grads))


def lazy_penalty(penalty_fn: Callable, params, apply_now: jax.Array, *, every: int,
                 use_cond: bool | None = None) -> jax.Array:
  """``penalty_fn(params)``, differentiable on schedule and only measured off it.

  Lazy regularisation (Karras et al. 2020, StyleGAN2): the penalty enters the loss
  on every ``every``-th update only (the caller weights it by ``apply_now``), so
  the other updates need no gradient through it. Two equivalent forms, chosen by
  :func:`trilemma_jax.perf.lazy_penalty_uses_cond`:

  * ``lax.cond``: off-schedule updates evaluate the penalty of
    ``stop_gradient(params)``, skipping its second-order backward pass;
  * unconditional: the penalty of ``params`` every time; the caller's zero
    weight off schedule makes its gradient exactly zero.

  Args:
    penalty_fn: ``params -> per-example penalty``.
    params: the parameters the penalty is differentiated in.
    apply_now: boolean scalar, True on the updates where the penalty is applied.
    every: the lazy interval; 1 computes the differentiable penalty directly.
    use_cond: force one form (None: the performance policy's choice).
  """
  if every == 1:
    return penalty_fn(params)
  if use_cond is None:
    use_cond = perf.lazy_penalty_uses_cond()
  if not use_cond:
    return penalty_fn(params)
  return jax.lax.cond(apply_now, penalty_fn,
                      lambda p: penalty_fn(jax.lax.stop_gradient(p)), params)


# ----------------------------------------------------------------------- diffusion


def mse_per_example(target: jax.Array, prediction: jax.Array) -> jax.Array:
  """Mean squared error over non-batch axes, ``[B]`` (the ε-, x0- or v-loss)."""
  diff = jnp.square(target - prediction)
  return jnp.mean(diff.reshape(diff.shape[0], -1), axis=-1)
