"""The likelihood corner: a family's test-split bound, computed or reused from training."""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from trilemma_jax import data as data_lib
from trilemma_jax import parallel
from trilemma_jax.train_state import Family, TrainState


def evaluate_likelihood(family: Family, state: TrainState, source, *, batch_size: int,
                        seed: int = 0, limit: int | None = None) -> dict[str, float]:
  """Means of ``family.evaluate`` over the test split (``limit`` examples at most)."""
  if family.evaluate is None:
    return {}
  fn = jax.jit(family.evaluate)
  totals: dict[str, float] = {}
  count = 0
  for i, batch in enumerate(data_lib.eval_batches(source, batch_size=batch_size)):
    if limit is not None and count >= limit:
      break
    if limit is not None:
      batch = {k: v[:limit - count] for k, v in batch.items()}
    n = len(batch['x'])
    # Pad to the full batch so every call hits the same compiled program.
    padded = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)]) if n < batch_size
              else v for k, v in batch.items()}
    out = parallel.to_numpy(fn(state, padded, jax.random.fold_in(jax.random.PRNGKey(seed), i)))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(np.sum(np.asarray(v)[:n], dtype=np.float64))
    count += n
  return {k: v / count for k, v in totals.items()}


def logged_likelihood(workdir: str, step: int) -> dict[str, float]:
  """The test-split likelihood that training logged at ``step`` (``{}`` if none).

  ``train.train_and_evaluate`` scores the final state on the test split (with the
  run's ``eval`` settings and seed) and appends it to ``metrics.jsonl`` as
  ``test/<name>``; the evaluation reuses it rather than computing it twice.
  """
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  found = {}
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if row.get('step') == step and any(k.startswith('test/') for k in row):
        found = {k[len('test/'):]: v for k, v in row.items() if k.startswith('test/')}
  return found
