"""The backend-dependent choices of the library, in one place.

XLA:CPU and the accelerator backends reward different program shapes. Library
code asks this module instead of branching on the backend itself; what each
choice buys was measured and is written up in ``docs/performance.md``.

* Programs that run once (the state's init) compile without LLVM optimisation
  on CPU: compile time is all that counts for them.
* A few discriminator updates per step are unrolled in Python on CPU, where
  the body of an XLA while loop ran the conv nets several times slower;
  elsewhere ``lax.scan`` keeps the program small.
* A lazily applied penalty (R1 every k-th update) is computed unconditionally
  on CPU, where ``lax.cond``'s nested computations cost more than the skipped
  backward pass saves; elsewhere ``lax.cond`` skips it off schedule.
* Large parameter initialisations draw their bits with the 'rbg' generator:
  threefry bits took XLA:CPU about a second of compile time per tensor.
* Several train steps per call (``train.steps_per_dispatch``) are a
  ``lax.scan``; on CPU the convolutions inside it leave the fast library path,
  so only MLP steps are worth scanning there.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp


def is_cpu(devices: Sequence[jax.Device] | None = None) -> bool:
  """Whether ``devices`` (default: the default backend's) are all CPUs."""
  if devices is None:
    return jax.default_backend() == 'cpu'
  return all(d.platform == 'cpu' for d in devices)


def run_once_compiler_options(devices: Sequence[jax.Device]) -> dict[str, Any] | None:
  """``compiler_options`` for a program that runs once on ``devices`` (None: the defaults).

  On CPU, optimisation level 0: the init of a digits DDGAN compiled 3x faster.
  Its values agree with the optimised program's to float rounding, not bit for
  bit; a run stays bitwise reproducible because it always compiles its init the
  same way.
  """
  return {'xla_backend_optimization_level': 0} if is_cpu(devices) else None


def unroll_small_loops() -> bool:
  """Unroll a few (static) sequential updates in Python rather than ``lax.scan``."""
  return is_cpu()


def scan_or_unroll(body: Callable[[Any, int], tuple[Any, Any]], carry: Any,
                   length: int) -> tuple[Any, Any]:
  """``lax.scan(body, carry, arange(length))``, unrolled in Python where that is faster.

  ``body(carry, i) -> (carry, out)``; the outputs are stacked on a leading axis
  either way, and ``i`` is an int32 scalar (a Python int when unrolled).
  """
  if unroll_small_loops():
    outs = []
    for i in range(length):
      carry, out = body(carry, i)
      outs.append(out)
    return carry, jax.tree.map(lambda *v: jnp.stack(v), *outs)
  return jax.lax.scan(body, carry, jnp.arange(length, dtype=jnp.int32))


def scanned_steps_are_fast(kind: str, devices: Sequence[jax.Device] | None = None) -> bool:
  """Whether a ``lax.scan`` over train steps of nets for ``kind`` data runs at full speed.

  False for conv nets (``kind='image'``) on CPU, where the scanned steps ran
  tens of times slower than single steps.
  """
  return not (kind == 'image' and is_cpu(devices))


def lazy_penalty_uses_cond() -> bool:
  """Whether a lazily applied penalty skips its computation off schedule with ``lax.cond``."""
  return not is_cpu()


def param_init_key(rng: jax.Array) -> jax.Array:
  """A key for initialising large networks, derived from the run's raw key.

  'rbg' bits (XLA's RngBitGenerator) compile about ten times faster than
  threefry's on CPU. The init is replicated, so every device draws the same
  parameters.
  """
  data = jax.random.bits(jax.random.fold_in(rng, 0), (4,), jnp.uint32)
  return jax.random.wrap_key_data(data, impl='rbg')
