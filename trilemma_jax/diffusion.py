"""Gaussian diffusion maths shared by DDPM and DDGAN.

Index convention (used by every function here)
----------------------------------------------
A :class:`Schedule` with ``T`` steps holds arrays of length ``T + 1`` indexed by
the integer time ``t = 0, 1, ..., T``. Index 0 is the data: ``beta[0] = 0`` and
``alpha_bar[0] = 1``. Step ``t >= 1`` adds noise with variance ``beta[t]``:

  q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),
  q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),
  alpha_bar_t      = prod_{s=1..t} (1 - beta_s).

So ``q_sample`` takes ``t`` in ``0..T`` (``t = 0`` returns ``x0``), the posterior
``q(x_{t-1} | x_t, x_0)`` takes ``t`` in ``1..T`` (``t = 1`` returns ``x0`` exactly:
its variance is 0), and samplers run ``t = T, ..., 1``. A DDGAN with ``T = 4``
uses ``t`` in ``1..4``. Entries at index 0 of the posterior arrays are padding
(coefficients that return ``x0``) so that gathers never read garbage.

Formulas: Ho et al. 2020 (forward process, posterior, variational bound),
Nichol & Dhariwal 2021 (cosine schedule), Song et al. 2021 (DDIM), Xiao et al.
2022 (the VP-SDE discretisation used by DDGAN).

Schedules are built in float64 with numpy and stored as float32 jax arrays, so
the products ``alpha_bar`` carry no float32 accumulation error. Time indices
passed to the functions are int arrays ``[B]`` and may be traced.
"""

from __future__ import annotations

import math
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from trilemma_jax import validation


@flax.struct.dataclass
class Schedule:
  """An immutable noise schedule; every field is float32 ``[T + 1]`` indexed by t.

  Attributes:
    betas: ``beta_t``; ``betas[0] = 0``.
    alphas: ``1 - beta_t``.
    alpha_bars: ``prod_{s<=t} alpha_s``; ``alpha_bars[0] = 1``.
    alpha_bars_prev: ``alpha_bar_{t-1}`` (``[0]`` is padding, 1).
    sqrt_alpha_bars: ``sqrt(alpha_bar_t)``.
    sqrt_one_minus_alpha_bars: ``sqrt(1 - alpha_bar_t)``.
    posterior_variance: ``beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t``;
      0 at ``t = 1`` (and padding 0 at ``t = 0``).
    posterior_log_variance_clipped: ``log beta~_t`` with ``t = 1`` replaced by
      ``log beta~_2`` (Ho et al.) because ``beta~_1 = 0``; ``log beta_1`` if T = 1.
    posterior_mean_coef_x0: ``sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)``.
    posterior_mean_coef_xt: ``sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)``.
  """

  betas: jax.Array
  alphas: jax.Array
  alpha_bars: jax.Array
  alpha_bars_prev: jax.Array
  sqrt_alpha_bars: jax.Array
  sqrt_one_minus_alpha_bars: jax.Array
  posterior_variance: jax.Array
  posterior_log_variance_clipped: jax.Array
  posterior_mean_coef_x0: jax.Array
  posterior_mean_coef_xt: jax.Array

  @property
  def num_steps(self) -> int:
    """T (static: derived from the array length)."""
    return self.betas.shape[0] - 1


# --------------------------------------------------------------------- factories


def schedule_from_betas(betas: np.ndarray) -> Schedule:
  """Builds a :class:`Schedule` from ``beta_1..beta_T`` (float64 arithmetic).

  Args:
    betas: ``[T]`` values in (0, 1], the noise variances of steps ``1..T``.

  Returns:
    The schedule with every derived coefficient, index 0 = data.
  """
  b = np.asarray(betas, np.float64)
  if b.ndim != 1 or b.shape[0] < 1:
    raise ValueError(f'betas must be a non-empty 1-D array of beta_1..beta_T, got shape {b.shape}.')
  if not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b > 1):
    raise ValueError(f'Every beta_t must lie in (0, 1]; got min {b.min()}, max {b.max()}.')
  num_steps = b.shape[0]
  betas = np.concatenate([[0.0], b])
  alphas = 1.0 - betas
  alpha_bars = np.cumprod(alphas)
  prev = np.concatenate([[1.0], alpha_bars[:-1]])
  one_minus = 1.0 - alpha_bars
  # Index 0 (the data) has 1 - alpha_bar = 0; its posterior entries are padding
  # chosen so the posterior "mean" is x0 and the variance 0.
  safe = np.where(one_minus > 0, one_minus, 1.0)
  post_var = np.where(one_minus > 0, (1.0 - prev) / safe * betas, 0.0)
  coef_x0 = np.where(one_minus > 0, np.sqrt(prev) * betas / safe, 1.0)
  coef_xt = np.where(one_minus > 0, np.sqrt(alphas) * (1.0 - prev) / safe, 0.0)
  clip_value = post_var[2] if num_steps >= 2 else betas[1]
  post_var_clipped = np.concatenate([[clip_value, clip_value], post_var[2:]])
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return Schedule(
      betas=f32(betas),
      alphas=f32(alphas),
      alpha_bars=f32(alpha_bars),
      alpha_bars_prev=f32(prev),
      sqrt_alpha_bars=f32(np.sqrt(alpha_bars)),
      sqrt_one_minus_alpha_bars=f32(np.sqrt(one_minus)),
      posterior_variance=f32(post_var),
      posterior_log_variance_clipped=f32(np.log(post_var_clipped)),
      posterior_mean_coef_x0=f32(coef_x0),
      posterior_mean_coef_xt=f32(coef_xt),
  )


def _check_steps(num_steps: int) -> None:
  validation.positive_int('The number of diffusion steps T', num_steps)


def linear_schedule(num_steps: int, beta_start: float | None = None,
                    beta_end: float | None = None) -> Schedule:
  """Ho et al.'s linear betas, ``beta_1 = beta_start`` to ``beta_T = beta_end``.

  By default ``beta_start = 1e-4 * 1000 / T`` and ``beta_end = 0.02 * 1000 / T``
  (Nichol & Dhariwal's rescaling, which is Ho's 1e-4..0.02 at T = 1000 and keeps
  ``alpha_bar_T`` close to 0 for other T; the end is capped at 0.999).
  """
  _check_steps(num_steps)
  scale = 1000.0 / num_steps
  start = 1e-4 * scale if beta_start is None else beta_start
  end = min(0.02 * scale, 0.999) if beta_end is None else beta_end
  if num_steps == 1:
    return schedule_from_betas(np.array([end]))
  return schedule_from_betas(np.linspace(start, end, num_steps, dtype=np.float64))


def cosine_schedule(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
  """Nichol & Dhariwal's cosine schedule.

  ``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos²((t/T + s) / (1 + s) · π/2)``,
  ``beta_t = min(1 - alpha_bar(t) / alpha_bar(t-1), max_beta)``.
  """
  _check_steps(num_steps)
  steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  f = np.cos((steps + s) / (1.0 + s) * math.pi / 2.0) ** 2
  alpha_bar = f / f[0]
  betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
  return schedule_from_betas(betas)


def ddgan_vp_schedule(num_steps: int, beta_min: float = 0.1, beta_max: float = 20.0,
                      t_min: float = 1e-3, time_power: float = 1.0) -> Schedule:
  """The VP-SDE discretisation of DDGAN (Xiao et al. 2022, official code).

  Continuous times ``tau_i = (i / T)**time_power (1 - t_min) + t_min`` for
  ``i = 0..T``; the official grid is ``time_power = 1`` (uniform in ``tau``). A
  power above 1 puts the steps closer together near the data (a smaller first
  step, as the polynomial time grids of EDM-style samplers do) and keeps
  ``tau_T = 1``, so ``x_T`` is as noisy as before;
  ``var(tau) = 1 - exp(-½ tau² (beta_max - beta_min) - tau beta_min)``;
  ``beta_i = 1 - (1 - var(tau_i)) / (1 - var(tau_{i-1}))`` for ``i = 1..T``.
  The data sit at ``i = 0`` with ``alpha_bar_0 = 1`` here; the official code puts
  a ``beta`` of 1e-8 there instead (a 1e-8 relative difference in ``alpha_bar``).
  """
  _check_steps(num_steps)
  if (not 0.0 < t_min < 1.0 or not 0.0 < beta_min < beta_max
      or not 0.0 < time_power < math.inf):
    raise ValueError(
        f'ddgan_vp_schedule needs 0 < t_min < 1, 0 < beta_min < beta_max and a finite '
        f'time_power > 0; got t_min={t_min}, beta_min={beta_min}, beta_max={beta_max}, '
        f'time_power={time_power}.')
  grid = (np.arange(num_steps + 1, dtype=np.float64) / num_steps) ** time_power
  tau = grid * (1.0 - t_min) + t_min
  log_alpha_bar = -0.5 * tau ** 2 * (beta_max - beta_min) - tau * beta_min
  betas = -np.expm1(log_alpha_bar[1:] - log_alpha_bar[:-1])
  return schedule_from_betas(betas)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    'linear': linear_schedule,
    'cosine': cosine_schedule,
    'ddgan_vp': ddgan_vp_schedule,
}


def get_schedule(name: str, num_steps: int, **kwargs) -> Schedule:
  """``SCHEDULES[name](num_steps, **kwargs)`` with a clear error for unknown names."""
  if name not in SCHEDULES:
    raise ValueError(f'Unknown noise schedule {name!r}; expected one of {sorted(SCHEDULES)}.')
  return SCHEDULES[name](num_steps, **kwargs)


# ---------------------------------------------------------- forward and posterior


def _at(values: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
  """``values[t]`` reshaped to broadcast against ``x`` (``t`` is ``[B]``)."""
  t = jnp.asarray(t)
  if t.ndim != 1:
    raise ValueError(f'Time indices must have shape [B], got shape {t.shape}.')
  return values[t].reshape((t.shape[0],) + (1,) * (x.ndim - 1))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """A draw of ``x_t ~ q(x_t | x_0)``: ``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``.

  Args:
    schedule: the noise schedule.
    x0: ``[B, ...]`` clean data.
    t: ``[B]`` int, in ``0..T``.
    noise: standard normal, shape of ``x0``.

  Returns:
    ``[B, ...]`` noisy data.
  """
  return (_at(schedule.sqrt_alpha_bars, t, x0) * x0
          + _at(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise)


def q_step_sample(schedule: Schedule, x_prev: jax.Array, t: jax.Array,
                  noise: jax.Array) -> jax.Array:
  """One forward step ``x_t ~ q(x_t | x_{t-1})``: ``sqrt(1 - b_t) x_{t-1} + sqrt(b_t) noise``.

  Args:
    schedule: the noise schedule.
    x_prev: ``[B, ...]`` = ``x_{t-1}``.
    t: ``[B]`` int, in ``1..T``.
    noise: standard normal, shape of ``x_prev``.
  """
  return (jnp.sqrt(_at(schedule.alphas, t, x_prev)) * x_prev
          + jnp.sqrt(_at(schedule.betas, t, x_prev)) * noise)


def q_sample_pair(schedule: Schedule, x0: jax.Array, t: jax.Array, noise_prev: jax.Array,
                  noise_step: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A draw of ``(x_{t-1}, x_t)`` from the forward chain given ``x_0`` (DDGAN's real pairs).

  ``x_{t-1} ~ q(x_{t-1} | x_0)``, then ``x_t ~ q(x_t | x_{t-1})``.

  Args:
    schedule: the noise schedule.
    x0: ``[B, ...]`` clean data.
    t: ``[B]`` int, in ``1..T``.
    noise_prev, noise_step: independent standard normals, shape of ``x0``.

  Returns:
    ``(x_{t-1}, x_t)``, each ``[B, ...]``.
  """
  x_prev = q_sample(schedule, x0, t - 1, noise_prev)
  return x_prev, q_step_sample(schedule, x_prev, t, noise_step)


def posterior_mean_variance(schedule: Schedule, x0: jax.Array, xt: jax.Array,
                            t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``.

  Args:
    schedule: the noise schedule.
    x0: ``[B, ...]`` clean data (or a model's estimate of it).
    xt: ``[B, ...]`` noisy data at step ``t``.
    t: ``[B]`` int, in ``1..T``.

  Returns:
    ``mean`` ``[B, ...]``, ``variance`` and ``log_variance_clipped``, both
    ``[B, 1, ..., 1]`` (broadcastable against ``x0``).
  """
  mean = (_at(schedule.posterior_mean_coef_x0, t, x0) * x0
          + _at(schedule.posterior_mean_coef_xt, t, x0) * xt)
  return (mean, _at(schedule.posterior_variance, t, x0),
          _at(schedule.posterior_log_variance_clipped, t, x0))


def posterior_sample(schedule: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array,
                     noise: jax.Array) -> jax.Array:
  """A draw of ``x_{t-1} ~ q(x_{t-1} | x_t, x_0)``; exactly ``x0`` at ``t = 1``.

  Args:
    schedule: the noise schedule.
    x0: ``[B, ...]`` clean data (or an estimate, e.g. a DDGAN generator output).
    xt: ``[B, ...]`` noisy data at ``t``.
    t: ``[B]`` int, in ``1..T``.
    noise: standard normal, shape of ``x0``.
  """
  mean, variance, _ = posterior_mean_variance(schedule, x0, xt, t)
  return mean + jnp.sqrt(variance) * noise


# ------------------------------------------------------- parameterisations


def predict_x0_from_eps(schedule: Schedule, xt: jax.Array, t: jax.Array,
                        eps: jax.Array) -> jax.Array:
  """``x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``; ``t`` ``[B]`` in ``1..T``."""
  return (xt - _at(schedule.sqrt_one_minus_alpha_bars, t, xt) * eps) / _at(
      schedule.sqrt_alpha_bars, t, xt)


def predict_eps_from_x0(schedule: Schedule, xt: jax.Array, t: jax.Array,
                        x0: jax.Array) -> jax.Array:
  """``eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)``; ``t`` ``[B]`` in ``1..T``."""
  return (xt - _at(schedule.sqrt_alpha_bars, t, xt) * x0) / _at(
      schedule.sqrt_one_minus_alpha_bars, t, xt)


def v_from_x0_eps(schedule: Schedule, x0: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
  """The v target of Salimans & Ho (2022): ``sqrt(ab_t) eps - sqrt(1 - ab_t) x0``."""
  return (_at(schedule.sqrt_alpha_bars, t, x0) * eps
          - _at(schedule.sqrt_one_minus_alpha_bars, t, x0) * x0)


def predict_x0_from_v(schedule: Schedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
  """``x0 = sqrt(ab_t) x_t - sqrt(1 - ab_t) v``."""
  return (_at(schedule.sqrt_alpha_bars, t, xt) * xt
          - _at(schedule.sqrt_one_minus_alpha_bars, t, xt) * v)


def predict_eps_from_v(schedule: Schedule, xt: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
  """``eps = sqrt(1 - ab_t) x_t + sqrt(ab_t) v``."""
  return (_at(schedule.sqrt_one_minus_alpha_bars, t, xt) * xt
          + _at(schedule.sqrt_alpha_bars, t, xt) * v)


PREDICTIONS = ('eps', 'x0', 'v')


def prediction_target(schedule: Schedule, prediction: str, x0: jax.Array, t: jax.Array,
                      noise: jax.Array) -> jax.Array:
  """What a network with output type ``prediction`` should output for ``x_t = q_sample(x0, t, noise)``."""
  if prediction == 'eps':
    return noise
  if prediction == 'x0':
    return x0
  if prediction == 'v':
    return v_from_x0_eps(schedule, x0, t, noise)
  raise ValueError(f'Unknown prediction type {prediction!r}; expected one of {PREDICTIONS}.')


def x0_eps_from_output(schedule: Schedule, prediction: str, xt: jax.Array, t: jax.Array,
                       output: jax.Array, clip_x0: bool = False) -> tuple[jax.Array, jax.Array]:
  """Turns a network output into ``(x0_hat, eps_hat)``, consistent with ``x_t``.

  With ``clip_x0`` the estimate of ``x0`` is clipped to [-1, 1] and ``eps_hat``
  recomputed from the clipped value (as Ho et al. and DDIM do for images).
  """
  if prediction == 'eps':
    eps = output
    x0 = predict_x0_from_eps(schedule, xt, t, eps)
  elif prediction == 'x0':
    x0 = output
    eps = predict_eps_from_x0(schedule, xt, t, x0)
  elif prediction == 'v':
    x0 = predict_x0_from_v(schedule, xt, t, output)
    eps = predict_eps_from_v(schedule, xt, t, output)
  else:
    raise ValueError(f'Unknown prediction type {prediction!r}; expected one of {PREDICTIONS}.')
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
    eps = predict_eps_from_x0(schedule, xt, t, x0)
  return x0, eps


# ------------------------------------------------------------ reverse process

REVERSE_VARIANCES = ('beta', 'beta_tilde')


def reverse_log_variance(schedule: Schedule, kind: str) -> jax.Array:
  """log of the fixed variance ``sigma_t²`` of ``p(x_{t-1} | x_t)``, ``[T + 1]``.

  ``'beta'``: ``sigma_t² = beta_t`` (Ho et al.'s CIFAR-10 choice, an upper bound
  on the true reverse variance); ``'beta_tilde'``: ``sigma_t² = beta~_t``, the
  posterior variance (a lower bound), with ``t = 1`` clipped to ``beta~_2`` as
  in :class:`Schedule`. Index 0 is padding.
  """
  if kind == 'beta':
    return jnp.log(schedule.betas.at[0].set(schedule.betas[1]))
  if kind == 'beta_tilde':
    return schedule.posterior_log_variance_clipped
  raise ValueError(f'Unknown reverse variance {kind!r}; expected one of {REVERSE_VARIANCES}.')


# (x_t [n, ...], t int32 [n], key) -> (x0_hat, eps_hat), both [n, ...].
DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def ancestral_sample(schedule: Schedule, denoise_fn: DenoiseFn, x_T: jax.Array, rng: jax.Array,
                     *, log_variance: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Ancestral sampling ``x_T -> x_0`` in T compiled steps (``lax.scan``).

  Each step ``t = T..1`` sets ``x_{t-1} = mu~_t(x0_hat, x_t) + sigma_t z`` with
  ``z = 0`` at ``t = 1`` (Ho et al., Algorithm 2; with an ε-network this is
  their ``1/sqrt(a_t) (x_t - b_t / sqrt(1 - ab_t) eps)`` mean). The noise for
  step ``t`` comes from ``fold_in(rng, t)``, shared with :func:`ddim_sample`.

  Args:
    schedule: the noise schedule.
    denoise_fn: the model, returning ``(x0_hat, eps_hat)``.
    x_T: ``[n, ...]`` the starting noise.
    rng: key for the per-step noise and the model's own randomness.
    log_variance: ``[T + 1]`` log ``sigma_t²`` (see :func:`reverse_log_variance`).

  Returns:
    ``(x_0 [n, ...], nfe)``, nfe an int32 scalar counting the model calls (T).
  """
  n = x_T.shape[0]
  std = jnp.exp(0.5 * log_variance)

  def step(carry, t):
    x, nfe = carry
    key_model, key_noise = jax.random.split(jax.random.fold_in(rng, t))
    tb = jnp.full((n,), t, jnp.int32)
    x0_hat, _ = denoise_fn(x, tb, key_model)
    mean, _, _ = posterior_mean_variance(schedule, x0_hat, x, tb)
    scale = jnp.where(t > 1, std[t], 0.0)
    x = mean + scale * jax.random.normal(key_noise, x.shape, x.dtype)
    return (x, nfe + 1), None

  ts = jnp.arange(schedule.num_steps, 0, -1, dtype=jnp.int32)
  (x, nfe), _ = jax.lax.scan(step, (x_T, jnp.zeros((), jnp.int32)), ts)
  return x, nfe


def ddim_timesteps(num_steps: int, steps: int) -> np.ndarray:
  """The DDIM sub-sequence ``0 = tau_0 < tau_1 < ... < tau_S = T``, ``[S + 1]`` int.

  Evenly spaced (rounded) so that ``steps = T`` is the full chain and
  ``steps = 4`` of ``T = 1000`` visits 1000, 750, 500, 250.
  """
  _check_steps(num_steps)
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= num_steps:
    raise ValueError(
        f'DDIM needs an integer number of steps in 1..T={num_steps}, got {steps!r}.')
  return np.round(np.linspace(0, num_steps, steps + 1)).astype(np.int32)


def ddim_sample(schedule: Schedule, denoise_fn: DenoiseFn, x_T: jax.Array, rng: jax.Array,
                *, steps: int, eta: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """DDIM (Song et al. 2021) over ``steps`` of the T steps, compiled with ``lax.scan``.

  From ``tau_i`` to ``tau_{i-1}`` (with ``a = ab_{tau_i}``, ``a' = ab_{tau_{i-1}}``):
  ``x' = sqrt(a') x0_hat + sqrt(1 - a' - s²) eps_hat + s z``,
  ``s = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a')``. ``eta = 0`` is
  deterministic given ``x_T``; ``eta = 1`` with ``steps = T`` is the ancestral
  sampler with ``sigma_t² = beta~_t`` (same noise: ``fold_in(rng, tau_i)``).

  Args:
    schedule: the noise schedule.
    denoise_fn: the model, returning ``(x0_hat, eps_hat)``.
    x_T: ``[n, ...]`` the starting noise.
    rng: key for the noise and the model's own randomness.
    steps: number of model calls, ``1..T`` (static).
    eta: stochasticity, >= 0.

  Returns:
    ``(x_0 [n, ...], nfe)``, nfe an int32 scalar (= steps).
  """
  taus = ddim_timesteps(schedule.num_steps, steps)
  pairs = jnp.asarray(np.stack([taus[1:], taus[:-1]], axis=1)[::-1])  # [(t, t_prev)], t = T first
  n = x_T.shape[0]
  eta = jnp.asarray(eta, jnp.float32)

  def step(carry, pair):
    x, nfe = carry
    t, t_prev = pair[0], pair[1]
    key_model, key_noise = jax.random.split(jax.random.fold_in(rng, t))
    x0_hat, eps_hat = denoise_fn(x, jnp.full((n,), t, jnp.int32), key_model)
    a, a_prev = schedule.alpha_bars[t], schedule.alpha_bars[t_prev]
    sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma ** 2, 0.0))
    x = (jnp.sqrt(a_prev) * x0_hat + direction * eps_hat
         + sigma * jax.random.normal(key_noise, x.shape, x.dtype))
    return (x, nfe + 1), None

  (x, nfe), _ = jax.lax.scan(step, (x_T, jnp.zeros((), jnp.int32)), pairs)
  return x, nfe


# ------------------------------------------------------------- likelihood terms


def normal_kl(mean1: jax.Array, log_var1: jax.Array, mean2: jax.Array,
              log_var2: jax.Array) -> jax.Array:
  """Elementwise KL(N(mean1, e^log_var1) || N(mean2, e^log_var2)) in nats (broadcasting)."""
  return 0.5 * (log_var2 - log_var1 + jnp.exp(log_var1 - log_var2)
                + jnp.square(mean1 - mean2) * jnp.exp(-log_var2) - 1.0)


def _log_diff_exp(log_a: jax.Array, log_b: jax.Array) -> jax.Array:
  """``log(e^log_a - e^log_b)`` for ``log_a >= log_b``."""
  return log_a + jnp.log1p(-jnp.exp(log_b - log_a))


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                        bin_width: float) -> jax.Array:
  """Elementwise log-probability of the bin of ``x`` under N(mean, e^{2 log_scale}).

  Data in [-1, 1] quantised to ``L`` levels have bin width ``2 / (L - 1)``; the
  bin of ``x`` is ``[x - w/2, x + w/2]`` with the two edge bins stretched to
  -inf and +inf so the probabilities of the ``L`` levels sum to 1 (Ho et al.'s
  decoder, for any number of levels).

  Args:
    x: data on the level grid in [-1, 1].
    mean, log_scale: the Gaussian, broadcastable to ``x``.
    bin_width: ``2 / (levels - 1)``.

  Returns:
    ``log P(bin of x)``, shape of ``x``.
  """
  half = 0.5 * bin_width
  inv_std = jnp.exp(-log_scale)
  upper = (x - mean + half) * inv_std
  lower = (x - mean - half) * inv_std
  log_ndtr = jax.scipy.special.log_ndtr
  # The bin's mass is a difference of CDFs; take it on the side of the mean
  # where both CDF values are small so it keeps its precision in the tails.
  log_mid = jnp.where(
      lower > 0,
      _log_diff_exp(log_ndtr(-lower), log_ndtr(-upper)),
      _log_diff_exp(log_ndtr(upper), log_ndtr(lower)))
  return jnp.where(x < -1.0 + half, log_ndtr(upper),
                   jnp.where(x > 1.0 - half, log_ndtr(-lower), log_mid))


def prior_kl(schedule: Schedule, x0: jax.Array) -> jax.Array:
  """``L_T = KL(q(x_T | x_0) || N(0, I))`` summed over non-batch axes, nats ``[B]``."""
  ab = schedule.alpha_bars[-1]
  # ½ (ab x0² + (1 - ab) - 1 - log(1 - ab)) per dimension, written so that the
  # O(1) terms cancel analytically rather than in float32.
  kl = 0.5 * (ab * jnp.square(x0) - ab - jnp.log1p(-ab))
  return jnp.sum(kl.reshape(x0.shape[0], -1), axis=-1)
