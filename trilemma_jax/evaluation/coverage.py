"""The coverage corner: modes captured and the KL of the mode histogram, per dataset protocol."""

from __future__ import annotations

from typing import Any

import numpy as np

from trilemma_jax import metrics
from trilemma_jax.data.info import DatasetInfo


def mode_figures(info: DatasetInfo, samples: np.ndarray,
                 feature_net: metrics.FeatureNet | None = None) -> dict[str, Any]:
  """``modes``, ``max_modes``, ``reverse_kl`` (and ``hq_fraction`` for mixtures), or ``{}``.

  By ``info.protocol.modes``: ``'mixture'`` assigns the first ``mode_samples``
  samples to the nearest mean (:func:`trilemma_jax.metrics.mode_metrics`);
  ``'classifier'`` labels them with ``feature_net`` and compares the label
  histogram with the uniform one over ``num_classes`` (with per-channel labels
  also ``kl_channels``, the sum of the channels' own KLs to uniform, and
  ``kl_dependence``, their total correlation: the two add up to ``reverse_kl``;
  :func:`trilemma_jax.metrics.label_kl_parts`); ``None`` has no modes.
  Empty as well when a sample is not finite or the classifier is missing.
  """
  protocol = info.protocol
  samples = samples[:protocol.mode_samples]
  if protocol.modes is None or not np.all(np.isfinite(samples)):
    return {}
  if protocol.modes == 'mixture':
    return metrics.mode_metrics(samples, info.means, info.std)
  if protocol.modes == 'classifier':
    if feature_net is None:
      return {}
    labels = np.asarray(feature_net.predict(np.clip(samples, -1.0, 1.0)))
    if labels.ndim == 1:
      found = metrics.label_mode_metrics(labels, num_classes=info.num_classes)
      return {'modes': found['modes'], 'max_modes': found['max_modes'],
              'reverse_kl': found['kl_uniform']}
    # Per-channel labels (stacked digits): the KL's two parts as well, which say
    # whether the channels each favour some digits or are drawn together.
    found = metrics.label_kl_parts(labels)
    if found['max_modes'] != info.num_classes:
      raise ValueError(f'{labels.shape[1]} channels of digit labels give {found["max_modes"]} '
                       f'modes; {info.name!r} has {info.num_classes}.')
    return {'modes': found['modes'], 'max_modes': found['max_modes'],
            'reverse_kl': found['kl_uniform'], 'kl_channels': float(np.sum(found['channel_kl'])),
            'kl_dependence': found['dependence']}
  raise ValueError(f'Unknown mode protocol {protocol.modes!r} of {info.name!r}; expected '
                   "'mixture', 'classifier' or None.")
