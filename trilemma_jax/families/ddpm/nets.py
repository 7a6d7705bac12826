"""DDPM denoisers: the time-conditional U-Net of Ho et al. (2020) for images (NHWC),
and a time-conditional MLP for 2-D (or any flat) data.

The U-Net, 
following their Appendix B, with widths and depth made configurable):
a 3x3 input convolution; per resolution level ``num_res_blocks`` residual blocks
(GroupNorm, SiLU, 3x3 conv, plus a projection of the time embedding; GroupNorm,
SiLU, dropout, 3x3 conv) with self-attention at the resolutions listed in
``attn_resolutions``; a strided-conv downsample between levels; a middle of
residual block, attention, residual block; the mirror image upwards with skip
connections concatenated; GroupNorm, SiLU and a 3x3 output convolution.
``UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
dropout=0.1)`` is their CIFAR-10 model (35.7M parameters).

GroupNorm normalises each example on its own, so the outputs do not depend on
how a batch is split over devices.

Every module computes in its ``dtype`` (``config.model.compute_dtype``) with
float32 parameters. Under bfloat16 two parts stay float32: the sinusoidal time
features (cast after they are computed) and the attention logits and softmax.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.nets import layers
from trilemma_jax.nets.attention import AttnBlock
from trilemma_jax.nets.embeddings import TimeEmbedding

# Ho et al. initialise with a Glorot-uniform ("fan_avg") variance scaling, and the
# last layer of every residual branch at (near) zero so each block starts as the
# identity.
_default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
_zero_init = nn.initializers.zeros


def _conv3x3(features: int, *, dtype: Dtype, zero: bool = False, strides: int = 1,
             name: str | None = None):
  return nn.Conv(features, (3, 3), strides=(strides, strides), padding='SAME',
                 kernel_init=_zero_init if zero else _default_init, dtype=dtype, name=name)


def _group_norm(num_groups: int, channels: int, name: str, dtype: Dtype) -> nn.GroupNorm:
  # Flax computes the group statistics in float32 at least, whatever dtype is.
  return nn.GroupNorm(num_groups=layers.norm_groups(num_groups, channels), epsilon=1e-6,
                      dtype=dtype, name=name)


class ResBlock(nn.Module):
  """Residual block told the time step; 1x1 projection of the skip if widths differ."""

  out_ch: int
  dropout: float
  num_groups: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
    in_ch = x.shape[-1]
    dtype = self.dtype
    h = nn.silu(_group_norm(self.num_groups, in_ch, 'norm_0', dtype)(x))
    h = _conv3x3(self.out_ch, dtype=dtype, name='conv_0')(h)
    h = h + nn.Dense(self.out_ch, kernel_init=_default_init, dtype=dtype,
                     name='time')(nn.silu(emb))[:, None, None, :]
    h = nn.silu(_group_norm(self.num_groups, self.out_ch, 'norm_1', dtype)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = _conv3x3(self.out_ch, dtype=dtype, zero=True, name='conv_1')(h)
    if in_ch != self.out_ch:
      x = nn.Dense(self.out_ch, kernel_init=_default_init, dtype=dtype, name='skip')(x)
    return x + h


class UNet(nn.Module):
  """Time-conditional U-Net ``f(x_t, t)`` predicting an image-shaped tensor.

  Attributes:
    ch: base channel count.
    ch_mult: channel multiplier per resolution level; ``len(ch_mult) - 1``
      downsamplings, so the image side must be divisible by ``2**(len-1)``.
    num_res_blocks: residual blocks per level on the way down (one more on the
      way up, which also consumes the downsample's skip).
    attn_resolutions: spatial sides (e.g. ``(16,)``) at which to add attention.
    dropout: dropout rate inside the residual blocks (active when ``train``).
    num_groups: GroupNorm groups (capped at the channel count).
    out_ch: output channels; None means the input's channels.
    dtype: computation dtype (parameters stay float32).
  """

  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  num_groups: int = 32
  out_ch: int | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool = False) -> jax.Array:
    """Applies the network.

    Args:
      x: ``[B, H, W, C]`` noisy images.
      t: ``[B]`` time indices.
      train: enables dropout (needs a ``'dropout'`` rng).

    Returns:
      ``[B, H, W, out_ch or C]``.
    """
    if x.ndim != 4:
      raise ValueError(f'UNet expects images [B, H, W, C], got shape {x.shape}.')
    levels = len(self.ch_mult)
    factor = 2 ** (levels - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
          f'An image of {x.shape[1]}x{x.shape[2]} cannot be halved {levels - 1} times '
          f'(ch_mult={tuple(self.ch_mult)}); use fewer levels or pad the images.')
    dtype = self.dtype
    emb = TimeEmbedding(self.ch, 4 * self.ch, dtype=dtype, name='time')(t)

    def block(h, out_ch, name):
      return ResBlock(out_ch, self.dropout, self.num_groups, dtype=dtype, name=name)(h, emb,
                                                                                     train)

    def maybe_attn(h, name):
      if h.shape[1] in self.attn_resolutions:
        h = AttnBlock(self.num_groups, dtype=dtype, name=name)(h)
      return h

    hs = [_conv3x3(self.ch, dtype=dtype, name='conv_in')(x)]
    for level, mult in enumerate(self.ch_mult):
      for i in range(self.num_res_blocks):
        h = block(hs[-1], self.ch * mult, f'down_{level}_block_{i}')
        hs.append(maybe_attn(h, f'down_{level}_attn_{i}'))
      if level != levels - 1:
        hs.append(_conv3x3(hs[-1].shape[-1], dtype=dtype, strides=2,
                           name=f'down_{level}_sample')(hs[-1]))

    h = block(hs[-1], hs[-1].shape[-1], 'mid_block_0')
    h = AttnBlock(self.num_groups, dtype=dtype, name='mid_attn')(h)
    h = block(h, h.shape[-1], 'mid_block_1')

    for level in reversed(range(levels)):
      for i in range(self.num_res_blocks + 1):
        h = block(jnp.concatenate([h, hs.pop()], axis=-1), self.ch * self.ch_mult[level],
                  f'up_{level}_block_{i}')
        h = maybe_attn(h, f'up_{level}_attn_{i}')
      if level != 0:
        b, hgt, wid, c = h.shape
        h = jax.image.resize(h, (b, 2 * hgt, 2 * wid, c), method='nearest')
        h = _conv3x3(c, dtype=dtype, name=f'up_{level}_sample')(h)
    assert not hs

    h = nn.silu(_group_norm(self.num_groups, h.shape[-1], 'norm_out', dtype)(h))
    out_ch = x.shape[-1] if self.out_ch is None else self.out_ch
    return _conv3x3(out_ch, dtype=dtype, zero=True, name='conv_out')(h)


class TimeMLP(nn.Module):
  """``f(x_t, t)`` for flat inputs: SiLU layers, each told the time step.

  Every hidden layer adds a learned projection of the time embedding to its
  pre-activation, so that the network can behave differently at every noise
  level rather than only through its first layer.

  Attributes:
    hidden: widths of the hidden layers, e.g. ``(256, 256, 256, 256)``.
    time_dim: width of the sinusoidal time features and of the time MLP.
    out_dim: output width; None means the input width (an ε, x0 or v estimate).
    dtype: computation dtype (parameters stay float32).
  """

  hidden: Sequence[int] = (256, 256, 256, 256)
  time_dim: int = 128
  out_dim: int | None = None
  dtype: Dtype = jnp.float32

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
    emb = TimeEmbedding(self.time_dim, self.time_dim, dtype=self.dtype, name='time')(t)
    h = x
    for i, width in enumerate(self.hidden):
      h = (nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(h)
           + nn.Dense(width, dtype=self.dtype, name=f'time_{i}')(emb))
      h = nn.silu(h)
    out_dim = x.shape[-1] if self.out_dim is None else self.out_dim
    return nn.Dense(out_dim, dtype=self.dtype, name='out')(h)
