"""Encoders and decoders of the VAE: MLPs for 2-D points, conv nets for images.

Each half computes in its ``dtype`` (``config.model.compute_dtype``) with float32
parameters; the family casts what they return to float32 before the ELBO.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype


class MLPEncoder(nn.Module):
  """``x [B, D] -> (mean, log_var)``, each ``[B, latent_dim]``."""

  hidden: Sequence[int]
  latent_dim: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = nn.swish(nn.Dense(width, dtype=self.dtype)(h))
    out = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h)
    return jnp.split(out, 2, axis=-1)


class MLPDecoder(nn.Module):
  """``z [B, latent] -> [B, *out_shape, outputs_per_dim]`` (logits, or mean and log-variance)."""

  hidden: Sequence[int]
  out_shape: tuple[int, ...]
  outputs_per_dim: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.hidden:
      h = nn.swish(nn.Dense(width, dtype=self.dtype)(h))
    size = 1
    for d in self.out_shape:
      size *= d
    out = nn.Dense(size * self.outputs_per_dim, dtype=self.dtype)(h)
    return out.reshape(z.shape[0], *self.out_shape, self.outputs_per_dim)


def _upsample(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling of NHWC feature maps."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _downsample(x: jax.Array) -> jax.Array:
  """2x2 average pooling of NHWC feature maps."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class ConvEncoder(nn.Module):
  """Images ``[B, H, W, C]`` to ``(mean, log_var)``: per stage two 3x3 convs, then 2x2 pooling.

  Pooling after a stride-1 conv rather than a stride-2 conv, and (in the decoder)
  nearest upsampling before a 3x3 conv rather than a transposed conv: on XLA:CPU
  the gradients of strided and transposed convolutions take a slow path
  (docs/performance.md).
  """

  channels: Sequence[int]
  latent_dim: int
  hidden: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x
    for c in self.channels:
      h = nn.swish(nn.Conv(c, (3, 3), dtype=self.dtype)(h))
      h = _downsample(nn.swish(nn.Conv(c, (3, 3), dtype=self.dtype)(h)))
    h = h.reshape(h.shape[0], -1)
    h = nn.swish(nn.Dense(self.hidden, dtype=self.dtype)(h))
    out = nn.Dense(2 * self.latent_dim, dtype=self.dtype)(h)
    return jnp.split(out, 2, axis=-1)


class ConvDecoder(nn.Module):
  """``z`` to ``[B, H, W, C, outputs_per_dim]``: a dense layer, then per stage 2x upsampling
  and two 3x3 convs (the mirror of :class:`ConvEncoder`).

  ``H`` and ``W`` must be divisible by ``2 ** len(channels)``.
  """

  channels: Sequence[int]  # from the finest resolution to the coarsest, as in the encoder
  out_shape: tuple[int, int, int]
  outputs_per_dim: int
  hidden: int = 256
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    height, width, out_c = self.out_shape
    factor = 2 ** len(self.channels)
    h0, w0 = height // factor, width // factor
    coarse = list(self.channels)[::-1]
    h = nn.swish(nn.Dense(self.hidden, dtype=self.dtype)(z))
    h = nn.swish(nn.Dense(h0 * w0 * coarse[0], dtype=self.dtype)(h)).reshape(
        z.shape[0], h0, w0, coarse[0])
    for c in coarse:
      h = nn.swish(nn.Conv(c, (3, 3), dtype=self.dtype)(_upsample(h)))
      h = nn.swish(nn.Conv(c, (3, 3), dtype=self.dtype)(h))
    out = nn.Conv(out_c * self.outputs_per_dim, (3, 3), dtype=self.dtype)(h)
    return out.reshape(z.shape[0], height, width, out_c, self.outputs_per_dim)


class VAENet(nn.Module):
  """Encoder and decoder under one parameter tree.

  ``__call__`` returns ``(mean, log_var)`` of q(z|x); :meth:`decode` the
  likelihood parameters of p(x|z) with a trailing axis of size
  ``outputs_per_dim`` (1: Bernoulli logits; 2: Gaussian mean and raw log-variance).
  It creates no layer of its own: the two halves carry the computation dtype.
  """

  encoder: nn.Module
  decoder: nn.Module

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)

  def init_all(self, x: jax.Array, z: jax.Array) -> tuple:
    """Touches both halves so ``init`` creates every parameter."""
    return self.encoder(x), self.decoder(z)


def make_vae_net(shape: tuple[int, ...], *, latent_dim: int, outputs_per_dim: int,
                 hidden: Sequence[int] = (256, 256), channels: Sequence[int] = (32, 64),
                 conv_hidden: int = 256, dtype: Dtype = jnp.float32) -> VAENet:
  """MLP halves for ``shape=(D,)`` points, conv halves for ``(H, W, C)`` images, both
  computing in ``dtype``."""
  if len(shape) == 1:
    return VAENet(MLPEncoder(tuple(hidden), latent_dim, dtype=dtype),
                  MLPDecoder(tuple(hidden)[::-1], shape, outputs_per_dim, dtype=dtype))
  if len(shape) == 3:
    factor = 2 ** len(channels)
    if shape[0] % factor or shape[1] % factor:
      raise ValueError(
          f'Image size {shape[:2]} is not divisible by 2**len(channels)={factor}; use '
          'fewer downsampling stages (config.model.image.channels).')
    return VAENet(ConvEncoder(tuple(channels), latent_dim, conv_hidden, dtype=dtype),
                  ConvDecoder(tuple(channels), tuple(shape), outputs_per_dim, conv_hidden,
                              dtype=dtype))
  raise ValueError(f'VAE supports (D,) points or (H, W, C) images, got example shape {shape}.')
