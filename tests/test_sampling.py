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


def test_vmapped_draws_are_the_separate_calls_draws():
  CALLS.clear()
  plain = sampling.draw(fake_sampler, {}, 750, batch=100, seed=3)
  CALLS.clear()
  assert np.array_equal(sampling.draw(fake_sampler, {}, 750, batch=100, seed=3, vmapped=True),
                        plain)
  assert CALLS == [100]  # traced once, under vmap
  CALLS.clear()
  samples, timing = sampling.draw_timed(fake_sampler, {}, 750, batch=100, seed=3, min_timed=2,
                                        vmap_untimed=True)
  np.testing.assert_array_equal(samples, plain)
  # Compile, warm-up and two timed calls one by one; the other four batches in one call.
  assert CALLS == [100] * 5 and timing['timed_calls'] == 2
  CALLS.clear()
  samples, _ = sampling.draw_timed(fake_sampler, {}, 250, batch=100, seed=3, min_timed=1,
                                   vmap_untimed=True)
  np.testing.assert_array_equal(samples, plain[:250])
  assert CALLS == [100] * 3  # nothing left to vmap
  CALLS.clear()
  samples, _ = sampling.draw_timed(fake_sampler, {}, 350, batch=100, seed=3, min_timed=1,
                                   vmap_untimed=True)
  np.testing.assert_array_equal(samples, plain[:350])
  assert CALLS == [100] * 4  # one batch left: one more plain call, no new program


def test_vmapped_draws_of_a_real_sampler_agree_with_the_separate_calls():
  """The evaluation's draws of grid25's DDPM: the same bits either way (on CPU here)."""
  from trilemma_jax import checkpoints, data, families
  info = data.load_info('grid25')
  family = families.build(families.get_config(
      'ddpm', 'grid25', {'ddpm.timesteps': 100, 'ddpm.vb_terms': 0, 'ddpm.ddim_steps': (4,)}),
      info)
  assert sampling.vmap_pays(info.kind, family.samplers['ancestral'][1])
  assert not sampling.vmap_pays(info.kind, family.samplers['ddim4'][1])
  assert not sampling.vmap_pays('image', 1000)
  state = jax.jit(family.init)(jax.random.PRNGKey(1), checkpoints.example_batch(info))
  fn = sampling.sampler_fn(family, 'ancestral')
  one = sampling.draw(fn, state, 400, batch=100, seed=2, vmapped=True)
  separate = sampling.draw(fn, state, 400, batch=100, seed=2)
  np.testing.assert_array_equal(one, separate)
  assert not np.allclose(one, sampling.draw(fn, state, 400, batch=100, seed=3))
