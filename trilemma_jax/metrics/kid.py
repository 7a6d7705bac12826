"""Kernel distance (KID, Bińkowski et al. 2018) between two sets of features.

Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged
over random subsets:

  MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i, y_j)
           − 2/m² Σ_{i,j} k(x_i, y_j)

The kernel matrices are built on the device in float32 (matmuls at HIGHEST
precision, so TPU/GPU do not drop to bf16/TF32) and reduced only to row sums
there; the final sums and the three-way difference, where the cancellation is,
run in float64 on the host.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike


def _polynomial_kernel(a: jax.Array, b: jax.Array) -> jax.Array:
  d = a.shape[-1]
  dots = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return (dots / d + 1.0) ** 3


@jax.jit
def _subset_row_sums(real: jax.Array, fake: jax.Array, real_idx: jax.Array,
                     fake_idx: jax.Array) -> jax.Array:
  """Row sums of k_xx (off-diagonal), k_yy (off-diagonal) and k_xy, ``[S, 3, m]``."""
  m = real_idx.shape[1]
  off_diagonal = ~jnp.eye(m, dtype=bool)

  def one_subset(indices):
    ri, fi = indices
    x = real[ri]
    y = fake[fi]
    k_xx = jnp.where(off_diagonal, _polynomial_kernel(x, x), 0.0)
    k_yy = jnp.where(off_diagonal, _polynomial_kernel(y, y), 0.0)
    k_xy = _polynomial_kernel(x, y)
    return jnp.stack([k_xx.sum(1), k_yy.sum(1), k_xy.sum(1)])

  # lax.map keeps one subset's three [m, m] kernels alive at a time.
  return jax.lax.map(one_subset, (real_idx, fake_idx))


@functools.partial(jax.jit, static_argnames=('num_subsets', 'subset_size', 'n_real', 'n_fake'))
def _subset_indices(key: jax.Array, *, num_subsets: int, subset_size: int, n_real: int,
                    n_fake: int) -> tuple[jax.Array, jax.Array]:
  """Independent draws without replacement within each subset, ``[S, m]`` twice."""
  keys = jax.random.split(key, (num_subsets, 2))

  def draw(k, n):
    return jax.random.choice(k, n, (subset_size,), replace=False)

  real_idx = jax.vmap(lambda k: draw(k, n_real))(keys[:, 0])
  fake_idx = jax.vmap(lambda k: draw(k, n_fake))(keys[:, 1])
  return real_idx, fake_idx


def kernel_distance(real_features: ArrayLike, fake_features: ArrayLike, *,
                    num_subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> dict[str, float]:
  """Kernel distance: mean and std of the unbiased MMD² over random subsets.

  Each subset draws ``m = min(subset_size, N, M)`` points from each set without
  replacement (subsets may overlap each other). Clamping ``m`` to the set sizes
  keeps the estimate unbiased; only its variance grows.

  Args:
    real_features: ``[N, d]``.
    fake_features: ``[M, d]``.
    num_subsets: number of subsets S (100 in the literature).
    subset_size: points per subset from each set (1,000 in the literature).
    seed: seed of the subset draws; the same seed gives the same result.

  Returns:
    ``{'kid_mean': float, 'kid_std': float}``: mean and (population, ddof=0)
    standard deviation of the S estimates, in the squared units of the kernel.
  """
  real = jnp.asarray(real_features, jnp.float32)
  fake = jnp.asarray(fake_features, jnp.float32)
  if real.ndim != 2 or fake.ndim != 2:
    raise ValueError(
        f'Features must be 2-D [num_samples, feature_dim], got {real.shape} (real) and '
        f'{fake.shape} (fake).')
  if real.shape[1] != fake.shape[1]:
    raise ValueError(
        f'Feature dimensions differ: real has {real.shape[1]}, fake has {fake.shape[1]}; both '
        'sets must come from the same feature network layer.')
  if num_subsets < 1:
    raise ValueError(f'num_subsets must be >= 1, got {num_subsets}.')
  m = min(subset_size, real.shape[0], fake.shape[0])
  if m < 2:
    raise ValueError(
        f'KID needs subsets of at least 2 points per set; got subset_size={subset_size}, '
        f'{real.shape[0]} real and {fake.shape[0]} fake samples.')
  if not bool(jnp.all(jnp.isfinite(real)) & jnp.all(jnp.isfinite(fake))):
    raise ValueError('Features contain NaN or inf; check the feature network and its inputs.')

  real_idx, fake_idx = _subset_indices(
      jax.random.key(seed), num_subsets=num_subsets, subset_size=m,
      n_real=real.shape[0], n_fake=fake.shape[0])
  row_sums = np.asarray(_subset_row_sums(real, fake, real_idx, fake_idx), np.float64)
  totals = row_sums.sum(axis=2)  # [S, 3]
  mmd2 = (totals[:, 0] + totals[:, 1]) / (m * (m - 1)) - 2.0 * totals[:, 2] / (m * m)
  return {'kid_mean': float(mmd2.mean()), 'kid_std': float(mmd2.std())}
