"""The speed corner: sampler throughput (compile time apart) and the training's pace.

A sampler's speed is measured on the calls that draw the scored samples
(:func:`trilemma_jax.sampling.draw_timed`): at ``SPEED_BATCH`` samples per call,
the median of the calls after a compile call and a warm-up call.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

SPEED_BATCH = 100  # samples per timed call (DDGAN's published figure is per batch of 100)


def device_name() -> str:
  """``'<platform>:<device kind>'`` of the device evaluations run on."""
  device = jax.devices()[0]
  return f'{device.platform}:{device.device_kind}'


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
