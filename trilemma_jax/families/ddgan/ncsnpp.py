"""The paper-scale DDGAN networks: an NCSN++ generator with AdaGN, and the small FIR discriminator.

Xiao, Kreis & Vahdat (ICLR 2022) train CIFAR-10 with the NCSN++ U-Net of Song
et al. (2021) turned into a generator: every group norm of its residual blocks
is adaptive (AdaGN, scale and shift linear in the style vector ``w`` of the
latent's mapping network). :class:`NCSNppGenerator` builds that network as a
Flax module, in the configuration of the official CIFAR-10 run:

* a sinusoidal embedding of the step and a two-layer MLP to ``4 ch`` features,
  added (projected) inside every residual block;
* BigGAN-style residual blocks (AdaGN, SiLU, 3x3 conv, + time; AdaGN, SiLU,
  3x3 conv; a 1x1 skip projection where the width or resolution changes;
  ``(x + h) / sqrt(2)``); the blocks between levels resample themselves with
  FIR filters (:mod:`trilemma_jax.nets.resample`) on both paths;
* self-attention at the resolutions ``attn_resolutions``: after every block
  on the way down, after the last block of the level on the way up, and in
  the middle (block, attention, block);
* an input pyramid ("progressive input, residual"): the image, resampled by an
  FIR conv at each level, is added to the features, ``(pyramid + h) / sqrt(2)``;
* the skip connections of the down path concatenated on the way up, then an
  (ordinary) group norm, SiLU, a zero-initialised 3x3 conv and ``tanh``.

With ``ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
z_emb_dim=256, mapping_layers=4`` it has exactly the parameters of the
official CIFAR-10 generator (tests/test_ddgan.py; docs/paper_scale.md).

:class:`DownConvDiscriminator` is the official "small" discriminator: a 1x1
input conv, four residual blocks told the time step (the last three halve the
resolution with the FIR filter), a 3x3 conv, leaky ReLU, a sum over pixels and
a linear output. The official one also appends a minibatch-stddev channel
before the 3x3 conv; it is left out, as in :class:`ConvDiscriminator`, because
it makes an example's logit depend on the other examples of its batch (R1 is
per example here, and the result would depend on how a batch is split over
devices). That is ``9 * 512`` fewer weights than the official network.

Official dropout is 0 for CIFAR-10, and these modules have none.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.families.ddgan.nets import (AdaptiveGroupNorm, MappingNetwork,
                                              check_image_input)
from trilemma_jax.nets import layers, resample
from trilemma_jax.nets.attention import AttnBlock
from trilemma_jax.nets.embeddings import TimeEmbedding

# NCSN++ initialises with Glorot-uniform ("fan_avg") scaling, and the last conv
# of every residual branch (and the output conv) at zero.
_default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
_zero_init = nn.initializers.zeros
_ROOT2 = math.sqrt(2.0)


def _conv(features: int, *, dtype: Dtype, kernel: int = 3, zero: bool = False,
          use_bias: bool = True, name: str | None = None) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), padding='SAME', use_bias=use_bias,
                 kernel_init=_zero_init if zero else _default_init, dtype=dtype, name=name)


def _groups(channels: int) -> int:
  # NCSN++'s rule: a quarter of the channels, at most 32 groups.
  return max(1, min(channels // 4, 32))


class AdaResBlock(nn.Module):
  """BigGAN-style residual block with AdaGN on ``w``, an added time projection, FIR resampling.

  Attributes:
    out_ch: output channels (``None``: the input's).
    up, down: double or halve the resolution (both paths, before the first conv).
    activation: hidden activation name.
    dtype: computation dtype (parameters stay float32).
  """

  out_ch: int | None = None
  up: bool = False
  down: bool = False
  activation: str = 'silu'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, w: jax.Array) -> jax.Array:
    dtype = self.dtype
    act = layers.activation(self.activation)
    in_ch = x.shape[-1]
    out_ch = self.out_ch or in_ch
    h = act(AdaptiveGroupNorm(_groups(in_ch), dtype=dtype, name='norm_0')(x, w))
    if self.up:
      h, x = resample.upsample_2d(h), resample.upsample_2d(x)
    elif self.down:
      h, x = resample.downsample_2d(h), resample.downsample_2d(x)
    h = _conv(out_ch, dtype=dtype, name='conv_0')(h)
    h = h + nn.Dense(out_ch, kernel_init=_default_init, bias_init=nn.initializers.zeros,
                     dtype=dtype, name='time')(act(temb))[:, None, None, :]
    h = act(AdaptiveGroupNorm(_groups(out_ch), dtype=dtype, name='norm_1')(h, w))
    h = _conv(out_ch, dtype=dtype, zero=True, name='conv_1')(h)
    if in_ch != out_ch or self.up or self.down:
      x = _conv(out_ch, dtype=dtype, kernel=1, name='skip')(x)
    return (x + h) / _ROOT2


class NCSNppGenerator(nn.Module):
  """``G(x_t, z, t) -> x0_hat`` for images: NCSN++ with AdaGN (see the module docstring).

  Attributes:
    ch: base channels (official CIFAR-10: 128).
    ch_mult: channel multiplier per resolution level (``len - 1`` halvings).
    num_res_blocks: residual blocks per level on the way down (one more up).
    attn_resolutions: feature-map sides with self-attention (after each block
      on the way down, once per level on the way up).
    z_emb_dim: width of the style vector ``w``.
    mapping_layers: layers of the mapping network after its first.
    activation: activation of the body and the mapping network (official: SiLU).
    tanh: squash the output to (-1, 1).
    time_scale: the time embedding sees ``time_scale * t``.
    dtype: computation dtype (parameters stay float32).
  """

  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  z_emb_dim: int = 256
  mapping_layers: int = 4
  activation: str = 'silu'
  tanh: bool = True
  time_scale: float = 1.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_t: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    """``x_t`` ``[B, H, W, C]``, ``z`` ``[B, nz]``, ``t`` ``[B]`` -> ``x0_hat`` like ``x_t``."""
    check_image_input('NCSNppGenerator', x_t, self.ch_mult)
    levels = len(self.ch_mult)
    dtype = self.dtype
    act = layers.activation(self.activation)
    w = MappingNetwork(self.z_emb_dim, self.mapping_layers, self.activation, dtype=dtype,
                       name='mapping')(z)
    temb = TimeEmbedding(self.ch, 4 * self.ch, activation=self.activation, dtype=dtype,
                         name='time')(t * self.time_scale)

    def block(h, name, **kw):
      return AdaResBlock(activation=self.activation, dtype=dtype, name=name, **kw)(h, temb, w)

    def attend(h, name):
      return AttnBlock(_groups(h.shape[-1]), rescale=True, dtype=dtype, name=name)(h)

    pyramid = x_t
    hs = [_conv(self.ch, dtype=dtype, name='conv_in')(x_t)]
    for level, mult in enumerate(self.ch_mult):
      for i in range(self.num_res_blocks):
        h = block(hs[-1], f'down_{level}_{i}', out_ch=self.ch * mult)
        if h.shape[1] in self.attn_resolutions:
          h = attend(h, f'down_{level}_{i}_attn')
        hs.append(h)
      if level != levels - 1:
        h = block(hs[-1], f'downsample_{level}', down=True)
        pyramid = resample.ResampleConv(h.shape[-1], dtype=dtype,
                                        name=f'pyramid_{level}')(pyramid)
        pyramid = (pyramid + h) / _ROOT2
        hs.append(pyramid)

    h = block(hs[-1], 'mid_0')
    h = attend(h, 'mid_attn')
    h = block(h, 'mid_1')

    for level in reversed(range(levels)):
      for i in range(self.num_res_blocks + 1):
        h = block(jnp.concatenate([h, hs.pop()], axis=-1), f'up_{level}_{i}',
                  out_ch=self.ch * self.ch_mult[level])
      if h.shape[1] in self.attn_resolutions:
        h = attend(h, f'up_{level}_attn')
      if level != 0:
        h = block(h, f'upsample_{level}', up=True)

    h = act(nn.GroupNorm(num_groups=_groups(h.shape[-1]), epsilon=1e-6, dtype=dtype,
                         name='norm_out')(h))
    h = _conv(x_t.shape[-1], dtype=dtype, zero=True, name='conv_out')(h)
    return jnp.tanh(h) if self.tanh else h


class _DownConvBlock(nn.Module):
  """act -> 3x3 conv (+ time) -> act -> [FIR down] -> 3x3 conv(zero); 1x1 skip (no bias)."""

  out_ch: int
  down: bool
  activation: str
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
    dtype = self.dtype
    act = layers.activation(self.activation)
    h = _conv(self.out_ch, dtype=dtype, name='conv_0')(act(x))
    h = h + nn.Dense(self.out_ch, kernel_init=_default_init, dtype=dtype,
                     name='time')(temb)[:, None, None, :]
    h = act(h)
    if self.down:
      h, x = resample.downsample_2d(h), resample.downsample_2d(x)
    h = _conv(self.out_ch, dtype=dtype, zero=True, name='conv_1')(h)
    skip = _conv(self.out_ch, dtype=dtype, kernel=1, use_bias=False, name='skip')(x)
    return (h + skip) / _ROOT2


class DownConvDiscriminator(nn.Module):
  """``D(x_{t-1}, x_t, t) -> logit``: the official small discriminator without minibatch stddev.

  A 1x1 conv to ``channels[0]``; a residual block per entry of ``channels``
  (every one after the first halves the resolution); a 3x3 conv, the
  activation, a sum over pixels and a linear output. The official CIFAR-10
  network is ``channels=(128, 256, 512, 512)`` (2, 4, 8, 8 times ngf = 64).

  Attributes:
    channels: output channels of the residual blocks.
    t_emb_dim: width of the time embedding (official CIFAR-10 run: 256).
    activation: activation name (official: leaky ReLU 0.2).
    time_scale: the time embedding sees ``time_scale * t``.
    dtype: computation dtype (parameters stay float32).
  """

  channels: Sequence[int] = (128, 256, 512, 512)
  t_emb_dim: int = 128
  activation: str = 'leaky_relu'
  time_scale: float = 1.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_prev: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """``x_prev``, ``x_t`` ``[B, H, W, C]``, ``t`` ``[B]`` -> logits ``[B]``."""
    if x_prev.ndim != 4 or x_prev.shape != x_t.shape:
      raise ValueError(
          f'DownConvDiscriminator expects two images [B, H, W, C] of the same shape, got '
          f'{x_prev.shape} and {x_t.shape}.')
    factor = 2 ** (len(self.channels) - 1)
    if x_t.shape[1] % factor or x_t.shape[2] % factor:
      raise ValueError(
          f'DownConvDiscriminator halves the image {len(self.channels) - 1} times '
          f'(model.image.d_channels={tuple(self.channels)}); {x_t.shape[1]}x{x_t.shape[2]} '
          f'is not divisible by {factor}.')
    dtype = self.dtype
    act = layers.activation(self.activation)
    temb = act(TimeEmbedding(self.t_emb_dim, self.t_emb_dim, activation=self.activation,
                             dtype=dtype, name='time')(t * self.time_scale))
    h = _conv(self.channels[0], dtype=dtype, kernel=1,
              name='conv_in')(jnp.concatenate([x_prev, x_t], axis=-1))
    for i, c in enumerate(self.channels):
      h = _DownConvBlock(c, i > 0, self.activation, dtype=dtype, name=f'block_{i}')(h, temb)
    h = act(_conv(self.channels[-1], dtype=dtype, zero=True, name='conv_out')(h))
    h = jnp.sum(h, axis=(1, 2))
    return nn.Dense(1, kernel_init=_default_init, dtype=dtype, name='out')(h)[:, 0]
