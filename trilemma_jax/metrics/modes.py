"""Mode-coverage metrics: Gaussian-mixture toys (ring, grid) and stacked digits.

Mixtures (PacGAN / VEEGAN protocol, 2,500 samples): assign each sample to its
nearest mean; it is high quality (HQ) if within 3 standard deviations of that
mean; a mode is captured if it holds at least one HQ sample; reverse KL is
Σ p̂ log(p̂ K) over the histogram p̂ of HQ samples, which equals log K − H(p̂).

Stacked digits: a per-channel classifier turns each sample into a label
100a + 10b + c; modes are the labels seen at least once and the KL is
KL(p̂ || uniform) = Σ p̂ log(p̂ K). :func:`label_kl_parts` splits that KL into
each channel's own digit imbalance and the dependence between the channels.

These are counts over a few thousand points, so they run in float64 numpy on the
host and return Python numbers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from trilemma_jax import validation


def _kl_to_uniform(counts: np.ndarray) -> float:
  """Σ p log(p K) over the non-empty bins of a histogram with K bins (0 log 0 = 0)."""
  num_bins = counts.shape[0]
  total = counts.sum()
  p = counts[counts > 0] / total
  return float(np.sum(p * np.log(p * num_bins)))


def mode_metrics(samples: ArrayLike, means: ArrayLike, std: ArrayLike) -> dict[str, float | int]:
  """Modes captured, fraction of high-quality samples and reverse KL.

  Args:
    samples: ``[N, D]`` generated points (D = 2 for ring/grid).
    means: ``[K, D]`` component means.
    std: the components' standard deviation, a scalar or one per component ``[K]``;
      a sample is high quality if its Euclidean distance to the nearest mean is
      ``<= 3 * std`` of that component.

  Returns:
    ``modes``: components with ≥ 1 HQ sample (int); ``max_modes``: K (int);
    ``hq_fraction``: HQ / N; ``reverse_kl``: Σ p̂ log(p̂ K) over the HQ histogram,
    ``nan`` when there is no HQ sample (p̂ is undefined; ``modes == 0`` and
    ``hq_fraction == 0`` already report that failure, and a nan cannot be
    mistaken for a score).
  """
  x = np.asarray(samples, np.float64)
  mu = np.asarray(means, np.float64)
  if x.ndim != 2 or mu.ndim != 2 or x.shape[1] != mu.shape[1]:
    raise ValueError(
        f'samples must be [N, D] and means [K, D] with the same D, got {x.shape} and {mu.shape}.')
  if x.shape[0] == 0 or mu.shape[0] == 0:
    raise ValueError(f'Need at least one sample and one mean, got {x.shape[0]} and {mu.shape[0]}.')
  if not np.all(np.isfinite(mu)):
    raise ValueError('means contain NaN or inf.')
  num_modes = mu.shape[0]
  sigma = np.asarray(std, np.float64)
  if sigma.ndim not in (0, 1) or (sigma.ndim == 1 and sigma.shape[0] != num_modes):
    raise ValueError(f'std must be a scalar or [K] = [{num_modes}], got shape {sigma.shape}.')
  if not np.all(np.isfinite(sigma) & (sigma > 0)):
    raise ValueError(f'std must be positive and finite, got {std!r}.')
  sigma = np.broadcast_to(sigma, (num_modes,))

  # Non-finite samples (a diverged generator) are simply never high quality.
  dist = np.sqrt(np.sum(np.square(x[:, None, :] - mu[None, :, :]), axis=-1))  # [N, K]
  nearest = np.argmin(np.where(np.isfinite(dist), dist, np.inf), axis=1)
  nearest_dist = dist[np.arange(x.shape[0]), nearest]
  high_quality = nearest_dist <= 3.0 * sigma[nearest]  # False for nan distances

  counts = np.bincount(nearest[high_quality], minlength=num_modes)
  num_hq = int(counts.sum())
  return {
      'modes': int(np.count_nonzero(counts)),
      'max_modes': num_modes,
      'hq_fraction': num_hq / x.shape[0],
      'reverse_kl': _kl_to_uniform(counts) if num_hq else float('nan'),
  }


def label_mode_metrics(labels: ArrayLike, num_classes: int = 1000, *,
                       digit_base: int = 10) -> dict[str, float | int]:
  """Modes seen and KL(p̂ || uniform) of predicted stacked-digit labels.

  Args:
    labels: either ``[N]`` integer labels in ``[0, num_classes)`` (e.g.
      100a + 10b + c), or ``[N, C]`` per-channel predictions, combined as
      Σ_c label_c · base^(C−1−c) (channel 0 is the most significant digit).
    num_classes: number of possible labels K (1000 for three stacked digits).
    digit_base: classes per channel, used only for ``[N, C]`` input; must satisfy
      ``digit_base ** C == num_classes``.

  Returns:
    ``modes``: labels seen at least once (int); ``max_modes``: K (int);
    ``kl_uniform``: Σ p̂ log(p̂ K) in nats (0 for a perfectly uniform histogram,
    log K for a single mode).
  """
  y = np.asarray(labels)
  validation.positive_int('num_classes', num_classes)
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'labels must be integers (predicted classes), got dtype {y.dtype}.')
  if y.ndim == 2:
    channels = y.shape[1]
    if digit_base ** channels != num_classes:
      raise ValueError(
          f'Per-channel labels [N, {channels}] with digit_base={digit_base} give '
          f'{digit_base ** channels} classes, but num_classes={num_classes}.')
    if y.size and (y.min() < 0 or y.max() >= digit_base):
      raise ValueError(
          f'Per-channel labels must lie in [0, {digit_base}), got range [{y.min()}, {y.max()}].')
    y = y.astype(np.int64) @ (digit_base ** np.arange(channels - 1, -1, -1, dtype=np.int64))
  elif y.ndim != 1:
    raise ValueError(f'labels must be [N] or [N, C], got shape {y.shape}.')
  if y.shape[0] == 0:
    raise ValueError('labels is empty; need at least one sample.')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'labels must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}].')

  counts = np.bincount(y, minlength=num_classes)
  return {
      'modes': int(np.count_nonzero(counts)),
      'max_modes': int(num_classes),
      'kl_uniform': _kl_to_uniform(counts),
  }


def label_kl_parts(labels: ArrayLike, *, digit_base: int = 10) -> dict:
  """KL(p̂ || uniform) of ``[N, C]`` per-channel labels, split into its parts.

  For the empirical histograms the identity

    KL(p̂ || U_{base^C}) = Σ_c KL(p̂_c || U_base) + Σ_c H(p̂_c) − H(p̂)

  holds exactly: the first sum is each channel's own imbalance of digit
  classes, the last term (the total correlation of the channels' labels, ≥ 0
  up to rounding) is how far the channels are from independent. A sampler
  whose channels each favour a class shows up in the first; one that ties the
  channels together (the same digit thrice) in the second.

  Returns:
    ``modes``, ``max_modes`` and ``kl_uniform`` (as :func:`label_mode_metrics`
    with ``num_classes = base^C``), ``channel_kl`` (C floats), ``dependence`` (the total
    correlation), and ``channel_shares`` (``[C, base]`` float64: each class's
    share of a channel's labels).
  """
  y = np.asarray(labels)
  if y.ndim != 2 or y.shape[1] < 1:
    raise ValueError('labels must be per-channel predictions [N, C] with C >= 1, got shape '
                     f'{y.shape}.')
  channels = y.shape[1]
  joint = label_mode_metrics(y, digit_base ** channels, digit_base=digit_base)
  counts = [np.bincount(y[:, c], minlength=digit_base) for c in range(channels)]
  channel_kl = [_kl_to_uniform(n) for n in counts]
  return {
      **joint,
      'channel_kl': channel_kl,
      'dependence': joint['kl_uniform'] - float(np.sum(channel_kl)),
      'channel_shares': np.stack([n / n.sum() for n in counts]),
  }
