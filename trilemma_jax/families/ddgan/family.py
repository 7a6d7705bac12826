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
  multiplied by ``r1_every`` (StyleGAN2 and the GAN family do), so the official
  gamma = 0.02 every 15 steps means what it meant there; the average strength
  is ``gamma / r1_every``.

The step is the shared adversarial core (:mod:`trilemma_jax.families.adversarial`)
with the pairs above as its draws. With ``ddgan.spectral_norm`` the
discriminator's power-iteration vectors are ``state.model_state['discriminator']``;
they advance once per discriminator update (the core keeps the state of the
real-logit call only).

Data scale: the schedule assumes data of roughly unit scale (``x_T`` has
variance ~1). ``data_scale`` multiplies the data on the way in and divides the
samples on the way out, so a run on the 2-D mixtures (coordinates up to 4)
can train on unit-scale data while every sample comes back in data
coordinates.

Precision: the networks compute in ``config.model.compute_dtype``; the
generator's ``x0_hat`` and the discriminator's logits are cast to float32 here,
so the posterior steps of the chain, the losses and R1 run in float32 under
mixed precision too.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from trilemma_jax import config as config_lib
from trilemma_jax import diffusion
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.diffusion import Schedule
from trilemma_jax.families import adversarial
from trilemma_jax.families.adversarial import GENERATOR, Draw
from trilemma_jax.families.ddgan import ncsnpp
from trilemma_jax.families.ddgan.nets import (ConvDiscriminator, MLPDiscriminator, MLPGenerator,
                                              PackedDiscriminator, PerStepGenerator,
                                              SkipGenerator, UNetGenerator, noise_map_size)
from trilemma_jax.train_state import Batch, Family, TrainState

# (params, x_t, z, t) -> x0_hat
GeneratorFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


# ------------------------------------------------------------------ the pairs


def apply_generator(generator: nn.Module, g_params: Any, x_t: jax.Array, z: jax.Array,
                    t: jax.Array) -> jax.Array:
  """``x0_hat = G(x_t, z, t)`` as float32, whatever dtype the generator computes in."""
  return generator.apply({'params': g_params}, x_t, z, t).astype(jnp.float32)


def sample_t(key: jax.Array, batch: int, num_steps: int,
             weights: Sequence[float] = ()) -> jax.Array:
  """``[batch]`` int32 time indices in ``1..num_steps``.

  Uniform without ``weights``; otherwise ``t`` is drawn with probabilities
  proportional to ``weights[t - 1]`` (:func:`step_weights` of ``ddgan.t_weights``
  and ``ddgan.last_step_weight``).
  """
  if len(weights) == 0:
    return jax.random.randint(key, (batch,), 1, num_steps + 1, dtype=jnp.int32)
  w = np.asarray(weights, np.float64)
  if w.shape != (num_steps,):
    raise ValueError(f'{w.size} step weights for T = {num_steps} steps; '
                     'give one per step or none.')
  if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
    raise ValueError(f'Step weights {tuple(w.tolist())} must be finite and non-negative, '
                     'not all zero.')
  p = jnp.asarray(w / w.sum(), jnp.float32)
  return jax.random.choice(key, num_steps, (batch,), p=p).astype(jnp.int32) + 1


def step_weights(num_steps: int, t_weights: Sequence[float] = (),
                 last_step_weight: float = 1.0) -> tuple[float, ...]:
  """The relative training frequencies of the steps ``t = 1..T`` for :func:`sample_t`.

  ``t_weights`` (``ddgan.t_weights``; empty = uniform) with the weight of
  ``t = 1`` multiplied by ``last_step_weight`` (``ddgan.last_step_weight``).
  Empty when both are neutral, so uniform runs keep their exact ``randint`` draws.
  """
  if last_step_weight == 1.0:
    return tuple(float(w) for w in t_weights)
  w = [float(v) for v in t_weights] or [1.0] * num_steps
  w[0] *= float(last_step_weight)
  return tuple(w)


def fake_prev(schedule: Schedule, x0_hat: jax.Array, x_t: jax.Array, t: jax.Array,
              key: jax.Array) -> jax.Array:
  """``x'_{t-1} ~ q(x_{t-1} | x_t, x_0 = x0_hat)``: the generator's reverse step, ``[B, ...]``.

  Exactly ``x0_hat`` at ``t = 1`` (the posterior variance is 0 there).
  """
  noise = jax.random.normal(key, x_t.shape, x_t.dtype)
  return diffusion.posterior_sample(schedule, x0_hat, x_t, t, noise)


def energy_score(x0_hat: jax.Array, x0_hat_2: jax.Array, x0: jax.Array) -> jax.Array:
  """``[B]`` energy score of two generator draws against the ``x0`` behind ``x_t``.

  ``½(‖a − x0‖ + ‖b − x0‖) − ½‖a − b‖`` for ``a, b`` two independent draws of
  ``G(x_t, ·, t)``: an unbiased estimate of the energy score of the
  generator's distribution of ``x0`` given ``x_t`` (Gneiting & Raftery 2007).
  The score is strictly proper: its expectation over ``x0 ~ q(x0 | x_t)`` is
  smallest when that distribution is exactly ``q(x0 | x_t)``, so unlike a
  regression loss it rewards the spread of the true posterior, not its mean.
  """
  def norm(v):
    # The epsilon keeps the gradient finite when two points coincide.
    return jnp.sqrt(jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=-1) + 1e-12)
  return 0.5 * (norm(x0_hat - x0) + norm(x0_hat_2 - x0)) - 0.5 * norm(x0_hat - x0_hat_2)


def make_draw(schedule: Schedule, g_apply: GeneratorFn, *, latent_dim: int,
              data_scale: float = 1.0, energy_weight: float = 0.0,
              energy_from_step: int = 1, pack: int = 1,
              t_weights: Sequence[float] = ()) -> adversarial.DrawFn:
  """Real and fake pairs of one update, from fresh ``t``, chain noise, ``z`` and posterior noise.

  The update's key is split four ways, in this order: ``t``, the real pair,
  ``z``, the posterior noise of the fake step. The discriminator sees ``x_{t-1}``
  (real or fake) beside ``cond = (x_t, t)``; the draw reports ``x0_rmse``, the
  root mean squared error of ``x0_hat`` against the ``x0`` that made ``x_t``, in
  data units (a diagnostic, not a training target).

  With ``energy_weight > 0`` the generator also draws a second ``x0_hat`` from
  the same ``x_t`` with another latent (from ``fold_in(z key, 1)``, so the other
  streams are unchanged) and the draw carries ``energy_weight`` times the mean
  :func:`energy_score` as the generator's penalty, reported as
  ``energy_score``. The score asks the generator's step to be as wide as the
  true ``q(x0 | x_t)``; without it the generator learns to ignore ``z`` at the
  late steps (docs/ddgan_steps.md, section 4). With ``energy_from_step = k > 1``
  the score counts only for the examples drawn at steps ``t >= k`` (the others
  add 0 to the batch mean), so the steps below ``k`` are trained by the
  adversarial term alone.

  With ``pack > 1`` the ``pack`` consecutive examples of each discriminator
  pack (:class:`~trilemma_jax.families.ddgan.nets.PackedDiscriminator`) share
  one ``t``; ``pack = 1`` draws the same ``t`` as before packing existed.

  ``t_weights`` (one per step, see :func:`sample_t`) trains some steps more
  often than others; empty is the uniform ``t`` of the original DDGAN.
  """

  def draw(g_params, batch: Batch, key: jax.Array) -> Draw:
    x0 = batch['x'] * data_scale
    t_key, pair_key, z_key, post_key = jax.random.split(key, 4)
    b = x0.shape[0]
    if b % pack:
      raise ValueError(f'A batch of {b} cannot be cut into discriminator packs of {pack} '
                       '(ddgan.pack); use a multiple of it.')
    # One step per discriminator pack (PackedDiscriminator), shared by its members.
    t = jnp.repeat(sample_t(t_key, b // pack, schedule.num_steps, t_weights), pack)
    k1, k2 = jax.random.split(pair_key)
    x_prev, x_t = diffusion.q_sample_pair(schedule, x0, t,
                                          jax.random.normal(k1, x0.shape, x0.dtype),
                                          jax.random.normal(k2, x0.shape, x0.dtype))
    z = jax.random.normal(z_key, (b, latent_dim), x0.dtype)
    x0_hat = g_apply(g_params, x_t, z, t)
    x_fake = fake_prev(schedule, x0_hat, x_t, t, post_key)
    rmse = jnp.sqrt(jnp.mean(jnp.square(x0_hat - x0))) / data_scale
    metrics, penalty = {'x0_rmse': rmse}, None
    if energy_weight > 0:
      z_2 = jax.random.normal(jax.random.fold_in(z_key, 1), (b, latent_dim), x0.dtype)
      scores = energy_score(x0_hat, g_apply(g_params, x_t, z_2, t), x0)
      if energy_from_step > 1:
        scores = jnp.where(t >= energy_from_step, scores, 0.0)
      score = jnp.mean(scores)
      metrics['energy_score'] = score
      penalty = energy_weight * score
    return Draw(real=x_prev, fake=x_fake, cond=(x_t, t), metrics=metrics, g_penalty=penalty)

  return draw


# --------------------------------------------------------------- state, step


def init_state(generator: nn.Module, discriminator: nn.Module,
               g_optimizer: optax.GradientTransformation,
               d_optimizer: optax.GradientTransformation, rng: jax.Array, example_batch: Batch,
               *, latent_dim: int) -> TrainState:
  """A fresh state for the pair (see :func:`trilemma_jax.families.adversarial.init_state`).

  Args:
    generator: module called as ``G(x_t, z, t)``.
    discriminator: module called as ``D(x_prev, x_t, t)``.
    g_optimizer, d_optimizer: their optax optimisers.
    rng: the run's base key ``uint32[2]``, stored as ``state.rng``.
    example_batch: ``{'x': [B, *shape], ...}``; only the shape is used.
    latent_dim: dimension of ``z``.
  """
  g_params, d_variables = init_networks(generator, discriminator, rng, example_batch,
                                        latent_dim=latent_dim)
  return adversarial.init_state(g_params, d_variables, g_optimizer, d_optimizer, rng)


def init_networks(generator: nn.Module, discriminator: nn.Module, rng: jax.Array,
                  example_batch: Batch, *, latent_dim: int):
  """``(generator params, discriminator variables)`` for the shapes of ``example_batch``."""
  x = jnp.zeros_like(jnp.asarray(example_batch['x'])[:1])
  t = jnp.ones((1,), jnp.int32)
  g_key, d_key = jax.random.split(rng)
  g_params = generator.init(g_key, x, jnp.zeros((1, latent_dim), x.dtype), t)['params']
  # A packing discriminator needs one whole pack.
  m = getattr(discriminator, 'pack', 1)
  x_d, t_d = jnp.repeat(x, m, axis=0), jnp.repeat(t, m)
  return g_params, discriminator.init(d_key, x_d, x_d, t_d)


def make_train_step(generator: nn.Module, discriminator: nn.Module,
                    g_optimizer: optax.GradientTransformation,
                    d_optimizer: optax.GradientTransformation, schedule: Schedule, *,
                    latent_dim: int, data_scale: float = 1.0, n_critic: int = 1,
                    r1_gamma: float | optax.Schedule = 0.02, r1_every: int = 1,
                    ema_decay: float = 0.999,
                    ema_warmup: bool = True, energy_weight: float = 0.0,
                    energy_from_step: int = 1, pack: int = 1,
                    t_weights: Sequence[float] = ()) -> Callable:
  """The pure step ``(state, batch) -> (state, metrics)`` (see the module docstring).

  Args:
    generator, discriminator: the modules.
    g_optimizer, d_optimizer: optax optimisers matching ``state.opt_state``.
    schedule: the diffusion with ``T = schedule.num_steps`` steps.
    latent_dim: dimension of ``z``.
    data_scale: the networks see ``data_scale * batch['x']``.
    n_critic: discriminator updates per step (same real batch, fresh t, pairs, z).
    r1_gamma: gamma of the R1 penalty gamma/2 ||grad D(real)||^2, or an optax
      schedule of it over the steps (:func:`r1_gamma_schedule`); 0 disables it.
    r1_every: apply R1 on every k-th discriminator update (not rescaled by k).
    ema_decay, ema_warmup: generator EMA (see ``ema_decay_with_warmup``).
    energy_weight: weight of the generator's energy-score penalty (see
      :func:`make_draw`); 0 is the original DDGAN.
    energy_from_step: the score counts at the steps ``t >= energy_from_step``
      only (see :func:`make_draw`); 1 = every step.
    pack: examples per discriminator logit; ``discriminator`` must be a
      :class:`~trilemma_jax.families.ddgan.nets.PackedDiscriminator` of this pack.
    t_weights: relative frequencies of the steps ``t = 1..T`` in training (see
      :func:`sample_t`); empty is uniform, the original DDGAN.

  Returns:
    The step; its metrics are the adversarial core's plus ``x0_rmse`` (and
    ``energy_score`` when weighted).
  """
  g_apply = lambda p, x_t, z, t: apply_generator(generator, p, x_t, z, t)

  def d_apply(d_params, d_state, x_prev, cond, update_stats):
    x_t, t = cond
    return adversarial.apply_discriminator(discriminator, d_params, d_state, x_prev, x_t, t,
                                           update_stats=update_stats)

  return adversarial.make_train_step(
      make_draw(schedule, g_apply, latent_dim=latent_dim, data_scale=data_scale,
                energy_weight=energy_weight, energy_from_step=energy_from_step, pack=pack,
                t_weights=t_weights), d_apply,
      g_optimizer, d_optimizer, loss='non_saturating', n_critic=n_critic, r1_gamma=r1_gamma,
      r1_every=r1_every, r1_rescale=False, ema_decay=ema_decay, ema_warmup=ema_warmup)


# ------------------------------------------------------------------- sampling


def sample_chain(generator: nn.Module, g_params: Any, schedule: Schedule, rng: jax.Array,
                 x_T: jax.Array, *, latent_dim: int, trajectory: bool = False,
                 from_t: int | None = None) -> jax.Array:
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
    latent_dim: dimension of ``z``.
    trajectory: also return the intermediate states.
    from_t: start the chain at step ``from_t`` in ``1..T`` instead of T:
      ``x_T`` then holds ``x_{from_t}`` and the chain runs ``from_t`` steps.

  Returns:
    ``[n, ...]`` samples on the network's scale; with ``trajectory``
    ``[from_t + 1, n, ...]``, entry ``i`` being ``x_{from_t - i}`` (first the
    start, last the samples).
  """
  n = x_T.shape[0]

  def step(x, t):
    z_key, noise_key = jax.random.split(jax.random.fold_in(rng, t))
    tb = jnp.full((n,), t, jnp.int32)
    z = jax.random.normal(z_key, (n, latent_dim), x.dtype)
    x0_hat = apply_generator(generator, g_params, x, z, tb)
    x = fake_prev(schedule, x0_hat, x, tb, noise_key)
    return x, (x if trajectory else None)

  first = schedule.num_steps if from_t is None else int(from_t)
  if not 1 <= first <= schedule.num_steps:
    raise ValueError(f'from_t={from_t!r} must be in 1..{schedule.num_steps}.')
  ts = jnp.arange(first, 0, -1, dtype=jnp.int32)
  x, xs = jax.lax.scan(step, x_T, ts)
  return jnp.concatenate([x_T[None], xs], axis=0) if trajectory else x


def _chain(generator: nn.Module, schedule: Schedule, shape: tuple[int, ...], g_params: Any,
           rng: jax.Array, n: int, *, latent_dim: int, data_scale: float,
           trajectory: bool = False) -> jax.Array:
  prior_key, chain_key = jax.random.split(rng)
  x_T = jax.random.normal(prior_key, (n, *shape), jnp.float32)
  return sample_chain(generator, g_params, schedule, chain_key, x_T, latent_dim=latent_dim,
                      trajectory=trajectory) / data_scale


def make_sampler(generator: nn.Module, schedule: Schedule, shape: tuple[int, ...], *,
                 latent_dim: int, data_scale: float = 1.0) -> Callable[..., jax.Array]:
  """``sample(state, rng, n) -> [n, *shape]`` in data coordinates from the EMA generator."""

  def sample(state: TrainState, rng: jax.Array, n: int) -> jax.Array:
    return _chain(generator, schedule, shape, state.ema[GENERATOR], rng, n,
                  latent_dim=latent_dim, data_scale=data_scale)

  return sample


class Parts(NamedTuple):
  """A DDGAN's pieces for a config, to look inside it (``ddgan_explained.ipynb``).

  Attributes:
    schedule: the diffusion with ``T = config.ddgan.num_steps`` steps.
    generator: ``G(x_t, z, t) -> x0_hat``.
    discriminator: ``D(x_{t-1}, x_t, t) -> logit``.
    shape: one example's shape.
    latent_dim: dimension of ``z``.
    data_scale: the networks see ``data_scale * x``.
    energy_weight: weight of the energy-score penalty (``ddgan.energy_weight``).
    energy_from_step: the lowest step the penalty counts at (``ddgan.energy_from_step``).
    pack: pairs per discriminator logit (``ddgan.pack``).
    t_weights: relative frequencies of the steps in training, from
      ``ddgan.t_weights`` and ``ddgan.last_step_weight`` (:func:`step_weights`).
  """

  schedule: Schedule
  generator: nn.Module
  discriminator: nn.Module
  shape: tuple[int, ...]
  latent_dim: int
  data_scale: float
  energy_weight: float = 0.0
  energy_from_step: int = 1
  pack: int = 1
  t_weights: tuple[float, ...] = ()

  def draw(self, g_params: Any, x0: jax.Array, key: jax.Array) -> Draw:
    """The real and fake pairs a train step shows D for data ``x0`` (network scale).

    With packs (``pack > 1``) the batch must be a multiple of ``pack``; the
    members of each pack share their ``t``, as in training.
    """
    g_apply = lambda p, x_t, z, t: apply_generator(self.generator, p, x_t, z, t)
    return make_draw(self.schedule, g_apply, latent_dim=self.latent_dim,
                     data_scale=self.data_scale, energy_weight=self.energy_weight,
                     energy_from_step=self.energy_from_step, pack=self.pack,
                     t_weights=self.t_weights)(
                         g_params, {'x': jnp.asarray(x0)}, key)

  def trajectory(self, g_params: Any, rng: jax.Array, n: int) -> jax.Array:
    """``[T + 1, n, *shape]``: ``x_T, ..., x_0`` of the sampler in data coordinates.

    The last entry is what the family's sampler draws for the same ``rng``.
    """
    return _chain(self.generator, self.schedule, self.shape, g_params, rng, n,
                  latent_dim=self.latent_dim, data_scale=self.data_scale, trajectory=True)

  def noised(self, x0: jax.Array, t: int, rng: jax.Array) -> jax.Array:
    """Exact draws of ``q(x_t | x_0)`` (network scale) for data-scale ``x0``, ``[n, *shape]``.

    With :meth:`denoise`, real data taken through the forward process and back by
    the generator's last ``t`` steps: how those steps alone treat the data.
    """
    x = jnp.asarray(x0) * self.data_scale
    return diffusion.q_sample(self.schedule, x, jnp.full((x.shape[0],), t),
                              jax.random.normal(rng, x.shape))

  def denoise(self, g_params: Any, x_t: jax.Array, t: int, rng: jax.Array) -> jax.Array:
    """The generator's steps ``t, ..., 1`` from ``x_t`` (network scale): ``x_0``, ``[n, *shape]``.

    Started from exact draws of ``q(x_t)`` (:mod:`trilemma_jax.analytic`), this
    isolates the error of the last ``t`` steps.
    """
    return sample_chain(self.generator, g_params, self.schedule, rng, jnp.asarray(x_t),
                        latent_dim=self.latent_dim, from_t=t)


def build_parts(config: ml_collections.ConfigDict, info: DatasetInfo) -> Parts:
  """The :class:`Parts` of a validated DDGAN ``config`` on ``info``."""
  d = config.ddgan
  schedule = diffusion.ddgan_vp_schedule(
      d.num_steps, beta_min=d.beta_min, beta_max=d.beta_max,
      time_power=config_lib.setting(config, 'ddgan.time_power'))
  generator, discriminator = build_networks(config, info, schedule)
  return Parts(schedule=schedule, generator=generator, discriminator=discriminator,
               shape=tuple(info.shape), latent_dim=latent_size(config, info),
               data_scale=float(d.data_scale),
               energy_weight=float(config_lib.setting(config, 'ddgan.energy_weight')),
               energy_from_step=int(config_lib.setting(config, 'ddgan.energy_from_step')),
               pack=int(config_lib.setting(config, 'ddgan.pack')),
               t_weights=step_weights(d.num_steps, config_lib.setting(config, 'ddgan.t_weights'),
                                      config_lib.setting(config, 'ddgan.last_step_weight')))


def latent_size(config: ml_collections.ConfigDict, info: DatasetInfo) -> int:
  """Entries of the generator's ``z``: the latent, then any noise maps (U-Net only)."""
  size = int(config.model.latent_dim)
  if info.kind != 'points' and config_lib.setting(config, 'model.image.arch') == 'unet':
    size += noise_map_size(info.shape, config_lib.setting(config, 'model.image.noise_channels'))
  return size


# --------------------------------------------------------------------- config


def build_networks(config: ml_collections.ConfigDict, info: DatasetInfo,
                   schedule: Schedule) -> tuple[nn.Module, nn.Module]:
  """The generator and discriminator for ``info``: MLPs for points; for images a small U-Net
  and conv net, or NCSN++ and the official small discriminator (``model.image.arch``)."""
  m, d = config.model, config.ddgan
  time_scale = 1000.0 / schedule.num_steps
  dtype = config_lib.compute_dtype(config)
  spectral_norm = bool(config_lib.setting(config, 'ddgan.spectral_norm'))
  if info.kind == 'points':
    p = m.points
    generator = MLPGenerator(width=p.g_width, num_blocks=p.g_blocks, z_emb_dim=m.z_emb_dim,
                             mapping_layers=m.mapping_layers, time_dim=m.time_dim,
                             num_groups=m.num_groups, activation=m.g_activation,
                             fourier_octaves=p.g_fourier_octaves,
                             fourier_first_octave=int(config_lib.setting(
                                 config, 'model.points.g_fourier_first_octave')),
                             time_scale=time_scale,
                             dtype=dtype)
    discriminator = MLPDiscriminator(widths=tuple(p.d_widths), time_dim=m.time_dim,
                                     activation=m.d_activation,
                                     fourier_octaves=p.d_fourier_octaves,
                                     fourier_first_octave=int(config_lib.setting(
                                         config, 'model.points.d_fourier_first_octave')),
                                     time_scale=time_scale,
                                     spectral_norm=spectral_norm, dtype=dtype)
  elif config_lib.setting(config, 'model.image.arch') == 'ncsnpp':
    im = m.image
    generator = ncsnpp.NCSNppGenerator(
        ch=im.ch, ch_mult=tuple(im.ch_mult), num_res_blocks=im.num_res_blocks,
        attn_resolutions=tuple(im.attn_resolutions), z_emb_dim=m.z_emb_dim,
        mapping_layers=m.mapping_layers, activation=m.g_activation, time_scale=time_scale,
        dtype=dtype)
    discriminator = ncsnpp.DownConvDiscriminator(
        channels=tuple(im.d_channels), t_emb_dim=m.time_dim, activation=m.d_activation,
        time_scale=time_scale, dtype=dtype)
  else:
    im = m.image
    generator = UNetGenerator(ch=im.ch, ch_mult=tuple(im.ch_mult),
                              num_res_blocks=im.num_res_blocks, z_emb_dim=m.z_emb_dim,
                              mapping_layers=m.mapping_layers, num_groups=m.num_groups,
                              activation=m.g_activation, time_scale=time_scale,
                              noise_channels=int(config_lib.setting(
                                  config, 'model.image.noise_channels')),
                              latent_from_step=int(config_lib.setting(
                                  config, 'model.image.latent_from_step')),
                              dtype=dtype)
    discriminator = ConvDiscriminator(channels=tuple(im.d_channels), time_dim=m.time_dim,
                                      activation=m.d_activation, time_scale=time_scale,
                                      spectral_norm=spectral_norm, dtype=dtype)
  if config_lib.setting(config, 'ddgan.per_step_generator'):
    generator = PerStepGenerator(generator, schedule.num_steps)
  if d.skip_generator:
    generator = SkipGenerator(generator, tuple(float(a) for a in schedule.alpha_bars),
                              info.data_std * float(d.data_scale))
  pack = int(config_lib.setting(config, 'ddgan.pack'))
  if pack > 1:
    discriminator = PackedDiscriminator(discriminator, pack)
  return generator, discriminator


def _optimizer(lr: float, o: ml_collections.ConfigDict,
               steps: int) -> optax.GradientTransformation:
  # Official recipe: cosine annealing of both learning rates down to min_lr.
  schedule = optax.cosine_decay_schedule(lr, steps, alpha=min(o.min_lr / lr, 1.0)) \
      if o.cosine_decay else lr
  return optax.adam(schedule, b1=o.b1, b2=o.b2)


def r1_gamma_schedule(config: ml_collections.ConfigDict) -> float | optax.Schedule:
  """R1's gamma for the step: ``ddgan.r1_gamma``, or with ``ddgan.r1_gamma_start > 0``
  a geometric path from that start at step 0 to ``r1_gamma`` at ``train.steps``."""
  d = config.ddgan
  start = float(config_lib.setting(config, 'ddgan.r1_gamma_start'))
  if start <= 0:
    return float(d.r1_gamma)
  return optax.exponential_decay(start, config.train.steps, float(d.r1_gamma) / start)


def build_family(config: ml_collections.ConfigDict, info: DatasetInfo) -> Family:
  """The DDGAN :class:`Family` for a validated ``config`` on ``info``."""
  d = config.ddgan
  parts = build_parts(config, info)
  generator, discriminator, schedule = parts.generator, parts.discriminator, parts.schedule
  o = config.optim
  g_optimizer = _optimizer(o.g_lr, o, config.train.steps)
  d_optimizer = _optimizer(o.d_lr, o, config.train.steps * d.n_critic)
  latent_dim = parts.latent_dim
  train_step = make_train_step(
      generator, discriminator, g_optimizer, d_optimizer, schedule, latent_dim=latent_dim,
      data_scale=parts.data_scale, n_critic=d.n_critic, r1_gamma=r1_gamma_schedule(config),
      r1_every=d.r1_every, ema_decay=config.ema.decay, ema_warmup=config.ema.warmup,
      energy_weight=parts.energy_weight, energy_from_step=parts.energy_from_step,
      pack=parts.pack, t_weights=parts.t_weights)

  return adversarial.make_family(
      config.family,
      lambda rng, batch: init_networks(generator, discriminator, rng, batch,
                                       latent_dim=latent_dim),
      g_optimizer, d_optimizer, train_step,
      make_sampler(generator, schedule, parts.shape, latent_dim=latent_dim,
                   data_scale=parts.data_scale),
      {f'ddgan{d.num_steps}': ({}, d.num_steps)})
