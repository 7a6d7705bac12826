"""Test set-up: eight forced CPU devices and fast compiles, set before jax is first imported."""

import os

import pytest

_FLAG = '--xla_force_host_platform_device_count=8'
# The unit tests compile far more than they run: LLVM at -O0 compiles faster and
# runs slower, 396 -> 298 s on the in-process test files (docs/performance.md,
# section 13). A flag of the caller's own wins. The scripts and notebooks run as
# users run them, at the default level (host_devices_env).
_FAST_COMPILE = '--xla_backend_optimization_level=0'
for _flag, _present in ((_FLAG, _FLAG), (_FAST_COMPILE, '--xla_backend_optimization_level=')):
  if _present not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


@pytest.fixture
def host_devices_env(session_cache_root):
  """``os.environ`` for a subprocess that should see the machine's own devices.

  The README commands run on the host's devices (one CPU device here), not on
  the eight forced ones: the experiment scripts are tested as users run them,
  and on 2 cores the forced devices made the quick-profile job ~1.8x slower
  (208 s against 367 s). Multi-device behaviour has its own tests. They also
  compile at XLA's default optimisation level: at -O0 the quick-profile job took
  140 s against 117 (docs/performance.md, section 13).
  """
  env = dict(os.environ)
  flags = ' '.join(f for f in env.get('XLA_FLAGS', '').split() if f not in (_FLAG, _FAST_COMPILE))
  if flags:
    env['XLA_FLAGS'] = flags
  else:
    env.pop('XLA_FLAGS', None)
  return env


@pytest.fixture(scope='session', autouse=True)
def session_cache_root(tmp_path_factory):
  """One cache root for the whole session, in place of the user's ``~/.cache/trilemma_jax``.

  Tests and the scripts they start keep feature networks and compiled programs
  there (``TRILEMMA_CACHE_DIR``): nothing goes to ``~/.cache/trilemma_jax``, a
  run restarted by a test loads what its first run compiled, and a program that
  several tests build alike is compiled once. Tests that must start cold pass
  their own root.
  """
  root = str(tmp_path_factory.mktemp('trilemma_cache'))
  os.environ['TRILEMMA_CACHE_DIR'] = root
  from trilemma_jax import parallel  # imports jax: after XLA_FLAGS above
  parallel.enable_compilation_cache()
  return root
