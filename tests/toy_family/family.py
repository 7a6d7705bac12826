"""``x ~ N(mean, diag(exp(log_std))²)``: the parameters follow the NLL's gradient (Adam).

``state.extra['examples_seen']`` counts the training examples the run has used,
to show family-specific state riding along in checkpoints and resumes.
"""

import math

import jax
import jax.numpy as jnp
import optax

from trilemma_jax import losses
from trilemma_jax.train_state import Family, new_state

NET = 'gaussian'


def nll(params, x):
  """-log N(x; mean, std²) per example, nats."""
  log_var = 2.0 * params['log_std']
  return -losses.gaussian_log_prob(x, jnp.broadcast_to(params['mean'], x.shape),
                                   jnp.broadcast_to(log_var, x.shape))


def build_family(config, info):
  optimizer = optax.adam(config.optim.lr)
  dim = math.prod(info.shape)

  def init(rng, example_batch):
    shape = example_batch['x'].shape[1:]
    params = {NET: {'mean': jnp.zeros(shape), 'log_std': jnp.zeros(shape)}}
    return new_state(params, optimizer.init(params), rng, ema=params,
                     extra={'examples_seen': jnp.zeros((), jnp.int32)})

  def train_step(state, batch):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(nll(p[NET], batch['x'])))(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    seen = state.extra['examples_seen'] + batch['x'].shape[0]
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema=params,
                         extra={'examples_seen': seen}), {'loss': loss}

  def sample(state, rng, n):
    p = state.ema[NET]
    return p['mean'] + jnp.exp(p['log_std']) * jax.random.normal(rng, (n, *info.shape))

  def evaluate(state, batch, rng):
    del rng
    return {'nll_bits_per_dim': nll(state.ema[NET], batch['x']) / (dim * math.log(2.0))}

  return Family(name=config.family, init=init, train_step=train_step, sample=sample,
                samplers={'gaussian': ({}, 1)}, evaluate=evaluate)
