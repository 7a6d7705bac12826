"""DCGAN-style convolutional nets (Radford et al. 2016), parameterised by the image shape.

The generator projects a latent vector to a small feature map and doubles its
resolution with nearest-neighbour upsampling followed by a 3x3 convolution
(the resize-convolution of Odena et al. 2016) rather than DCGAN's stride-2
transposed convolution: it avoids checkerboard artefacts, and on XLA:CPU a
4x4 stride-2 transposed convolution took ~8x the time of upsample + 3x3 conv
(forward + backward, 4x4x128 -> 8x8x64, batch 64). The feature extractor
halves the resolution with stride-2 convolutions. Neither uses batch statistics, so each example
is processed independently (needed for per-example R1 and for results that do
not depend on how a batch is split over devices).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from trilemma_jax.nets import layers


class ConvGenerator(nn.Module):
  """``z [B, Z] -> images [B, H, W, C]`` in (-1, 1).

  Attributes:
    image_shape: ``(H, W, C)`` of the output; ``H`` and ``W`` must be divisible
      by ``2 ** (len(channels) - 1)``.
    channels: feature-map channels at the base resolution, then after each
      upsampling; ``len(channels) - 1`` upsamplings. E.g. ``(256, 128, 64)``
      for 28x28 starts at 7x7.
    activation: hidden activation name.
    kernel_size: side of the convolution kernels after each upsampling.
  """

  image_shape: tuple[int, int, int]
  channels: Sequence[int] = (128, 64)
  activation: str = 'relu'
  kernel_size: int = 3

  def base_resolution(self) -> tuple[int, int]:
    """Side lengths of the first feature map; raises if the shape does not fit."""
    h, w, _ = self.image_shape
    factor = 2 ** (len(self.channels) - 1)
    if not self.channels or h % factor or w % factor:
      raise ValueError(
          f'ConvGenerator: image shape {tuple(self.image_shape)} cannot be reached from a '
          f'base feature map with {len(self.channels) - 1} doublings (channels='
          f'{tuple(self.channels)}); choose channels whose length L has H and W divisible '
          'by 2**(L-1).')
    return h // factor, w // factor

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    act = layers.activation(self.activation)
    h0, w0 = self.base_resolution()
    x = act(nn.Dense(h0 * w0 * self.channels[0])(z))
    x = x.reshape(z.shape[0], h0, w0, self.channels[0])
    k = (self.kernel_size, self.kernel_size)
    for c in self.channels[1:]:
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = act(nn.Conv(c, k, padding='SAME')(x))
    x = nn.Conv(self.image_shape[-1], (3, 3), padding='SAME')(x)
    return nn.tanh(x)


class ConvFeatures(nn.Module):
  """``images [B, H, W, C] -> features [B, F]`` (a discriminator trunk).

  Attributes:
    channels: output channels of the stride-2 convolutions, one per halving.
    activation: hidden activation name (DCGAN: leaky ReLU).
    kernel_size: side of the convolution kernels.
    spectral_norm: spectrally normalise every kernel.
  """

  channels: Sequence[int] = (64, 128)
  activation: str = 'leaky_relu'
  kernel_size: int = 4
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f'ConvFeatures expects NHWC images [B, H, W, C], got shape {x.shape}.')
    act = layers.activation(self.activation)
    k = (self.kernel_size, self.kernel_size)
    for c in self.channels:
      conv = nn.Conv(c, k, strides=(2, 2), padding='SAME')
      x = act(layers.apply_layer(conv, x, spectral_norm=self.spectral_norm,
                                 update_stats=update_stats))
    return x.reshape(x.shape[0], -1)
