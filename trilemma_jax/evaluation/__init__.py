"""Evaluates a trained run on the three corners of the trilemma.

``evaluate_run(workdir)`` restores the latest checkpoint of a run made by
:func:`trilemma_jax.train.train_and_evaluate` and returns one row per sampler of
the family (EMA weights where the family keeps them), composed from

* :mod:`.quality`: FD, KID and precision/recall/density/coverage against the
  dataset's reference split (images in a gated classifier's features, points
  on their coordinates);
* :mod:`.coverage`: modes captured and the KL of the mode histogram, by the
  dataset's protocol (2-D mixtures: nearest mean, with %HQ; stacked digits:
  classifier labels over 1,000 modes);
* :mod:`.speed`: NFE, samples/s at batch 100 (timed on the calls that draw the
  scored samples, after a compile call and a warm-up call; compile time apart),
  train steps/s and train seconds from ``metrics.jsonl``, the device;
* :mod:`.likelihood`: bits/dim on the test split where the family has a bound.

What each dataset is compared with and on how many samples is its
:class:`~trilemma_jax.data.EvalProtocol` (``DatasetInfo.protocol``).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from trilemma_jax import checkpoints, families, metrics, parallel, sampling
from trilemma_jax import data as data_lib
from trilemma_jax.evaluation import coverage, likelihood, quality, speed
from trilemma_jax.train_state import Family, TrainState

DEFAULT_NUM_SAMPLES = 2000


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (``workdir/config.json``)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: {workdir} is not a trilemma_jax run.')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


class Run(NamedTuple):
  """A trained run read back: its config, dataset, family and final (or given) state."""
  config: ml_collections.ConfigDict
  info: data_lib.DatasetInfo
  family: Family
  state: TrainState


def restore_run(workdir: str, step: int | None = None) -> Run:
  """The run in ``workdir`` restored on one device (its latest checkpoint, or ``step``)."""
  config = load_config(workdir)
  info = data_lib.load_info(config.data.name, data_dir=config.data.data_dir or None)
  family = families.build(config, info)
  state = checkpoints.restore_state(workdir, family, info, parallel.make_mesh(jax.devices()[:1]),
                                    step=step)
  return Run(config, info, family, state)


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


def evaluate_run(workdir: str, *, num_samples: int | None = None, speed_repeats: int = 5,
                 feature_cache_dir: str | None = None, likelihood_examples: int | None = None,
                 seed: int = 0,
                 feature_spec: metrics.FeatureNetSpec | None = None) -> list[dict[str, Any]]:
  """One row per sampler of the run's family (see the module docstring).

  Args:
    workdir: a trained run.
    num_samples: generated samples scored for FD/KID/PRDC where the dataset's
      protocol leaves the count open (images; default 2,000). The 2-D mixtures
      always use 2,500, stacked digits count modes on 26,000.
    speed_repeats: timed calls at batch 100 at least (more when the scored
      samples need more calls).
    feature_cache_dir: where the feature networks are cached (see
      :func:`trilemma_jax.metrics.get_feature_net`).
    likelihood_examples: test examples of the likelihood. Default: the value
      training logged for the final step (see
      :func:`~trilemma_jax.evaluation.likelihood.logged_likelihood`), else
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
  config, info, family, state = restore_run(workdir)
  data_dir = config.data.data_dir or None
  step = int(state.step)

  n_quality = info.protocol.quality_samples or num_samples or DEFAULT_NUM_SAMPLES
  n_draw = max(n_quality, info.protocol.mode_samples)
  scorer = quality.quality_scorer(info, n_quality, data_dir=data_dir,
                                  feature_cache_dir=feature_cache_dir, feature_spec=feature_spec,
                                  seed=seed)
  nll = _likelihood(workdir, config, family, state, step, likelihood_examples, seed)
  train_speed = speed.training_speed(workdir)

  rows = []
  for sampler, (_, nfe) in family.samplers.items():
    fn = sampling.sampler_fn(family, sampler)
    samples, timing = sampling.draw_timed(fn, state, n_draw, batch=speed.SPEED_BATCH, seed=seed,
                                          min_timed=speed_repeats,
                                          vmap_untimed=sampling.vmap_pays(info.kind, nfe))
    row: dict[str, Any] = {
        'family': config.family, 'sampler': sampler, 'dataset': info.name, 'nfe': nfe,
        'seed': int(config.seed), 'train_steps': step, **quality.EMPTY,
        'modes': None, 'max_modes': None, 'hq_fraction': None, 'reverse_kl': None,
        'nll_bits_per_dim': nll.get('nll_bits_per_dim'), **train_speed,
    }
    if np.all(np.isfinite(samples[:n_quality])):
      row.update(scorer(samples[:n_quality]))
    else:
      row['diverged'] = True
    row.update(coverage.mode_figures(info, samples, scorer.feature_net))
    row.update(samples_per_second=timing['samples_per_second'],
               compile_seconds=timing['compile_seconds'], device=speed.device_name())
    rows.append(row)
  return rows


def _likelihood(workdir, config, family, state, step, examples, seed) -> dict[str, float]:
  """The logged test-split likelihood of the final step, or a fresh evaluation."""
  if family.evaluate is None:
    return {}
  found = likelihood.logged_likelihood(workdir, step) if examples is None else {}
  if found:
    return found
  test = data_lib.get_source(config.data.name, 'test', data_dir=config.data.data_dir or None)
  limit = examples
  if limit is None and config.get('eval') is not None:
    limit = config.eval.num_examples or None
  batch_size = config.eval.batch_size if config.get('eval') is not None else 100
  return likelihood.evaluate_likelihood(family, state, test, batch_size=batch_size, seed=seed,
                                        limit=limit)


def write_eval(workdir: str, rows: list[dict[str, Any]],
               settings: dict[str, Any] | None = None,
               timing: dict[str, float] | None = None) -> str:
  """Writes ``workdir/eval.json`` atomically and returns its path.

  ``settings`` records how the rows were made (the harness compares them
  before reusing the file); ``timing`` the wall seconds the run's phases took.
  """
  path = os.path.join(workdir, 'eval.json')
  with open(path + '.tmp', 'w') as f:
    json.dump({'workdir': os.path.abspath(workdir), 'settings': settings or {},
               'timing': timing or {}, 'rows': rows}, f, indent=2)
  os.replace(path + '.tmp', path)
  return path
