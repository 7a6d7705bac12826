"""The quality corner: FD, KID and precision/recall/density/coverage against real data.

Images are compared in a gated classifier's feature space (the dataset's
feature network); points on their raw coordinates. The reference split and the
number of scored samples come from the dataset's protocol (:class:`EvalProtocol`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from trilemma_jax import data as data_lib
from trilemma_jax import metrics
from trilemma_jax.data.info import DatasetInfo

EMPTY = {'fd': None, 'kid': None, 'kid_subset_std': None, 'precision': None, 'recall': None,
         'density': None, 'coverage': None}


class QualityScorer:
  """Scores samples of one dataset against its reference split.

  Build it with :func:`quality_scorer`. ``feature_net`` is the image dataset's
  gated classifier (None for points); ``skipped`` says why an image dataset
  without one cannot be scored.
  """

  def __init__(self, info: DatasetInfo, reference: np.ndarray | None,
               feature_net: metrics.FeatureNet | None, skipped: str | None, seed: int):
    self.info, self.reference, self.feature_net = info, reference, feature_net
    self.skipped, self.seed = skipped, seed

  def __call__(self, samples: np.ndarray) -> dict[str, Any]:
    """``EMPTY``'s keys filled in (or ``quality_skipped`` with the reason)."""
    if self.skipped:
      return {**EMPTY, 'quality_skipped': self.skipped}
    if self.info.kind == 'image':
      scores = metrics.image_quality_metrics(
          self.feature_net, self.reference, np.clip(samples, -1.0, 1.0), seed=self.seed,
          kid_subset_size=min(1000, len(self.reference), len(samples)))
      return {'fd': scores['fd'], 'kid': scores['kid'], 'kid_subset_std': scores['kid_std'],
              'precision': scores['precision'], 'recall': scores['recall'],
              'density': scores['density'], 'coverage': scores['coverage'],
              'feature_net_accuracy': self.feature_net.test_accuracy}
    kid = metrics.kernel_distance(self.reference, samples, seed=self.seed,
                                  subset_size=min(1000, len(self.reference)))
    return {'fd': metrics.frechet_distance(self.reference, samples), 'kid': kid['kid_mean'],
            'kid_subset_std': kid['kid_std'], **metrics.prdc(self.reference, samples)}


def quality_scorer(info: DatasetInfo, num_samples: int, *, data_dir: str | None = None,
                   feature_cache_dir: str | None = None,
                   feature_spec: metrics.FeatureNetSpec | None = None,
                   seed: int = 0) -> QualityScorer:
  """The scorer of ``info``: its reference split (``num_samples`` examples) and feature net.

  An image dataset without a built-in feature network and without
  ``feature_spec`` gets a scorer that skips (see :func:`trilemma_jax.evaluation.evaluate_run`).
  """
  feature_net, skipped = None, None
  if info.kind == 'image':
    if feature_spec is None and not metrics.has_builtin_feature_net(info.name):
      skipped = (f'no feature network for {info.name!r}: FD, KID and precision/recall/density/'
                 'coverage need one. For labelled images pass feature_spec (evaluate.py: '
                 '--feature_min_accuracy).')
      logging.warning(skipped)
    else:
      feature_net = metrics.get_feature_net(info.name, cache_dir=feature_cache_dir,
                                            data_dir=data_dir, spec=feature_spec)
  reference = None
  if not skipped:
    reference, _ = data_lib.load_arrays(info.name, info.protocol.reference_split,
                                        data_dir=data_dir, limit=num_samples)
  return QualityScorer(info, reference, feature_net, skipped, seed)
