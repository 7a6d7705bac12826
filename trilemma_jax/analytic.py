"""Exact diffusion quantities when the data is a Gaussian mixture.

For data ``x_0 ~ sum_k w_k N(mu_k, s^2 I)`` (the ``ring8`` / ``grid25`` mixtures)
every distribution of the forward chain is again an isotropic Gaussian mixture,
so the quantities a diffusion model has to learn can be written down exactly:

* the marginal ``q(x_t) = sum_k w_k N(sqrt(ab_t) mu_k, (ab_t s^2 + 1 - ab_t) I)``;
* the denoising distribution ``q(x_{t-1} | x_t)``, by Bayes' rule from
  ``q(x_{t-1})`` and the forward step ``q(x_t | x_{t-1}) = N(sqrt(a_t) x_{t-1}, b_t I)``:
  component ``k`` with marginal mean ``m_k = sqrt(ab_{t-1}) mu_k`` and variance
  ``v = ab_{t-1} s^2 + 1 - ab_{t-1}`` becomes

      variance  v' = v b_t / (b_t + a_t v),
      mean      m'_k = v' (m_k / v + sqrt(a_t) x_t / b_t),
      weight    w'_k ∝ w_k N(x_t; sqrt(a_t) m_k, (a_t v + b_t) I).

  With many small steps (small ``b_t``) the weight of one component dominates
  and the distribution is close to a Gaussian; with DDGAN's few large steps it
  is multimodal (Xiao et al. 2022, section 3). This is what the notebook
  ``ddgan_explained.ipynb`` plots.
* :func:`reverse_chain` samples the reverse process with these exact steps, or
  with the Gaussian steps of a DDPM with a perfect denoiser: mean
  ``E[x_{t-1} | x_t]`` and the fixed posterior variance ``beta~_t`` (Ho et al.
  2020), which shows what the Gaussian assumption costs when the steps are few.

Index conventions are those of :mod:`trilemma_jax.diffusion` (``t`` in
``0..T``, index 0 is the data). No package computes these for a JAX schedule,
so they are written here; the tests check them against Bayes' rule and Monte
Carlo draws of the forward chain.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import jax.scipy.stats
import numpy as np

from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.diffusion import Schedule


@flax.struct.dataclass
class IsotropicMixture:
  """A batch of Gaussian mixtures whose components share one isotropic variance.

  Batch shape ``S`` may be empty (one mixture).

  Attributes:
    log_weights: ``[*S, K]`` normalised log weights.
    means: ``[*S, K, D]``.
    variance: ``[*S]`` variance of every component (per coordinate).
  """

  log_weights: jax.Array
  means: jax.Array
  variance: jax.Array

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.log_weights.shape[:-1])

  def __getitem__(self, index) -> IsotropicMixture:
    """The mixtures at ``index`` of the batch axes (e.g. ``mix[3]``)."""
    if not self.batch_shape:
      raise IndexError('This IsotropicMixture has no batch axis to index.')
    return jax.tree.map(lambda a: a[index], self)


def data_mixture(info: DatasetInfo, scale: float = 1.0) -> IsotropicMixture:
  """The data distribution of a mixture dataset (``info.means``, ``info.std``, equal weights).

  Args:
    info: a dataset with ``means`` and ``std`` (``ring8``, ``grid25``).
    scale: coordinates are multiplied by it (a DDGAN's ``ddgan.data_scale``: the
      diffusion runs on ``scale * x``).
  """
  if info.means is None or info.std is None:
    raise ValueError(f'Dataset {info.name!r} is not a Gaussian mixture (its DatasetInfo has no '
                     'means/std); expected ring8, grid25 or a DatasetInfo with both.')
  means = np.asarray(info.means, np.float32) * scale
  k = means.shape[0]
  return IsotropicMixture(log_weights=jnp.full((k,), -np.log(k), jnp.float32),
                          means=jnp.asarray(means),
                          variance=jnp.asarray((info.std * scale) ** 2, jnp.float32))


def _check_t(schedule: Schedule, t: int, low: int) -> int:
  if not isinstance(t, (int, np.integer)) or not low <= int(t) <= schedule.num_steps:
    raise ValueError(f'Time index t={t!r} must be an int in {low}..{schedule.num_steps} '
                     f'(T = {schedule.num_steps}).')
  return int(t)


def marginal(schedule: Schedule, data: IsotropicMixture, t: int) -> IsotropicMixture:
  """``q(x_t)`` for data ``q(x_0) = data`` (unbatched); ``t`` in ``0..T``."""
  t = _check_t(schedule, t, 0)
  ab = schedule.alpha_bars[t]
  return IsotropicMixture(log_weights=data.log_weights, means=jnp.sqrt(ab) * data.means,
                          variance=ab * data.variance + (1.0 - ab))


def denoising(schedule: Schedule, data: IsotropicMixture, x_t: jax.Array,
              t: int) -> IsotropicMixture:
  """The exact denoising distribution ``q(x_{t-1} | x_t)``, one mixture per row of ``x_t``.

  Args:
    schedule: the diffusion.
    data: the (unbatched) data mixture ``q(x_0)``.
    x_t: ``[B, D]`` points at step ``t``.
    t: int in ``1..T``.

  Returns:
    A mixture with batch shape ``[B]`` over ``x_{t-1}``.
  """
  t = _check_t(schedule, t, 1)
  x_t = jnp.asarray(x_t, jnp.float32)
  if x_t.ndim != 2 or x_t.shape[1] != data.means.shape[-1]:
    raise ValueError(f'x_t must be [B, {data.means.shape[-1]}], got shape {x_t.shape}.')
  return _denoise(schedule, data, x_t, t)


def mean(mix: IsotropicMixture) -> jax.Array:
  """``[*S, D]``: the mean of each mixture (for :func:`denoising`, ``E[x_{t-1} | x_t]``)."""
  return jnp.sum(jnp.exp(mix.log_weights)[..., None] * mix.means, axis=-2)


def covariance(mix: IsotropicMixture) -> jax.Array:
  """``[*S, D, D]``: the covariance of each mixture."""
  w = jnp.exp(mix.log_weights)[..., None, None]
  second = jnp.sum(w * mix.means[..., :, None] * mix.means[..., None, :], axis=-3)
  mu = mean(mix)
  d = mix.means.shape[-1]
  return (second - mu[..., :, None] * mu[..., None, :]
          + mix.variance[..., None, None] * jnp.eye(d, dtype=mix.means.dtype))


def gaussian_gap(mix: IsotropicMixture, key: jax.Array, num_draws: int = 2000) -> jax.Array:
  """``[*S]``: ``KL(mix || N(mean, covariance))`` in nats, by Monte Carlo.

  The moment-matched Gaussian is the Gaussian closest to the mixture in this
  KL, so the figure is what any Gaussian model of the distribution must lose
  (on grid25: about 0 for every denoising step of a 1,000-step DDPM, about 4
  nats for the last of DDGAN's four steps). Estimated from ``num_draws`` draws
  per mixture, so values near 0 may come out slightly negative.
  """
  x = sample(mix, key, (num_draws,))  # [n, *S, D]
  mu, cov = mean(mix), covariance(mix)
  log_gauss = jax.scipy.stats.multivariate_normal.logpdf(x, mu, cov)
  return jnp.mean(log_prob(mix, x) - log_gauss, axis=0)


def log_prob(mix: IsotropicMixture, x: jax.Array) -> jax.Array:
  """Log density of ``x`` ``[..., *S, D]`` under the mixtures (broadcast); ``[..., *S]``."""
  x = jnp.asarray(x, jnp.float32)
  d = mix.means.shape[-1]
  var = mix.variance[..., None]  # [*S, 1], against K
  sq = jnp.sum(jnp.square(x[..., None, :] - mix.means), axis=-1)  # [..., *S, K]
  log_normal = -0.5 * (sq / var + d * jnp.log(2.0 * jnp.pi * var))
  return jax.nn.logsumexp(mix.log_weights + log_normal, axis=-1)


def sample(mix: IsotropicMixture, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
  """Draws ``[*sample_shape, *S, D]``: a component by weight, then its Gaussian."""
  shape = tuple(sample_shape) + mix.batch_shape
  k_key, n_key = jax.random.split(key)
  k = jax.random.categorical(k_key, jnp.broadcast_to(mix.log_weights, shape + (
      mix.log_weights.shape[-1],)))
  means = jnp.broadcast_to(mix.means, shape + mix.means.shape[-2:])
  chosen = jnp.take_along_axis(means, k[..., None, None], axis=-2)[..., 0, :]
  noise = jax.random.normal(n_key, chosen.shape, chosen.dtype)
  return chosen + jnp.sqrt(mix.variance)[..., None] * noise


def reverse_chain(schedule: Schedule, data: IsotropicMixture, x_T: jax.Array, key: jax.Array,
                  *, gaussian: bool = False) -> jax.Array:
  """The reverse chain ``x_T -> x_0`` with exact or Gaussian steps; ``[T + 1, B, D]``.

  Entry ``i`` of the result is ``x_{T - i}``: the first is ``x_T``, the last the samples.

  Args:
    schedule: the diffusion (``T = schedule.num_steps`` steps).
    data: the data mixture ``q(x_0)``.
    x_T: ``[B, D]`` starting points (e.g. ``sample(marginal(schedule, data, T), key, (B,))``).
    key: randomness of the steps (step ``t`` uses ``fold_in(key, t)``).
    gaussian: False draws each step from :func:`denoising` (the chain then
      samples the data exactly); True draws ``N(E[x_{t-1} | x_t], beta~_t I)``,
      a DDPM step with an optimal denoiser and the fixed posterior variance
      (``beta~_1 = 0``: the last step returns ``E[x_0 | x_1]``).
  """
  x_T = jnp.asarray(x_T, jnp.float32)
  if x_T.ndim != 2 or x_T.shape[1] != data.means.shape[-1]:
    raise ValueError(f'x_T must be [B, {data.means.shape[-1]}], got shape {x_T.shape}.')

  def step(x, t):
    mix = _denoise(schedule, data, x, t)
    k = jax.random.fold_in(key, t)
    if gaussian:
      noise = jax.random.normal(k, x.shape, x.dtype)
      x = mean(mix) + jnp.sqrt(schedule.posterior_variance[t]) * noise
    else:
      x = sample(mix, k)
    return x, x

  ts = jnp.arange(schedule.num_steps, 0, -1, dtype=jnp.int32)
  _, xs = jax.lax.scan(step, x_T, ts)
  return jnp.concatenate([x_T[None], xs], axis=0)


def _denoise(schedule: Schedule, data: IsotropicMixture, x_t: jax.Array,
             t: int | jax.Array) -> IsotropicMixture:
  # The formulas of the module docstring; t may be traced (inside reverse_chain's scan).
  ab_prev = schedule.alpha_bars_prev[t]
  prev_means = jnp.sqrt(ab_prev) * data.means
  v = ab_prev * data.variance + (1.0 - ab_prev)
  a, b = schedule.alphas[t], schedule.betas[t]
  var = v * b / (b + a * v)
  means = var * (prev_means[None] / v + jnp.sqrt(a) * x_t[:, None, :] / b)  # [B, K, D]
  # x_t given component k: N(sqrt(a) m_k, (a v + b) I).
  sq = jnp.sum(jnp.square(x_t[:, None, :] - jnp.sqrt(a) * prev_means[None]), axis=-1)
  logits = data.log_weights[None] - 0.5 * sq / (a * v + b)
  log_weights = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  return IsotropicMixture(log_weights=log_weights, means=means,
                          variance=jnp.full(x_t.shape[:1], var, jnp.float32))
