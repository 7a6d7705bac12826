"""Drawing samples from a trained state with one of its family's named samplers."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import jax
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


def draw(fn: Callable[..., jax.Array], state: TrainState, n: int, *, batch: int,
         seed: int = 0) -> np.ndarray:
  """``n`` samples from ``fn(state, rng, batch)`` in batches (one compiled program), as numpy.

  Batch ``i`` draws from ``fold_in(PRNGKey(seed), i)``.
  """
  key = jax.random.PRNGKey(seed)
  chunks = [parallel.to_numpy(fn(state, jax.random.fold_in(key, i), batch))
            for i in range(math.ceil(n / batch))]
  return np.concatenate(chunks)[:n]


def draw_timed(fn: Callable[..., jax.Array], state: TrainState, n: int, *, batch: int,
               seed: int = 0, min_timed: int = 1) -> tuple[np.ndarray, dict[str, float]]:
  """:func:`draw`, timing every call: the samples and the sampler's speed at ``batch``.

  The first call holds the compile and the second is a warm-up; the later ones
  are timed (``block_until_ready`` before the clock is read), with extra calls
  made when fewer than ``min_timed`` remain.

  Returns:
    ``(samples [n, ...], {'samples_per_second': batch / median timed call,
    'compile_seconds': the first call's wall time, 'timed_calls': ...})``.
  """
  key = jax.random.PRNGKey(seed)
  calls = max(math.ceil(n / batch), 2 + min_timed)
  chunks, seconds = [], []
  for i in range(calls):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(state, jax.random.fold_in(key, i), batch))
    seconds.append(time.perf_counter() - start)
    if len(chunks) * batch < n:
      chunks.append(parallel.to_numpy(out))
  timed = seconds[2:]
  return np.concatenate(chunks)[:n], {'samples_per_second': batch / statistics.median(timed),
                                       'compile_seconds': seconds[0],
                                       'timed_calls': len(timed)}


def draw_samples(family: Family, state: TrainState, n: int, seed: int = 0,
                 sampler: str | None = None) -> np.ndarray:
  """``n`` samples with the named sampler (default: the family's first) in one call, as numpy."""
  return parallel.to_numpy(sampler_fn(family, sampler)(state, jax.random.PRNGKey(seed), n))
