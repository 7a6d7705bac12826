"""FIR-filtered 2x resampling of NHWC feature maps (the up/down paths of NCSN++).

A plain strided conv or nearest-neighbour resize aliases: the signal is
decimated without a low-pass filter. StyleGAN2 and NCSN++ filter with the
separable binomial kernel ``[1, 3, 3, 1]`` instead: downsampling blurs, then
keeps every second pixel; upsampling inserts zeros, then blurs with the
kernel scaled by 4 (the gain of the inserted zeros). The kernel is separable,
so each filter runs along the height, then the width.

:class:`ResampleConv` is the learned version: a 3x3 conv whose input (down) or
output (up) is filtered, with the parameters of an ordinary 3x3 conv.

No maintained JAX package ships these filters (Flax and dm-pix have no FIR
up/downsampler), so they are written here.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.typing import Dtype

FIR_KERNEL = (1, 3, 3, 1)

_default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')


def _taps(kernel: Sequence[float]) -> np.ndarray:
  """The 1-D taps scaled to sum to 1 (the 2-D kernel is their outer product)."""
  k = np.asarray(kernel, np.float64)
  if k.ndim != 1 or k.size < 2 or k.sum() == 0:
    raise ValueError(f'An FIR kernel is a 1-D sequence of at least 2 taps with a nonzero '
                     f'sum, got {kernel!r}.')
  return k / k.sum()


def _filter_axis(x: jax.Array, taps: np.ndarray, axis: int, pad: tuple[int, int], *,
                 up: bool = False, down: bool = False) -> jax.Array:
  """upfirdn along one axis: [zeros after each sample], pad, convolve with ``taps``, [every 2nd].

  Written as a sum of shifted slices rather than a depthwise convolution: XLA
  fuses the slices into one elementwise loop, and their gradients are pads and
  slices again, where a dilated depthwise convolution (and the gradient of a
  strided one) takes a slow path on XLA:CPU.
  """
  if up:
    x = jnp.stack([x, jnp.zeros_like(x)], axis=axis + 1)
    shape = list(x.shape)
    shape[axis:axis + 2] = [shape[axis] * shape[axis + 1]]
    x = x.reshape(shape)
  widths = [(0, 0)] * x.ndim
  widths[axis] = pad
  x = jnp.pad(x, widths)
  n = len(taps)
  length = x.shape[axis] - n + 1
  stride = 2 if down else 1
  out = None
  for m, tap in enumerate(taps[::-1]):  # convolution, as upfirdn2d
    term = float(tap) * jax.lax.slice_in_dim(x, m, m + length, stride=stride, axis=axis)
    out = term if out is None else out + term
  return out


def _filter_2d(x: jax.Array, kernel: Sequence[float], pad: tuple[int, int], *,
               gain: float = 1.0, up: bool = False, down: bool = False) -> jax.Array:
  taps = _taps(kernel) * np.sqrt(gain)
  for axis in (1, 2):
    x = _filter_axis(x, taps, axis, pad, up=up, down=down)
  return x


def _check(x: jax.Array, name: str) -> None:
  if x.ndim != 4:
    raise ValueError(f'{name} expects feature maps [B, H, W, C], got shape {x.shape}.')


def downsample_2d(x: jax.Array, kernel: Sequence[float] = FIR_KERNEL) -> jax.Array:
  """``[B, H, W, C] -> [B, H/2, W/2, C]``: low-pass filter, then every second pixel."""
  _check(x, 'downsample_2d')
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f'downsample_2d needs an even height and width, got {x.shape[1:3]}.')
  p = len(kernel) - 2
  return _filter_2d(x, kernel, ((p + 1) // 2, p // 2), down=True)


def upsample_2d(x: jax.Array, kernel: Sequence[float] = FIR_KERNEL) -> jax.Array:
  """``[B, H, W, C] -> [B, 2H, 2W, C]``: zeros between the pixels, then the filter times 4."""
  _check(x, 'upsample_2d')
  p = len(kernel) - 2
  return _filter_2d(x, kernel, ((p + 1) // 2 + 1, p // 2), gain=4.0, up=True)


class ResampleConv(nn.Module):
  """A 3x3 conv that halves (``down``) or doubles (``up``) the resolution with FIR filtering.

  Down: filter (with 2 extra pixels each side), then a stride-2 'VALID' conv.
  Up: a stride-2 'VALID' transposed conv (``2H + 1`` pixels), filtered back to
  ``2H``, plus a bias. Parameters: a ``[3, 3, C_in, features]`` kernel and a bias.

  Attributes:
    features: output channels.
    up: double the resolution; otherwise halve it.
    kernel: the 1-D FIR taps.
    kernel_init: initialiser of the conv kernel.
    dtype: computation dtype (parameters stay float32).
  """

  features: int
  up: bool = False
  kernel: Sequence[float] = FIR_KERNEL
  kernel_init: nn.initializers.Initializer = _default_init
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check(x, 'ResampleConv')
    p = len(self.kernel) - 2
    if self.up:
      h = nn.ConvTranspose(self.features, (3, 3), strides=(2, 2), padding='VALID',
                           use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype,
                           name='conv')(x)
      # 2H + 1 pixels + p - (taps - 1) = 2H. The bias is added after the filter,
      # which would otherwise scale it by the gain (and less at the borders).
      h = _filter_2d(h, self.kernel, ((p + 1) // 2, p // 2), gain=4.0)
      bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
      return h + bias.astype(h.dtype)
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ValueError(f'ResampleConv(up=False) needs an even height and width, got '
                       f'{x.shape[1:3]}.')
    p += 2  # the 'VALID' 3x3 conv eats two pixels
    h = _filter_2d(x, self.kernel, ((p + 1) // 2, p // 2))
    return nn.Conv(self.features, (3, 3), strides=(2, 2), padding='VALID',
                   kernel_init=self.kernel_init, dtype=self.dtype, name='conv')(h)
