"""Multi-layer perceptrons for 2-D data (and any flat input)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.nets import layers


class MLP(nn.Module):
  """``x [B, D_in] -> [B, out_dim]`` (or the last hidden layer if ``out_dim`` is None).

  Attributes:
    widths: hidden layer widths, e.g. ``(400, 400, 400)``.
    out_dim: width of the final linear layer; None returns the activated last
      hidden layer (a feature extractor, e.g. a discriminator trunk).
    activation: name of the hidden activation (see :func:`layers.activation`).
    spectral_norm: spectrally normalise every weight matrix.
    dtype: computation dtype (parameters stay float32).
  """

  widths: Sequence[int]
  out_dim: int | None = None
  activation: str = 'relu'
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    if not self.widths and self.out_dim is None:
      raise ValueError('MLP needs at least one hidden width or an out_dim.')
    act = layers.activation(self.activation)
    x = x.reshape(x.shape[0], -1)
    for width in self.widths:
      x = act(layers.apply_layer(nn.Dense(width, dtype=self.dtype), x,
                                 spectral_norm=self.spectral_norm, update_stats=update_stats))
    if self.out_dim is not None:
      x = layers.apply_layer(nn.Dense(self.out_dim, dtype=self.dtype), x,
                             spectral_norm=self.spectral_norm, update_stats=update_stats)
    return x
