"""Drawing samples: batched draws, and the timed draws the speed corner is measured on."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from trilemma_jax import sampling

CALLS = []


@functools.partial(jax.jit, static_argnums=2)
def _normal(state, rng, n):
  del state
  return jax.random.normal(rng, (n, 2))


def fake_sampler(state, rng, n):
  CALLS.append(n)
  return _normal(state, rng, n)


def test_timed_draws_are_the_batched_draws_and_time_every_call_after_the_warm_up():
  CALLS.clear()
  plain = sampling.draw(fake_sampler, {}, 250, batch=100, seed=3)
  assert plain.shape == (250, 2) and CALLS == [100, 100, 100]
  CALLS.clear()
  samples, timing = sampling.draw_timed(fake_sampler, {}, 250, batch=100, seed=3, min_timed=1)
  np.testing.assert_array_equal(samples, plain)
  assert CALLS == [100, 100, 100] and timing['timed_calls'] == 1
  assert timing['samples_per_second'] > 0 and timing['compile_seconds'] > 0
  CALLS.clear()
  samples, timing = sampling.draw_timed(fake_sampler, {}, 100, batch=100, seed=3, min_timed=4)
  np.testing.assert_array_equal(samples, plain[:100])
  assert CALLS == [100] * 6 and timing['timed_calls'] == 4  # extra calls for the timing


def test_batches_draw_from_folded_keys():
  samples = sampling.draw(fake_sampler, {}, 150, batch=100, seed=0)
  key = jax.random.PRNGKey(0)
  expected = jnp.concatenate([_normal({}, jax.random.fold_in(key, i), 100) for i in range(2)])
  np.testing.assert_array_equal(samples, np.asarray(expected)[:150])
