"""Fréchet distance between two sets of features (the FID formula in any feature space).

FD = ||μ1 − μ2||² + Tr Σ1 + Tr Σ2 − 2 Tr sqrt(Σ1^½ Σ2 Σ1^½)

The trace term uses the symmetric form: Σ1^½ Σ2 Σ1^½ is symmetric positive
semi-definite, so ``eigh`` applies and its eigenvalues can be clipped at 0, where a
general ``sqrtm`` of the non-symmetric Σ1 Σ2 returns complex noise for
rank-deficient covariances (fewer samples than dimensions). Everything runs in
float64 on the host: the matrices are only ``[d, d]``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Rows per chunk when accumulating statistics, so a [50_000, 2048] float32 input
# never needs a full float64 copy.
_CHUNK = 4096


def _as_features(features, name: str) -> np.ndarray:
  x = np.asarray(features)
  if x.ndim != 2:
    raise ValueError(
        f'{name} must be a 2-D array [num_samples, feature_dim], got shape {x.shape}; '
        'flatten per-example features before calling.')
  if x.shape[0] < 2:
    raise ValueError(
        f'{name} needs at least 2 samples for a covariance, got {x.shape[0]}.')
  if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f'{name} must be numeric, got dtype {x.dtype}.')
  return x


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance (ddof=1) of ``features`` in float64.

  Two passes (mean, then centred cross-products) in row chunks: centring first
  avoids the cancellation of E[xxᵀ] − μμᵀ.

  Args:
    features: ``[N, d]``, N ≥ 2.

  Returns:
    ``(mu [d], sigma [d, d])``, float64 numpy arrays.
  """
  x = _as_features(features, 'features')
  n, d = x.shape
  mu = np.zeros(d, np.float64)
  for start in range(0, n, _CHUNK):
    mu += x[start:start + _CHUNK].astype(np.float64).sum(axis=0)
  mu /= n
  sigma = np.zeros((d, d), np.float64)
  for start in range(0, n, _CHUNK):
    centred = x[start:start + _CHUNK].astype(np.float64) - mu
    sigma += centred.T @ centred
  sigma /= n - 1
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
    raise ValueError('features contain NaN or inf; check the feature network and its inputs.')
  return mu, sigma


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """Tr sqrt(Σ1^½ Σ2 Σ1^½) = Σ sqrt(λ_i) over the clipped eigenvalues."""
  w1, v1 = np.linalg.eigh(sigma1)
  sqrt1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
  middle = sqrt1 @ sigma2 @ sqrt1
  # Symmetrise: round-off leaves the product asymmetric at the 1e-16 level.
  middle = 0.5 * (middle + middle.T)
  eigenvalues = np.linalg.eigvalsh(middle)
  return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance_from_statistics(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

  Args:
    mu1, mu2: means ``[d]``.
    sigma1, sigma2: symmetric positive semi-definite covariances ``[d, d]``.

  Returns:
    The distance (squared units of the features), a Python float ≥ 0 up to
    round-off.
  """
  mu1 = np.asarray(mu1, np.float64)
  mu2 = np.asarray(mu2, np.float64)
  sigma1 = np.asarray(sigma1, np.float64)
  sigma2 = np.asarray(sigma2, np.float64)
  if mu1.ndim != 1 or mu1.shape != mu2.shape:
    raise ValueError(
        f'mu1 and mu2 must be vectors of the same length [d], got {mu1.shape} and {mu2.shape}.')
  d = mu1.shape[0]
  for name, sigma in (('sigma1', sigma1), ('sigma2', sigma2)):
    if sigma.shape != (d, d):
      raise ValueError(f'{name} must be [d, d] = [{d}, {d}] to match the means, got {sigma.shape}.')
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(sigma).max())):
      raise ValueError(f'{name} is not symmetric; pass a covariance matrix.')
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
               - 2.0 * _trace_sqrt_product(sigma1, sigma2))


def frechet_distance(features1: ArrayLike, features2: ArrayLike) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets.

  Args:
    features1: ``[N1, d]``, e.g. features of real data.
    features2: ``[N2, d]``, e.g. features of generated samples.

  Returns:
    The distance as a Python float.
  """
  x1 = _as_features(features1, 'features1')
  x2 = _as_features(features2, 'features2')
  if x1.shape[1] != x2.shape[1]:
    raise ValueError(
        f'Feature dimensions differ: features1 has {x1.shape[1]}, features2 has {x2.shape[1]}; '
        'both sets must come from the same feature network layer.')
  return frechet_distance_from_statistics(*feature_statistics(x1), *feature_statistics(x2))
