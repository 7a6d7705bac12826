"""The state every family trains, and the contract a family offers the generic loop.

A family (VAE, GAN, DDPM, DDGAN, or one of a user's) is a handful of pure
functions bundled in a :class:`Family`. The loop in :mod:`trilemma_jax.train`
knows nothing else about it: it builds the state with ``family.init``, compiles
``family.train_step`` once over a device mesh, checkpoints the
:class:`TrainState`, and draws pictures with ``family.sample``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue bit-exactly after a restore.

  Attributes:
    step: scalar int32, number of updates applied so far.
    params: the trained parameters, one entry per network:
      ``{'vae': ...}``, ``{'denoiser': ...}``, ``{'generator': ...,
      'discriminator': ...}``.
    opt_state: optax state(s), same nesting as the optimisers that made them.
    ema: exponential moving averages of the networks the samplers use, keyed
      like ``params`` (``ema['generator']`` averages ``params['generator']``;
      a GAN's discriminator has none).
    model_state: non-trained variables of the networks (e.g. spectral-norm
      power-iteration vectors), keyed like ``params``; ``{}`` when there are none.
    extra: whatever else a family carries from step to step (a target network,
      a replay buffer): any pytree of arrays, checkpointed with the rest;
      ``{}`` for the built-in families.
    rng: the run's base key (raw ``uint32[2]``); step ``k`` draws from
      ``fold_in(rng, k)``, so a resumed run sees the same numbers.
  """

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  ema: PyTree
  model_state: PyTree
  extra: PyTree
  rng: jax.Array

  def step_rng(self) -> jax.Array:
    """The key for the current step: ``fold_in(rng, step)``."""
    return jax.random.fold_in(self.rng, self.step)


def ema_update(ema: PyTree, new: PyTree, decay: float | jax.Array) -> PyTree:
  """``decay * ema + (1 - decay) * new``, leaf by leaf."""
  return optax.incremental_update(new, ema, step_size=1.0 - decay)


def ema_decay_with_warmup(step: jax.Array, decay: float, warmup: bool = True) -> jax.Array:
  """EMA decay that starts small: ``min(decay, (1 + step) / (10 + step))``.

  With a fixed 0.9999 a short CPU run would sample from weights close to their
  random initialisation; the warm-up lets the average follow early training.
  The warm-up term is below 0.999 until step ~9,000, so in shorter runs it alone
  sets the decay (step ``j`` weighted about as ``j^8`` in the average).
  """
  decay = jnp.asarray(decay, jnp.float32)
  if not warmup:
    return decay
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def new_state(params: PyTree, opt_state: PyTree, rng: jax.Array, *, ema: PyTree,
              model_state: PyTree | None = None, extra: PyTree | None = None) -> TrainState:
  """A step-0 :class:`TrainState`."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, ema=ema,
                    model_state={} if model_state is None else model_state,
                    extra={} if extra is None else extra, rng=rng)


def new_rng(seed: int) -> jax.Array:
  """A raw ``uint32[2]`` key (checkpoint-friendly, unlike typed keys)."""
  return jax.random.PRNGKey(seed)


@dataclasses.dataclass(frozen=True)
class Family:
  """The functions one generative family offers the train loop and the harness.

  Attributes:
    name: the family's registered name (see :mod:`trilemma_jax.families`).
    init: ``(rng, example_batch) -> TrainState``; example_batch holds
      ``'x'`` ``[B, *shape]`` float32 and ``'label'`` ``[B]`` int32.
    train_step: ``(state, batch) -> (state, metrics)``, pure, jittable; all
      randomness from ``state.step_rng()``; metrics are scalars.
    sample: ``(state, rng, n, **sampler_kwargs) -> samples [n, *shape]``,
      jittable with ``n`` and the sampler keywords static. Uses ``state.ema``.
    samplers: named sampler settings the harness reports as separate rows, each
      ``name -> (sampler_kwargs, nfe)``; the first entry is the default.
    evaluate: optional ``(state, batch, rng) -> per-example metrics``
      (e.g. ``nll_bits_per_dim`` ``[B]``) on the test split; None when the
      family has no likelihood.
    reconstruct: optional ``(state, x) -> x_hat`` for families with an encoder.
  """

  name: str
  init: Callable[[jax.Array, Batch], TrainState]
  train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
  sample: Callable[..., jax.Array]
  samplers: Mapping[str, tuple[Mapping[str, Any], int]]
  evaluate: Callable[[TrainState, Batch, jax.Array], Metrics] | None = None
  reconstruct: Callable[[TrainState, jax.Array], jax.Array] | None = None
