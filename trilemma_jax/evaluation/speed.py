"""The speed corner: sampler throughput (compile time apart) and the training's pace."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import numpy as np

from trilemma_jax import metrics
from trilemma_jax.train_state import TrainState

SPEED_BATCH = 100  # samples per timed call (DDGAN's published figure is per batch of 100)


def sampler_speed(fn: Callable[..., jax.Array], state: TrainState, *, nfe: int, repeats: int,
                  seed: int = 0) -> dict[str, Any]:
  """Samples/s of ``fn(state, rng, SPEED_BATCH)`` after a warm-up call, compile time apart.

  Long samplers (hundreds of network calls) get at most 3 timed calls: their
  median is steadier and each call is long.
  """
  repeats = repeats if nfe <= 100 else min(repeats, 3)
  timing = metrics.time_sampler(lambda s, r: fn(s, r, SPEED_BATCH), state,
                                jax.random.PRNGKey(seed + 1), batch=SPEED_BATCH, repeats=repeats)
  return {'samples_per_second': timing['samples_per_second'],
          'compile_seconds': timing['compile_seconds'],
          'device': f"{timing['platform']}:{timing['device_kind']}"}


def training_speed(workdir: str) -> dict[str, float | None]:
  """Median logged steps/s (first window, which holds the compile, left out) and train seconds."""
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  train_rows = [r for r in rows if 'steps_per_second' in r]
  rates = [r['steps_per_second'] for r in train_rows[1:]] or [
      r['steps_per_second'] for r in train_rows]
  seconds = [r['train_seconds'] for r in train_rows if 'train_seconds' in r]
  return {'train_steps_per_second': float(np.median(rates)) if rates else None,
          'train_seconds': float(max(seconds)) if seconds else None}
