"""GAN networks: generator and discriminator wrappers around any body net, optionally
class-conditional, and DCGAN-style conv bodies for images.

Conditioning (the cGAN of Mirza & Osindero 2014, with the projection
discriminator of Miyato & Koyama 2018):

* the generator concatenates a learned label embedding to the latent vector
  before its body net (works the same for MLP and conv bodies);
* the discriminator computes features φ(x) with its trunk and returns
  ``w·φ(x) + b + e_y·φ(x)``: the label enters through an inner product with a
  learned class embedding ``e_y`` instead of being concatenated to the input.
  Projection keeps the discriminator's input shape independent of the labels
  and is what SN-GAN / BigGAN use; concatenating a one-hot to the image would
  need a different first layer per data kind.

Conv bodies (after DCGAN, Radford et al. 2016, parameterised by the image
shape): the generator projects a latent vector to a small feature map and
doubles its resolution with nearest-neighbour upsampling and a 3x3 convolution
(the resize-convolution of Odena et al. 2016) rather than a stride-2 transposed
convolution, which avoids checkerboard artefacts and was several times slower
on XLA:CPU (docs/performance.md). The feature extractor halves the resolution
with stride-2 convolutions. No net uses batch statistics, so each example is
processed on its own (needed for a per-example R1 and for results that do not
depend on how a batch is split over devices).

Every module computes in its ``dtype`` (``config.model.compute_dtype``) with
float32 parameters; the spectral-norm vectors stay float32 under any dtype, and
the family casts samples and logits to float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.nets import layers


def _check_labels(name: str, num_classes: int | None, labels: jax.Array | None) -> None:
  if num_classes is not None and labels is None:
    raise ValueError(f'{name} is class-conditional ({num_classes} classes): pass labels [B].')
  if num_classes is None and labels is not None:
    raise ValueError(f'{name} is unconditional: pass labels=None.')


class Generator(nn.Module):
  """``G(z[, y])``: latent ``[B, Z]`` (and labels ``[B]``) -> samples ``[B, *out_shape]``.

  Attributes:
    body: net mapping ``[B, Z (+ embed_dim)]`` to ``[B, prod(out_shape)]`` or
      directly to ``[B, *out_shape]`` (e.g. :class:`~trilemma_jax.nets.mlp.MLP`
      or :class:`ConvGenerator`).
    out_shape: per-example output shape, e.g. ``(2,)`` or ``(28, 28, 1)``.
    num_classes: number of classes if conditional, else None.
    embed_dim: width of the label embedding concatenated to ``z``.
    dtype: computation dtype of the label embedding (the body has its own).
  """

  body: nn.Module
  out_shape: tuple[int, ...]
  num_classes: int | None = None
  embed_dim: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    _check_labels('Generator', self.num_classes, labels)
    if self.num_classes is not None:
      embed = nn.Embed(self.num_classes, self.embed_dim, dtype=self.dtype)(labels)
      z = jnp.concatenate([z.astype(self.dtype), embed], axis=-1)
    out = self.body(z)
    if math.prod(out.shape[1:]) != math.prod(self.out_shape):
      raise ValueError(
          f'Generator body returned {out.shape[1:]} per example; expected '
          f'{tuple(self.out_shape)} (or its flattened size).')
    return out.reshape(z.shape[0], *self.out_shape)


class Discriminator(nn.Module):
  """``D(x[, y])``: samples ``[B, *shape]`` (and labels ``[B]``) -> logits ``[B]``.

  Attributes:
    trunk: feature extractor ``[B, *shape] -> [B, F]`` taking an
      ``update_stats`` keyword (:class:`~trilemma_jax.nets.mlp.MLP` with
      ``out_dim=None`` or :class:`ConvFeatures`).
    num_classes: number of classes for the projection head, else None.
    spectral_norm: spectrally normalise the head (the trunk has its own flag).
    dtype: computation dtype of the head (the trunk has its own).
  """

  trunk: nn.Module
  num_classes: int | None = None
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array | None = None, *,
               update_stats: bool = False) -> jax.Array:
    _check_labels('Discriminator', self.num_classes, labels)
    h = self.trunk(x, update_stats=update_stats)
    logits = layers.apply_layer(nn.Dense(1, dtype=self.dtype), h,
                                spectral_norm=self.spectral_norm, update_stats=update_stats)[:, 0]
    if self.num_classes is not None:
      embed = nn.Embed(self.num_classes, h.shape[-1], dtype=self.dtype,
                       embedding_init=nn.initializers.xavier_uniform())
      e = layers.apply_layer(embed, labels, spectral_norm=self.spectral_norm,
                             update_stats=update_stats)
      logits = logits + jnp.sum(e * h, axis=-1)
    return logits


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
    dtype: computation dtype (parameters stay float32).
  """

  image_shape: tuple[int, int, int]
  channels: Sequence[int] = (128, 64)
  activation: str = 'relu'
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

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
    x = act(nn.Dense(h0 * w0 * self.channels[0], dtype=self.dtype)(z))
    x = x.reshape(z.shape[0], h0, w0, self.channels[0])
    k = (self.kernel_size, self.kernel_size)
    for c in self.channels[1:]:
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = act(nn.Conv(c, k, padding='SAME', dtype=self.dtype)(x))
    x = nn.Conv(self.image_shape[-1], (3, 3), padding='SAME', dtype=self.dtype)(x)
    return nn.tanh(x)


class ConvFeatures(nn.Module):
  """``images [B, H, W, C] -> features [B, F]`` (a discriminator trunk).

  Attributes:
    channels: output channels of the stride-2 convolutions, one per halving.
    activation: hidden activation name (DCGAN: leaky ReLU).
    kernel_size: side of the convolution kernels.
    spectral_norm: spectrally normalise every kernel.
    dtype: computation dtype (parameters and spectral-norm vectors stay float32).
  """

  channels: Sequence[int] = (64, 128)
  activation: str = 'leaky_relu'
  kernel_size: int = 4
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f'ConvFeatures expects NHWC images [B, H, W, C], got shape {x.shape}.')
    act = layers.activation(self.activation)
    k = (self.kernel_size, self.kernel_size)
    for c in self.channels:
      conv = nn.Conv(c, k, strides=(2, 2), padding='SAME', dtype=self.dtype)
      x = act(layers.apply_layer(conv, x, spectral_norm=self.spectral_norm,
                                 update_stats=update_stats))
    return x.reshape(x.shape[0], -1)
