"""Time embeddings for the denoisers of the diffusion families.

The sinusoidal embedding follows the Transformer position encoding that Ho et
al. (2020) use for the diffusion step: half sines, half cosines, with
frequencies spaced geometrically from 1 down to ``1 / max_period``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.nets import layers


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal features of a (possibly fractional) time index.

  Args:
    t: ``[B]`` time values (integer steps or floats); cast to float32.
    dim: embedding width; must be even and at least 2.
    max_period: the slowest period of the sinusoids.

  Returns:
    ``[B, dim]`` float32: ``[sin(t f_0), ..., sin(t f_{h-1}), cos(t f_0), ...]``
    with ``f_k = max_period ** (-k / (h - 1))`` and ``h = dim // 2``.
  """
  if dim < 2 or dim % 2:
    raise ValueError(f'The sinusoidal embedding width must be an even number >= 2, got {dim}.')
  t = jnp.asarray(t, jnp.float32)
  if t.ndim != 1:
    raise ValueError(f'The time index must have shape [B], got shape {t.shape}.')
  half = dim // 2
  # Ho et al. divide by (half - 1) so the last frequency is exactly 1/max_period.
  exponent = jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1)
  freqs = jnp.exp(-math.log(max_period) * exponent)
  angles = t[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class TimeEmbedding(nn.Module):
  """Sinusoidal features of ``t`` followed by a two-layer MLP.

  Attributes:
    sinusoid_dim: width of the sinusoidal features.
    dim: output width (Ho et al. use 4x the base channel count).
    activation: the MLP's hidden activation (a name of ``layers.ACTIVATIONS``).
    dtype: computation dtype of the MLP (parameters stay float32).
  """

  sinusoid_dim: int
  dim: int
  activation: str = 'silu'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    """``t`` ``[B]`` -> ``[B, dim]``."""
    # The sinusoids in float32, cast only afterwards: bfloat16 has an 8-bit
    # significand, so near t = 500 its neighbouring values are 2 apart and the
    # fast sinusoids of a bfloat16 t * f would be noise.
    h = sinusoidal_embedding(t, self.sinusoid_dim).astype(self.dtype)
    h = nn.Dense(self.dim, dtype=self.dtype, name='dense_0')(h)
    h = layers.activation(self.activation)(h)
    return nn.Dense(self.dim, dtype=self.dtype, name='dense_1')(h)
