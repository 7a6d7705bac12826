"""Where trilemma_jax keeps what it can rebuild: trained feature networks, compiled programs.

One root for both, ``$TRILEMMA_CACHE_DIR`` (default ``~/.cache/trilemma_jax``):
``feature_nets/<dataset>`` holds the classifiers behind FD/KID/PRDC
(:mod:`trilemma_jax.metrics.features`), ``jax_compilation`` JAX's persistent
compilation cache (:func:`trilemma_jax.parallel.enable_compilation_cache`).
Deleting the root is always safe; its contents are rebuilt on first use.
"""

from __future__ import annotations

import os

CACHE_DIR_ENV = 'TRILEMMA_CACHE_DIR'
DEFAULT_CACHE_ROOT = os.path.join('~', '.cache', 'trilemma_jax')


def cache_path(*parts: str) -> str:
  """Absolute path of ``parts`` under the cache root (``$TRILEMMA_CACHE_DIR`` or the default)."""
  root = os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_ROOT
  return os.path.abspath(os.path.join(os.path.expanduser(root), *parts))
