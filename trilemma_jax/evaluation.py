"""Evaluates a trained run on the three corners of the trilemma.

``evaluate_run(workdir)`` restores the latest checkpoint of a run made by
:func:`trilemma_jax.train.train_and_evaluate` and returns one row per sampler of
the family (EMA weights where the family keeps them):

* quality and coverage: for images, Fréchet distance, KID and
  precision/recall/density/coverage in a gated classifier's features, against
  the train split; for 2-D points the same figures on the raw coordinates
  against the test split, plus modes, %HQ and reverse KL on 2,500 samples;
  for stacked digits, modes out of 1000 and the KL to uniform;
* speed: NFE, samples/s at batch 100 after a warm-up call (compile time apart),
  train steps/s and train seconds from ``metrics.jsonl``, the device;
* likelihood where the family has one (bits/dim on the test split).
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from trilemma_jax import data as data_lib
from trilemma_jax import metrics
from trilemma_jax import parallel
from trilemma_jax import train
from trilemma_jax.families import build_family

MODE_SAMPLES = 2500  # REFERENCES.md: mode metrics of the 2-D mixtures on 2,500 samples
STACKED_MODE_SAMPLES = 26_000  # and of stacked digits on 26,000


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (``workdir/config.json``)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: {workdir} is not a trilemma_jax run.')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


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


def draw(sample_fn, state, n: int, *, batch: int, seed: int) -> np.ndarray:
  """``n`` samples in batches of ``batch`` (one compiled program), as numpy."""
  key = jax.random.PRNGKey(seed)
  chunks = []
  for i in range(math.ceil(n / batch)):
    chunks.append(np.asarray(sample_fn(state, jax.random.fold_in(key, i))))
  return np.concatenate(chunks)[:n]


def feature_spec_for_run(workdir: str, min_accuracy: float) -> metrics.FeatureNetSpec:
  """The default classifier for the run's image dataset, gated at ``min_accuracy``.

  For datasets without a built-in feature network; the run's dataset must be
  labelled images.
  """
  config = load_config(workdir)
  info = data_lib.load_info(config.data.name, data_dir=config.data.data_dir or None)
  if metrics.has_builtin_feature_net(info.name):
    raise ValueError(
        f'{info.name!r} has a built-in feature network (gate '
        f'{metrics.MIN_TEST_ACCURACY[info.name]}); --feature_min_accuracy is only for image '
        'datasets without one.')
  if info.kind != 'image' or not info.num_classes:
    raise ValueError(
        f'A feature network needs labelled images; {info.name!r} is of kind {info.kind!r} '
        f'with num_classes={info.num_classes}.')
  return metrics.FeatureNetSpec(image_shape=tuple(info.shape), num_classes=info.num_classes,
                                min_accuracy=float(min_accuracy))


def evaluate_run(workdir: str, *, num_samples: int | None = None, sample_batch: int = 500,
                 speed_repeats: int = 5, feature_cache_dir: str | None = None,
                 likelihood_examples: int | None = None, seed: int = 0,
                 feature_spec: metrics.FeatureNetSpec | None = None) -> list[dict[str, Any]]:
  """One row per sampler of the run's family (see the module docstring).

  Args:
    workdir: a trained run.
    num_samples: generated samples scored for FD/KID/PRDC (images; default
      2,000) — mode metrics always use 2,500 (2-D) or 26,000 (stacked digits).
    sample_batch: samples per compiled sampling call while scoring.
    speed_repeats: timed calls at batch 100 after the warm-up.
    feature_cache_dir: where the feature networks are cached (see
      :func:`trilemma_jax.metrics.get_feature_net`).
    likelihood_examples: test examples of the likelihood. Default: the value
      training logged for the final step (see :func:`logged_likelihood`), else
      computed on the run's ``eval.num_examples`` (0: the whole split).
    seed: seed of the sampling keys.
    feature_spec: the feature network of an image dataset without a built-in
      one (a labelled ``npz:`` file, registered arrays, another TFDS dataset);
      see :class:`trilemma_jax.metrics.FeatureNetSpec`. Refused for datasets
      with a built-in network (see :func:`trilemma_jax.metrics.get_feature_net`).
      Without it such a run gets no FD/KID/PRDC: those fields stay None and
      its rows (those whose samples are finite) say why in ``quality_skipped``;
      speed and likelihood are still measured.
  """
  config = load_config(workdir)
  data_dir = config.data.data_dir or None
  info = data_lib.load_info(config.data.name, data_dir=data_dir)
  family = build_family(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = train.restore_state(workdir, family, info, mesh)
  step = int(state.step)

  feature_net, quality_skipped = None, None
  if info.kind == 'image':
    if feature_spec is None and not metrics.has_builtin_feature_net(info.name):
      quality_skipped = (
          f'no feature network for {info.name!r}: FD, KID and precision/recall/density/'
          'coverage need one. For labelled images pass feature_spec (evaluate.py: '
          '--feature_min_accuracy).')
      logging.warning('%s: %s', workdir, quality_skipped)
    else:
      feature_net = metrics.get_feature_net(info.name, cache_dir=feature_cache_dir,
                                            data_dir=data_dir, spec=feature_spec)
  n_quality = MODE_SAMPLES if info.kind == 'points' else (num_samples or 2000)
  if info.name == 'stacked_digits':
    n_draw = max(n_quality, STACKED_MODE_SAMPLES)
  else:
    n_draw = n_quality

  if info.kind == 'points':
    reference, _ = data_lib.load_arrays(info.name, 'test', data_dir=data_dir, limit=n_quality)
  else:
    reference, _ = data_lib.load_arrays(info.name, 'train', data_dir=data_dir, limit=n_quality)

  likelihood = {}
  if family.evaluate is not None and likelihood_examples is None:
    likelihood = logged_likelihood(workdir, step)
  if family.evaluate is not None and not likelihood:
    test = data_lib.get_source(config.data.name, 'test', data_dir=data_dir)
    limit = likelihood_examples
    if limit is None and config.get('eval') is not None:
      limit = config.eval.num_examples or None
    batch_size = config.eval.batch_size if config.get('eval') is not None else 100
    likelihood = train.evaluate_likelihood(family, state, test, batch_size=batch_size,
                                           seed=seed, limit=limit)
  speed = training_speed(workdir)

  rows = []
  for sampler, (kwargs, nfe) in family.samplers.items():
    fn = jax.jit(family.sample, static_argnums=(2,), static_argnames=tuple(kwargs))
    batch_fn = lambda s, r, n=sample_batch, kw=kwargs: fn(s, r, n, **kw)
    samples = draw(batch_fn, state, n_draw, batch=sample_batch, seed=seed)
    row: dict[str, Any] = {
        'family': config.family, 'sampler': sampler, 'dataset': info.name, 'nfe': nfe,
        'seed': int(config.seed), 'train_steps': step,
        'fd': None, 'kid': None, 'kid_subset_std': None, 'precision': None, 'recall': None,
        'density': None, 'coverage': None, 'modes': None, 'max_modes': None,
        'hq_fraction': None, 'reverse_kl': None,
        'nll_bits_per_dim': likelihood.get('nll_bits_per_dim'),
        **speed,
    }
    quality_samples = samples[:n_quality]
    if not np.all(np.isfinite(quality_samples)):
      row['diverged'] = True
    elif info.kind == 'image' and feature_net is None:
      row['quality_skipped'] = quality_skipped
    elif info.kind == 'image':
      scores = metrics.image_quality_metrics(
          feature_net, reference, np.clip(quality_samples, -1.0, 1.0), seed=seed,
          kid_subset_size=min(1000, len(reference), len(quality_samples)))
      row.update(fd=scores['fd'], kid=scores['kid'], kid_subset_std=scores['kid_std'],
                 precision=scores['precision'], recall=scores['recall'],
                 density=scores['density'], coverage=scores['coverage'])
      row['feature_net_accuracy'] = feature_net.test_accuracy
    else:
      row['fd'] = metrics.frechet_distance(reference, quality_samples)
      kid = metrics.kernel_distance(reference, quality_samples, seed=seed,
                                    subset_size=min(1000, len(reference)))
      row.update(kid=kid['kid_mean'], kid_subset_std=kid['kid_std'])
      row.update(metrics.prdc(reference, quality_samples))
    if info.means is not None and np.all(np.isfinite(samples)):
      row.update(metrics.mode_metrics(samples[:MODE_SAMPLES], info.means, info.std))
    if info.name == 'stacked_digits' and np.all(np.isfinite(samples)):
      labels = feature_net.predict(np.clip(samples[:STACKED_MODE_SAMPLES], -1.0, 1.0))
      modes = metrics.label_mode_metrics(labels, num_classes=info.num_classes)
      row.update(modes=modes['modes'], max_modes=modes['max_modes'],
                 reverse_kl=modes['kl_uniform'])

    # Long samplers (hundreds of steps) get fewer timed calls: their median is steadier.
    repeats = speed_repeats if nfe <= 100 else min(speed_repeats, 3)
    timing = metrics.time_sampler(lambda s, r, kw=kwargs: fn(s, r, 100, **kw),
                                  state, jax.random.PRNGKey(seed + 1), batch=100,
                                  repeats=repeats)
    row.update(samples_per_second=timing['samples_per_second'],
               compile_seconds=timing['compile_seconds'],
               device=f"{timing['platform']}:{timing['device_kind']}")
    rows.append(row)
  return rows


def write_eval(workdir: str, rows: list[dict[str, Any]]) -> str:
  """Writes ``workdir/eval.json`` atomically and returns its path."""
  path = os.path.join(workdir, 'eval.json')
  with open(path + '.tmp', 'w') as f:
    json.dump({'workdir': os.path.abspath(workdir), 'rows': rows}, f, indent=2)
  os.replace(path + '.tmp', path)
  return path
