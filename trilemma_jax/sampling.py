"""Drawing samples from a trained state with one of its family's named samplers."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from trilemma_jax import parallel
from trilemma_jax.train_state import Family, TrainState


def sampler_fn(family: Family, sampler: str | None = None) -> Callable[..., jax.Array]:
  """``fn(state, rng, n)`` for the named sampler (default: the family's first), jitted.

  ``n`` is static: each batch size compiles once.
  """
  name = sampler or next(iter(family.samplers))
  if name not in family.samplers:
    raise ValueError(f'{family.name} has no sampler {name!r}; it has {list(family.samplers)}.')
  kwargs, _ = family.samplers[name]
  fn = jax.jit(family.sample, static_argnums=(2,), static_argnames=tuple(kwargs))
  return lambda state, rng, n: fn(state, rng, n, **kwargs)


def vmap_pays(kind: str, nfe: int) -> bool:
  """Whether draws of a sampler are worth making in one vmapped call (see :func:`draw`).

  For the 2-D data's small MLPs a call of ``n`` samples costs mostly the
  sampler's per-step overhead, which one call for all batches pays once: the
  1,000-step DDPM sampler of grid25 drew 2,000 points in 4.1 s (compile
  included) against 10.8 s in 20 calls. Few-step samplers gain less than the
  extra compile costs. The keys are the separate calls'; the DDPM samplers'
  values were bitwise theirs on CPU (tests/test_sampling.py), though XLA may
  round a batched network differently elsewhere (a DDGAN sampler did, here).
  """
  return kind == 'points' and nfe >= 100


def _draw_vmapped(fn: Callable[..., jax.Array], state: TrainState, key: jax.Array,
                  calls: range, batch: int) -> np.ndarray:
  """Calls ``calls`` of a draw (keys ``fold_in(key, i)``) as one vmapped program, concatenated."""
  keys = jnp.stack([jax.random.fold_in(key, i) for i in calls])
  # The state is an argument, not a constant of the program: as in the separate calls.
  out = jax.jit(jax.vmap(lambda st, k: fn(st, k, batch), in_axes=(None, 0)))(state, keys)
  out = parallel.to_numpy(out)
  return out.reshape(-1, *out.shape[2:])


def draw(fn: Callable[..., jax.Array], state: TrainState, n: int, *, batch: int,
         seed: int = 0, vmapped: bool = False) -> np.ndarray:
  """``n`` samples from ``fn(state, rng, batch)`` in batches (one compiled program), as numpy.

  Batch ``i`` draws from ``fold_in(PRNGKey(seed), i)``. ``vmapped`` draws all
  batches in one vmapped call instead, from the same keys (where
  :func:`vmap_pays`).
  """
  key = jax.random.PRNGKey(seed)
  calls = math.ceil(n / batch)
  if vmapped and calls > 1:
    return _draw_vmapped(fn, state, key, range(calls), batch)[:n]
  chunks = [parallel.to_numpy(fn(state, jax.random.fold_in(key, i), batch))
            for i in range(calls)]
  return np.concatenate(chunks)[:n]


def draw_timed(fn: Callable[..., jax.Array], state: TrainState, n: int, *, batch: int,
               seed: int = 0, min_timed: int = 1,
               vmap_untimed: bool = False) -> tuple[np.ndarray, dict[str, float]]:
  """:func:`draw`, timing every call: the samples and the sampler's speed at ``batch``.

  The first call holds the compile and the second is a warm-up; the later ones
  are timed (``block_until_ready`` before the clock is read), with extra calls
  made when fewer than ``min_timed`` remain. With ``vmap_untimed`` only the
  first ``2 + min_timed`` calls are made one by one (and timed); the rest of the
  ``n`` samples, if more than one batch, come from one vmapped call (see
  :func:`draw`) with the same keys. All its batches are in memory at once: meant
  for small samples such as 2-D points.

  Returns:
    ``(samples [n, ...], {'samples_per_second': batch / median timed call,
    'compile_seconds': the first call's wall time, 'timed_calls': ...})``.
  """
  key = jax.random.PRNGKey(seed)
  calls = max(math.ceil(n / batch), 2 + min_timed)
  separate = calls
  if vmap_untimed and calls - (2 + min_timed) > 1:  # one batch left: the plain program is compiled
    separate = 2 + min_timed
  chunks, seconds = [], []
  for i in range(separate):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(state, jax.random.fold_in(key, i), batch))
    seconds.append(time.perf_counter() - start)
    if len(chunks) * batch < n:
      chunks.append(parallel.to_numpy(out))
  if separate < calls:
    chunks.append(_draw_vmapped(fn, state, key, range(separate, calls), batch))
  timed = seconds[2:]
  return np.concatenate(chunks)[:n], {'samples_per_second': batch / statistics.median(timed),
                                       'compile_seconds': seconds[0],
                                       'timed_calls': len(timed)}


def draw_samples(family: Family, state: TrainState, n: int, seed: int = 0,
                 sampler: str | None = None) -> np.ndarray:
  """``n`` samples with the named sampler (default: the family's first) in one call, as numpy."""
  return parallel.to_numpy(sampler_fn(family, sampler)(state, jax.random.PRNGKey(seed), n))
