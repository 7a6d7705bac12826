"""k-NN manifold metrics: precision/recall and density/coverage.

Precision / recall (Kynkäänniemi et al. 2019, k = 3): each point of a set gets
the ball reaching its k-th nearest neighbour in that set, self excluded. Precision
is the fraction of generated points inside some real ball, recall the fraction of
real points inside some generated ball. The official implementation counts the
boundary as inside (``<=``); so do we.

Density / coverage (Naeem et al. 2020, k = 5; PyPI ``prdc``) use the real balls
only, with a strict ``<``:
  density  = 1/(kM) Σ_j Σ_i 1[d(y_j, x_i) < r_i]
  coverage = 1/N Σ_i 1[min_j d(y_j, x_i) < r_i]

"k-th neighbour excluding self" is the (k+1)-th smallest distance in the row
that includes the self-distance. The self-distance is set to exactly 0 (the
expanded formula below leaves round-off there), so duplicates behave as the
definition says: a point with a twin has a neighbour at distance 0.

Everything is computed in blocks inside compiled scans, so the memory is
O(block² + (N + M)·d): no ``[N, M]`` matrix is ever formed. Squared distances
come from ||a||² + ||b||² − 2a·b clamped at 0 (matmuls at HIGHEST precision, so
TPU/GPU keep float32), after centring both sets on the real mean to limit the
cancellation in that formula; all comparisons are made on squared distances.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from trilemma_jax import validation

DEFAULT_BLOCK_SIZE = 1024


# ------------------------------------------------------------------ block kernels


def _sq_distances(a: jax.Array, a_sq: jax.Array, b: jax.Array, b_sq: jax.Array) -> jax.Array:
  """Squared Euclidean distances ``[len(a), len(b)]``, clamped at 0."""
  dots = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * dots, 0.0)


@functools.partial(jax.jit, static_argnames=('num_smallest',))
def _smallest_sq_distances(blocks: jax.Array, valid: jax.Array, num_smallest: int) -> jax.Array:
  """The ``num_smallest`` smallest squared distances of each point to its own set.

  Args:
    blocks: ``[nb, B, d]`` padded points.
    valid: ``[nb, B]`` False on padding.
    num_smallest: how many to keep, including the self-distance 0.

  Returns:
    ``[nb, B, num_smallest]`` ascending.
  """
  nb, b, _ = blocks.shape
  sq_norms = jnp.sum(jnp.square(blocks), axis=-1)
  ids = jnp.arange(nb * b).reshape(nb, b)

  def row_block(rows):
    row_pts, row_sq, row_ids = rows

    def merge_column_block(best, cols):
      col_pts, col_sq, col_valid, col_ids = cols
      d2 = _sq_distances(row_pts, row_sq, col_pts, col_sq)
      d2 = jnp.where(row_ids[:, None] == col_ids[None, :], 0.0, d2)
      d2 = jnp.where(col_valid[None, :], d2, jnp.inf)
      # top_k of the negation = the smallest; the running best rides along so one
      # top_k per block both merges and selects.
      neg_smallest, _ = jax.lax.top_k(-jnp.concatenate([best, d2], axis=1), num_smallest)
      return -neg_smallest, None

    init = jnp.full((b, num_smallest), jnp.inf, blocks.dtype)
    best, _ = jax.lax.scan(merge_column_block, init, (blocks, sq_norms, valid, ids))
    return best

  return jax.lax.map(row_block, (blocks, sq_norms, ids))


@jax.jit
def _cross_pass(real_blocks: jax.Array, real_pr_r2: jax.Array, real_dc_r2: jax.Array,
                fake_blocks: jax.Array, fake_valid: jax.Array, fake_pr_r2: jax.Array):
  """One sweep over all (fake block, real block) pairs.

  Padded points carry a squared radius of −1, which no distance (≥ 0) reaches,
  so they own no ball; padded fakes are also kept out of the real points'
  nearest-fake distance.

  Args:
    real_blocks: ``[nr, Br, d]``; real_pr_r2, real_dc_r2: ``[nr, Br]`` squared radii.
    fake_blocks: ``[nf, Bf, d]``; fake_valid, fake_pr_r2: ``[nf, Bf]``.

  Returns:
    fake_in_real: ``[nf, Bf]`` bool, inside some real precision ball (``<=``).
    fake_density_count: ``[nf, Bf]`` int32, number of real density balls holding it (``<``).
    real_min_d2: ``[nr, Br]`` squared distance to the nearest fake.
    real_in_fake: ``[nr, Br]`` bool, inside some fake recall ball (``<=``).
  """
  real_sq = jnp.sum(jnp.square(real_blocks), axis=-1)
  fake_sq = jnp.sum(jnp.square(fake_blocks), axis=-1)
  nr, br = real_sq.shape
  bf = fake_sq.shape[1]

  def fake_block_step(real_acc, fakes):
    f_pts, f_sq, f_valid, f_r2 = fakes

    def real_block_step(fake_acc, reals):
      r_pts, r_sq, r_pr_r2, r_dc_r2, r_min, r_hit = reals
      f_hit, f_count = fake_acc
      d2 = _sq_distances(f_pts, f_sq, r_pts, r_sq)  # [Bf, Br]
      f_hit = f_hit | jnp.any(d2 <= r_pr_r2[None, :], axis=1)
      f_count = f_count + jnp.sum(d2 < r_dc_r2[None, :], axis=1, dtype=jnp.int32)
      r_min = jnp.minimum(r_min, jnp.min(jnp.where(f_valid[:, None], d2, jnp.inf), axis=0))
      r_hit = r_hit | jnp.any(d2 <= f_r2[:, None], axis=0)
      return (f_hit, f_count), (r_min, r_hit)

    r_min_all, r_hit_all = real_acc
    init = (jnp.zeros((bf,), bool), jnp.zeros((bf,), jnp.int32))
    fake_out, real_acc = jax.lax.scan(
        real_block_step, init,
        (real_blocks, real_sq, real_pr_r2, real_dc_r2, r_min_all, r_hit_all))
    return real_acc, fake_out

  real_init = (jnp.full((nr, br), jnp.inf, real_blocks.dtype), jnp.zeros((nr, br), bool))
  (real_min_d2, real_in_fake), (fake_in_real, fake_density_count) = jax.lax.scan(
      fake_block_step, real_init, (fake_blocks, fake_sq, fake_valid, fake_pr_r2))
  return fake_in_real, fake_density_count, real_min_d2, real_in_fake


# ----------------------------------------------------------------- host-side glue


def _check_features(features, name: str) -> jax.Array:
  x = jnp.asarray(features, jnp.float32)
  if x.ndim != 2:
    raise ValueError(
        f'{name} must be 2-D [num_samples, feature_dim], got shape {x.shape}; flatten '
        'per-example features first.')
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError(f'{name} contain NaN or inf; check the feature network and its inputs.')
  return x


def _check_pair(real_features, fake_features) -> tuple[jax.Array, jax.Array]:
  real = _check_features(real_features, 'real_features')
  fake = _check_features(fake_features, 'fake_features')
  if real.shape[1] != fake.shape[1]:
    raise ValueError(
        f'Feature dimensions differ: real has {real.shape[1]}, fake has {fake.shape[1]}; both '
        'sets must come from the same feature network layer.')
  return real, fake


def _check_k(k: int, n: int, name: str, set_name: str) -> None:
  validation.positive_int(name, k)
  if n < k + 1:
    raise ValueError(
        f'{name}={k} needs at least {k + 1} {set_name} samples (the k-th neighbour excludes the '
        f'point itself), got {n}.')


def _check_block_size(block_size: int) -> None:
  validation.positive_int('block_size', block_size)


def _to_blocks(x: jax.Array, block_size: int, fill: float = 0.0) -> jax.Array:
  """Pads the leading axis to a multiple of the block and splits it, ``[nb, B, ...]``."""
  b = min(block_size, x.shape[0])
  pad = -x.shape[0] % b
  x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
  return x.reshape((-1, b) + x.shape[1:])


def _smallest(x: jax.Array, num_smallest: int, block_size: int) -> jax.Array:
  """``[N, num_smallest]`` ascending squared distances within ``x`` (self included)."""
  n = x.shape[0]
  valid = _to_blocks(jnp.ones((n,), bool), block_size, fill=False)
  out = _smallest_sq_distances(_to_blocks(x, block_size), valid, num_smallest)
  return out.reshape(-1, num_smallest)[:n]


def nearest_neighbour_radii(features: ArrayLike, k: int, *,
                            block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
  """Distance of each point to its k-th nearest neighbour in the same set, self excluded.

  Args:
    features: ``[N, d]``, N ≥ k + 1.
    k: neighbour rank (1 = nearest other point).
    block_size: rows/columns per distance block; memory grows as block².

  Returns:
    ``[N]`` float32 radii.
  """
  x = _check_features(features, 'features')
  _check_k(k, x.shape[0], 'k', 'feature')
  _check_block_size(block_size)
  x = x - jnp.mean(x, axis=0)
  return jnp.sqrt(_smallest(x, k + 1, block_size)[:, k])


def _manifold_counts(real: jax.Array, fake: jax.Array, *, k_pr: int | None, k_dc: int | None,
                     block_size: int) -> dict[str, float]:
  """Shared passes behind :func:`prdc` and its two halves; a None k skips that pair."""
  n, m = real.shape[0], fake.shape[0]
  centre = jnp.mean(real, axis=0)
  real = real - centre
  fake = fake - centre

  ks = [k for k in (k_pr, k_dc) if k is not None]
  # One pass over the real set serves both radii: keep max(k)+1 smallest.
  real_smallest = _smallest(real, max(ks) + 1, block_size)
  no_ball = jnp.full((n,), -1.0)
  real_pr_r2 = real_smallest[:, k_pr] if k_pr is not None else no_ball
  real_dc_r2 = real_smallest[:, k_dc] if k_dc is not None else no_ball
  if k_pr is not None:
    fake_pr_r2 = _smallest(fake, k_pr + 1, block_size)[:, k_pr]
  else:
    fake_pr_r2 = jnp.full((m,), -1.0)

  fake_in_real, fake_count, real_min_d2, real_in_fake = _cross_pass(
      _to_blocks(real, block_size),
      _to_blocks(real_pr_r2, block_size, fill=-1.0),
      _to_blocks(real_dc_r2, block_size, fill=-1.0),
      _to_blocks(fake, block_size),
      _to_blocks(jnp.ones((m,), bool), block_size, fill=False),
      _to_blocks(fake_pr_r2, block_size, fill=-1.0))
  fake_in_real = np.asarray(fake_in_real).reshape(-1)[:m]
  fake_count = np.asarray(fake_count).reshape(-1)[:m]
  real_min_d2 = np.asarray(real_min_d2).reshape(-1)[:n]
  real_in_fake = np.asarray(real_in_fake).reshape(-1)[:n]

  out = {}
  if k_pr is not None:
    out['precision'] = float(fake_in_real.mean())
    out['recall'] = float(real_in_fake.mean())
  if k_dc is not None:
    out['density'] = float(fake_count.sum(dtype=np.int64) / (k_dc * m))
    out['coverage'] = float((real_min_d2 < np.asarray(real_dc_r2)).mean())
  return out


def prdc(real_features: ArrayLike, fake_features: ArrayLike, *, k_pr: int = 3,
         k_dc: int = 5, block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
  """Precision, recall (k = ``k_pr``), density and coverage (k = ``k_dc``) in shared passes.

  Three sweeps in all: real×real (both radii from one top-k), fake×fake (recall
  radii) and one real×fake sweep that yields all four numbers.

  Args:
    real_features: ``[N, d]``, N > max(k_pr, k_dc).
    fake_features: ``[M, d]``, M > k_pr.
    k_pr: neighbour rank of the precision/recall balls (3 in Kynkäänniemi et al.).
    k_dc: neighbour rank of the density/coverage balls (5 in Naeem et al.).
    block_size: points per block; peak memory beyond the inputs is a few
      ``[block, block]`` float32 matrices.

  Returns:
    ``{'precision', 'recall', 'density', 'coverage'}`` as Python floats;
    density can exceed 1.
  """
  real, fake = _check_pair(real_features, fake_features)
  _check_k(k_pr, real.shape[0], 'k_pr', 'real')
  _check_k(k_pr, fake.shape[0], 'k_pr', 'fake')
  _check_k(k_dc, real.shape[0], 'k_dc', 'real')
  _check_block_size(block_size)
  return _manifold_counts(real, fake, k_pr=k_pr, k_dc=k_dc, block_size=block_size)


def precision_recall(real_features: ArrayLike, fake_features: ArrayLike, *, k: int = 3,
                     block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
  """Improved precision and recall (Kynkäänniemi et al. 2019).

  Args:
    real_features: ``[N, d]``, N > k.
    fake_features: ``[M, d]``, M > k.
    k: neighbour rank of the balls.
    block_size: points per block.

  Returns:
    ``{'precision', 'recall'}`` as Python floats.
  """
  real, fake = _check_pair(real_features, fake_features)
  _check_k(k, real.shape[0], 'k', 'real')
  _check_k(k, fake.shape[0], 'k', 'fake')
  _check_block_size(block_size)
  return _manifold_counts(real, fake, k_pr=k, k_dc=None, block_size=block_size)


def density_coverage(real_features: ArrayLike, fake_features: ArrayLike, *, k: int = 5,
                     block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
  """Density and coverage (Naeem et al. 2020); only the real set gets balls.

  Args:
    real_features: ``[N, d]``, N > k.
    fake_features: ``[M, d]``, M ≥ 1.
    k: neighbour rank of the real balls.
    block_size: points per block.

  Returns:
    ``{'density', 'coverage'}`` as Python floats.
  """
  real, fake = _check_pair(real_features, fake_features)
  _check_k(k, real.shape[0], 'k', 'real')
  if fake.shape[0] < 1:
    raise ValueError('fake_features is empty; density and coverage need at least one sample.')
  _check_block_size(block_size)
  return _manifold_counts(real, fake, k_pr=None, k_dc=k, block_size=block_size)
