"""The adversarial core of the two-player families (GAN, DDGAN).

One compiled step: ``n_critic`` discriminator updates, each on a fresh draw of
real and fake inputs, then one generator update on another draw, then the EMA
of the generator. What a family adds is how a draw is made and how its
discriminator is called:

* ``draw(g_params, batch, key) -> Draw``: the real and fake inputs of D and what
  D sees beside them (GAN: the data and ``G(z)``, with labels for a conditional
  model; DDGAN: the pairs ``x_{t-1}`` of the forward chain and of the
  generator's reverse step, beside ``(x_t, t)``). The fake input must be
  differentiable in ``g_params``.
* ``d_apply(d_params, d_state, x, cond, update_stats) -> (logits [B], d_state)``.

Options: the loss pair (:func:`trilemma_jax.losses.gan_losses`); an R1 penalty
γ/2·||∇ₓD(x)||² on the real input (Mescheder et al. 2018), lazily on every
``r1_every``-th discriminator update, weighted by ``r1_every`` or not
(StyleGAN2 rescales, the official DDGAN code does not); non-trained
discriminator state (spectral norm), advanced by the discriminator updates only.

State layout: ``params`` / ``opt_state`` are ``{'generator': ..., 'discriminator':
...}``, ``ema`` is ``{'generator': ...}``, ``model_state`` is ``{'discriminator':
...}`` when D has non-trained variables and ``{}`` otherwise.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from trilemma_jax import losses, perf, validation
from trilemma_jax.nets.layers import ACTIVATIONS
from trilemma_jax.train_state import (Batch, Family, Metrics, PyTree, TrainState,
                                      ema_decay_with_warmup, ema_update, new_state)

GENERATOR, DISCRIMINATOR = 'generator', 'discriminator'


class Draw(NamedTuple):
  """The inputs of one discriminator or generator update.

  Attributes:
    real: ``[B, ...]`` real input of D; R1 is taken with respect to it.
    fake: ``[B, ...]`` generated input of D, differentiable in the generator's
      parameters.
    cond: what D sees beside either input (labels, ``(x_t, t)``, or None).
    metrics: scalars about the draw; those of the generator update's draw are
      reported with the step's metrics.
    g_penalty: a scalar the generator update adds to its adversarial loss
      (differentiable in the generator's parameters), or None. The
      discriminator updates ignore it, and XLA drops its computation there.
  """

  real: jax.Array
  fake: jax.Array
  cond: Any
  metrics: Metrics
  g_penalty: jax.Array | None = None


DrawFn = Callable[[PyTree, Batch, jax.Array], Draw]
DApplyFn = Callable[[PyTree, PyTree, jax.Array, Any, bool], tuple[jax.Array, PyTree]]
# (rng, example_batch) -> (generator params, discriminator variables)
InitFn = Callable[[jax.Array, Batch], tuple[PyTree, PyTree]]

# Config keys every two-player family has (checked by its config's validate).
CONFIG_CHECKS = {
    'model.latent_dim': validation.positive_int,
    'model.g_activation': validation.one_of(tuple(ACTIVATIONS)),
    'model.d_activation': validation.one_of(tuple(ACTIVATIONS)),
    'optim.g_lr': validation.positive,
    'optim.d_lr': validation.positive,
    'optim.b1': validation.in_range(0.0, 1.0, high_open=True),
    'optim.b2': validation.in_range(0.0, 1.0, high_open=True),
}


def apply_discriminator(discriminator, d_params: PyTree, d_state: PyTree, *inputs,
                        update_stats: bool) -> tuple[jax.Array, PyTree]:
  """``D(*inputs)`` as f32 logits, and D's non-trained state after the call.

  The building block of a family's ``d_apply``. A discriminator without
  non-trained state (``d_state`` empty) is called without ``update_stats``, so
  modules without that keyword work. With state (spectral norm's power
  iterations) the state advances only when ``update_stats`` is True: the
  core calls it so once per discriminator update, on the real input.
  """
  variables = {'params': d_params, **d_state}
  if not d_state:
    return discriminator.apply(variables, *inputs).astype(jnp.float32), d_state
  if update_stats:
    logits, d_state = discriminator.apply(variables, *inputs, update_stats=True,
                                          mutable=list(d_state))
    return logits.astype(jnp.float32), d_state
  return discriminator.apply(variables, *inputs, update_stats=False).astype(jnp.float32), d_state


def init_state(g_params: PyTree, d_variables: PyTree, g_optimizer: optax.GradientTransformation,
               d_optimizer: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """A fresh state for a generator's params and a discriminator's variables.

  Args:
    g_params: the generator's parameters.
    d_variables: the discriminator's variables: ``'params'`` and any non-trained
      collections (kept in ``model_state['discriminator']``).
    g_optimizer, d_optimizer: their optimisers.
    rng: the run's base key.
  """
  d_variables = dict(d_variables)
  d_params = d_variables.pop('params')
  return new_state(
      params={GENERATOR: g_params, DISCRIMINATOR: d_params},
      opt_state={GENERATOR: g_optimizer.init(g_params), DISCRIMINATOR: d_optimizer.init(d_params)},
      rng=rng, ema={GENERATOR: g_params},
      model_state={DISCRIMINATOR: d_variables} if d_variables else {})


def make_train_step(draw: DrawFn, d_apply: DApplyFn, g_optimizer: optax.GradientTransformation,
                    d_optimizer: optax.GradientTransformation, *, loss: str = 'non_saturating',
                    n_critic: int = 1, r1_gamma: float | optax.Schedule = 0.0,
                    r1_every: int = 1,
                    r1_rescale: bool = True, ema_decay: float = 0.999,
                    ema_warmup: bool = True) -> Callable[[TrainState, Batch],
                                                          tuple[TrainState, Metrics]]:
  """The pure step ``(state, batch) -> (state, metrics)``.

  Args:
    draw: makes the inputs of one update (see the module docstring).
    d_apply: calls the discriminator.
    g_optimizer, d_optimizer: optax optimisers matching ``state.opt_state``.
    loss: 'minimax', 'non_saturating' or 'hinge'.
    n_critic: discriminator updates per step (static), each on a fresh draw.
    r1_gamma: γ of the R1 penalty, or a schedule of it (an optax schedule of
      the step, ``state.step``); 0 leaves it out (and unmeasured).
    r1_every: apply R1 on every k-th discriminator update.
    r1_rescale: weight the lazy penalty by ``r1_every`` (StyleGAN2) or not.
    ema_decay, ema_warmup: generator EMA (see ``ema_decay_with_warmup``).

  Returns:
    The step. Metrics (scalars; D-side ones averaged over the n_critic updates):
    ``d_loss`` (adversarial part), ``r1`` (mean ||∇ₓD(x)||², when γ > 0),
    ``d_real`` / ``d_fake`` (mean sigmoid of the logits), ``logit_real`` /
    ``logit_fake``, ``d_grad_norm``, ``g_loss`` (with the draw's ``g_penalty``), ``g_grad_norm``, and the
    metrics of the generator update's draw.
  """
  d_loss_fn, g_loss_fn = losses.gan_losses(loss)
  r1_off = not callable(r1_gamma) and r1_gamma == 0
  r1_k = r1_every if r1_rescale else 1

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    key = state.step_rng()
    d_key, g_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    g_params = state.params[GENERATOR]
    d_state0 = state.model_state.get(DISCRIMINATOR, {})

    def d_update(carry, i):
      d_params, d_opt_state, d_state = carry
      u = draw(g_params, batch, jax.random.fold_in(d_key, i))
      fake = jax.lax.stop_gradient(u.fake)

      def loss_fn(d_params):
        real_logits, new_d_state = d_apply(d_params, d_state, u.real, u.cond, True)
        fake_logits, _ = d_apply(d_params, d_state, fake, u.cond, False)
        adv = jnp.mean(d_loss_fn(real_logits, fake_logits))
        aux = {'d_loss': adv, 'real': real_logits, 'fake': fake_logits}
        if r1_off:
          return adv, (new_d_state, aux)
        apply_r1 = (state.step * n_critic + i) % r1_every == 0
        # Every D evaluation of one update uses the state from before it, so they
        # all see the same (normalised) weights.
        r1 = losses.lazy_penalty(
            lambda p: losses.r1_penalty(lambda x: d_apply(p, d_state, x, u.cond, False)[0],
                                        u.real),
            d_params, apply_r1, every=r1_every)
        aux['r1'] = jnp.mean(r1)
        r1_weight = 0.5 * (r1_gamma(state.step) if callable(r1_gamma) else r1_gamma) * r1_k
        return adv + jnp.where(apply_r1, r1_weight, 0.0) * aux['r1'], (new_d_state, aux)

      grads, (new_d_state, aux) = jax.grad(loss_fn, has_aux=True)(d_params)
      updates, d_opt_state = d_optimizer.update(grads, d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, updates)
      real, fake_logits = aux.pop('real'), aux.pop('fake')
      metrics = {
          **aux,
          'd_real': jnp.mean(jax.nn.sigmoid(real)),
          'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)),
          'logit_real': jnp.mean(real),
          'logit_fake': jnp.mean(fake_logits),
          'd_grad_norm': optax.tree.norm(grads),
      }
      return (d_params, d_opt_state, new_d_state), metrics

    carry = (state.params[DISCRIMINATOR], state.opt_state[DISCRIMINATOR], d_state0)
    (d_params, d_opt_state, d_state), d_metrics = perf.scan_or_unroll(d_update, carry, n_critic)

    def g_objective(g_params):
      u = draw(g_params, batch, g_key)
      logits, _ = d_apply(d_params, d_state, u.fake, u.cond, False)
      g_loss = jnp.mean(g_loss_fn(logits))
      return (g_loss if u.g_penalty is None else g_loss + u.g_penalty), u.metrics

    (g_loss, draw_metrics), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_params)
    g_updates, g_opt_state = g_optimizer.update(g_grads, state.opt_state[GENERATOR], g_params)
    g_params = optax.apply_updates(g_params, g_updates)

    decay = ema_decay_with_warmup(state.step, ema_decay, ema_warmup)
    new = state.replace(
        step=state.step + 1,
        params={GENERATOR: g_params, DISCRIMINATOR: d_params},
        opt_state={GENERATOR: g_opt_state, DISCRIMINATOR: d_opt_state},
        ema={GENERATOR: ema_update(state.ema[GENERATOR], g_params, decay)},
        model_state={DISCRIMINATOR: d_state} if d_state else {},
    )
    metrics = {k: jnp.mean(v) for k, v in d_metrics.items()}
    metrics.update(g_loss=g_loss, g_grad_norm=optax.tree.norm(g_grads), **draw_metrics)
    return new, metrics

  return train_step


def make_family(name: str, init_networks: InitFn, g_optimizer: optax.GradientTransformation,
                d_optimizer: optax.GradientTransformation, train_step: Callable,
                sample: Callable[..., jax.Array],
                samplers: dict[str, tuple[dict[str, Any], int]]) -> Family:
  """The :class:`Family` of a two-player model whose networks ``init_networks`` creates."""

  def init(rng: jax.Array, example_batch: Batch) -> TrainState:
    g_params, d_variables = init_networks(rng, example_batch)
    return init_state(g_params, d_variables, g_optimizer, d_optimizer, rng)

  return Family(name=name, init=init, train_step=train_step, sample=sample, samplers=samplers)
