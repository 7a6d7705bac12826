"""Wall-clock speed of a compiled sampler, compile time reported apart.

JAX dispatch is asynchronous: a timer read right after a call measures the queue,
not the work. Every timed call here is followed by ``block_until_ready`` on the
whole output before the clock is read.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax

from trilemma_jax import validation


def _run(sample_fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
  start = time.perf_counter()
  out = jax.block_until_ready(sample_fn(*args))
  return out, time.perf_counter() - start


def _device_of(out: Any) -> jax.Device:
  for leaf in jax.tree_util.tree_leaves(out):
    if isinstance(leaf, jax.Array):
      return next(iter(leaf.devices()))
  return jax.devices()[0]


def time_sampler(sample_fn: Callable[..., Any], *args: Any, batch: int = 100,
                 repeats: int = 10, warmup: int = 1) -> dict[str, Any]:
  """Times ``sample_fn(*args)``: the first call apart, then the median of ``repeats``.

  Args:
    sample_fn: usually a ``jax.jit``-compiled function producing ``batch``
      samples per call (e.g. ``jax.jit(partial(ddgan.sample, n=100))``).
      Its output may be any pytree; at least one array leaf must have ``batch``
      as its leading dimension, so a mismatch between the argument and the
      work done cannot go unnoticed.
    *args: the arguments of every call (params, rng, ...); the same ones each time.
    batch: number of samples one call produces.
    repeats: timed steady-state calls.
    warmup: untimed calls after the first one (lets allocators and caches settle).

  Returns:
    ``samples_per_second``: batch / seconds_per_batch;
    ``seconds_per_batch``: median wall time of the steady-state calls;
    ``compile_seconds``: wall time of the first call (trace + compile + one run);
    ``device_kind``, ``platform``: of the device holding the output;
    ``device_count``: devices in ``jax.devices()``;
    ``batch``, ``repeats``: as given.
  """
  validation.positive_int('batch (samples per call)', batch)
  validation.positive_int('repeats', repeats)
  validation.non_negative_int('warmup', warmup)

  out, compile_seconds = _run(sample_fn, args)
  leading = [leaf.shape[0] for leaf in jax.tree_util.tree_leaves(out)
             if getattr(leaf, 'ndim', 0) >= 1]
  if batch not in leading:
    raise ValueError(
        f'batch={batch} but no output array of sample_fn has that leading dimension (leading '
        f'dimensions: {leading}); pass the number of samples one call produces.')
  for _ in range(warmup):
    _run(sample_fn, args)
  seconds = statistics.median(_run(sample_fn, args)[1] for _ in range(repeats))
  device = _device_of(out)
  return {
      'samples_per_second': batch / seconds,
      'seconds_per_batch': seconds,
      'compile_seconds': compile_seconds,
      'device_kind': device.device_kind,
      'platform': device.platform,
      'device_count': jax.device_count(),
      'batch': batch,
      'repeats': repeats,
  }
