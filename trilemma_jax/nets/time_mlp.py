"""A time-conditional MLP: the denoiser for 2-D (or any flat) data."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from trilemma_jax.nets.embeddings import TimeEmbedding


class TimeMLP(nn.Module):
  """``f(x_t, t)`` for flat inputs: SiLU layers, each told the time step.

  Every hidden layer adds a learned projection of the time embedding to its
  pre-activation, so that the network can behave differently at every noise
  level rather than only through its first layer.

  Attributes:
    hidden: widths of the hidden layers, e.g. ``(256, 256, 256, 256)``.
    time_dim: width of the sinusoidal time features and of the time MLP.
    out_dim: output width; None means the input width (an ε, x0 or v estimate).
  """

  hidden: Sequence[int] = (256, 256, 256, 256)
  time_dim: int = 128
  out_dim: int | None = None

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the network.

    Args:
      x: ``[B, D]`` noisy inputs.
      t: ``[B]`` time indices.
      train: unused (no dropout); kept so every denoiser has the same call.

    Returns:
      ``[B, out_dim or D]``.
    """
    del train
    if x.ndim != 2:
      raise ValueError(f'TimeMLP expects flat inputs [B, D], got shape {x.shape}.')
    emb = TimeEmbedding(self.time_dim, self.time_dim, name='time')(t)
    h = x
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f'dense_{i}')(h) + nn.Dense(width, name=f'time_{i}')(emb)
      h = nn.silu(h)
    out_dim = x.shape[-1] if self.out_dim is None else self.out_dim
    return nn.Dense(out_dim, name='out')(h)
