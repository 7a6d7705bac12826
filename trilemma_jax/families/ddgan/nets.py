"""Networks of the denoising diffusion GAN (Xiao, Kreis & Vahdat, ICLR 2022).

Generator ``G(x_t, z, t) -> x0_hat``: the latent ``z`` goes through a mapping
network (pixel norm, then an MLP, as in StyleGAN and the official NCSN++
generator) to a style vector ``w``; every normalisation layer of the body is an
adaptive group norm whose per-channel scale and shift are linear in ``w``
(AdaGN); the time step enters every block as an added projection of a
sinusoidal time embedding. Every network takes the integer step ``t`` and
embeds ``time_scale * t``; the family sets ``time_scale = 1000 / T`` so that the
few steps of a DDGAN spread over the range the sinusoids resolve (with
``t`` in 1..4 unscaled, all but the fastest frequencies of the embedding
would be nearly constant). Discriminator ``D(x_{t-1}, x_t, t) -> logit``: the
two states are concatenated (features for points, channels for images) and
the time embedding is added in every block.

Two sizes of body: residual MLPs for flat data (the 2-D mixtures), and for
images a small U-Net generator and a strided-conv discriminator. GroupNorm
normalises each example on its own and no layer uses batch statistics, so a
logit depends on its own example only (needed for a per-example R1 and for
results that do not depend on how a batch is split over devices).

Every module computes in its ``dtype`` (``config.model.compute_dtype``) with
float32 parameters. Under bfloat16 the time and Fourier features and the pixel
norm of ``z`` are still computed in float32 and cast afterwards, and
:class:`SkipGenerator` mixes ``x_t`` with its body's output in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.nets import layers
from trilemma_jax.nets.embeddings import TimeEmbedding

# The last layer of every residual branch starts at zero so each block starts
# as the identity (as in the NCSN++ and Ho et al. U-Nets).
_zero_init = nn.initializers.zeros


class MappingNetwork(nn.Module):
  """``z [B, nz] -> w [B, dim]``: pixel norm, then ``1 + num_layers`` Dense + activation.

  Attributes:
    dim: width of the style vector and of the hidden layers.
    num_layers: extra layers after the first projection (official CIFAR-10: 4).
    activation: hidden activation name.
    dtype: computation dtype of the layers (the pixel norm is float32).
  """

  dim: int
  num_layers: int = 3
  activation: str = 'leaky_relu'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    act = layers.activation(self.activation)
    # Pixel norm: the network sees z on the unit sphere (times sqrt(nz)), so
    # its input scale does not depend on nz.
    z = z.astype(jnp.float32)
    h = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)
    h = h.astype(self.dtype)
    for _ in range(1 + self.num_layers):
      h = act(nn.Dense(self.dim, dtype=self.dtype)(h))
    return h


class AdaptiveGroupNorm(nn.Module):
  """``gamma(w) * GroupNorm(h) + beta(w)``: the latent's way into the generator.

  ``gamma`` starts at 1 and ``beta`` at 0 (bias initialisation), so at
  initialisation the layer is a plain group norm. ``h`` is ``[B, C]`` or
  ``[B, H, W, C]``; ``w`` is ``[B, dim]``. ``dtype`` is the computation dtype
  (Flax takes the group statistics in float32 at least).
  """

  num_groups: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, w: jax.Array) -> jax.Array:
    c = h.shape[-1]
    norm = nn.GroupNorm(num_groups=layers.norm_groups(self.num_groups, c), use_scale=False,
                        use_bias=False, epsilon=1e-6, dtype=self.dtype)
    # GroupNorm wants a feature axis after the batch; treat a flat [B, C] as 1 pixel.
    hn = norm(h[:, None, :]).reshape(h.shape) if h.ndim == 2 else norm(h)
    bias_init = lambda key, shape, dtype=jnp.float32: jnp.concatenate(
        [jnp.ones((c,), dtype), jnp.zeros((c,), dtype)])
    style = nn.Dense(2 * c, bias_init=bias_init, dtype=self.dtype, name='style')(w)
    gamma, beta = jnp.split(style, 2, axis=-1)
    expand = (slice(None),) + (None,) * (h.ndim - 2) + (slice(None),)
    return gamma[expand] * hn + beta[expand]


# ------------------------------------------------------------------ flat data


def fourier_features(x: jax.Array, num_octaves: int, first_octave: int = 0) -> jax.Array:
  """``[B, D] -> [B, D (1 + 2K)]``: ``x``, ``sin(2^k pi x)`` and ``cos(2^k pi x)`` for ``K`` octaves ``k``.

  The octaves are ``k = first_octave, ..., first_octave + K - 1``.

  A coordinate MLP learns high frequencies slowly (spectral bias; Rahaman et
  al. 2019, Tancik et al. 2020): a discriminator fed raw 2-D coordinates could
  not tell the grid25 modes (std 0.05) from a copy blurred by 0.1 in 1,500
  Adam steps, and learned it at once with these features. From octave 0 every
  feature repeats with period 2, grid25's mode spacing, so the features alone
  cannot tell one mode from another; negative octaves add periods of 4, 8,
  16, ... ``K = 0`` returns ``x`` unchanged.
  """
  if num_octaves == 0:
    return x
  freqs = jnp.pi * 2.0 ** jnp.arange(first_octave, first_octave + num_octaves, dtype=x.dtype)
  angles = (x[..., None] * freqs).reshape(x.shape[0], -1)
  return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _fourier_in(x: jax.Array, num_octaves: int, dtype: Dtype, first_octave: int = 0) -> jax.Array:
  """:func:`fourier_features` computed in float32, then cast to the layers' ``dtype``.

  In bfloat16 a coordinate near 4 is rounded to steps of 1/32, which the
  fastest octave of the grid25 default (``8 pi x``) turns into steps of 0.8
  radians.
  """
  return fourier_features(x.astype(jnp.float32), num_octaves, first_octave).astype(dtype)


class _ResMLPBlock(nn.Module):
  """AdaGN -> act -> Dense (+ time) -> AdaGN -> act -> Dense(zero), residual."""

  width: int
  num_groups: int
  activation: str
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, temb: jax.Array, w: jax.Array) -> jax.Array:
    act = layers.activation(self.activation)
    norm = lambda name: AdaptiveGroupNorm(self.num_groups, dtype=self.dtype, name=name)
    dense = lambda name, **kw: nn.Dense(self.width, dtype=self.dtype, name=name, **kw)
    r = act(norm('norm_0')(h, w))
    r = dense('dense_0')(r) + dense('time')(act(temb))
    r = act(norm('norm_1')(r, w))
    r = dense('dense_1', kernel_init=_zero_init)(r)
    return (h + r) / math.sqrt(2.0)


class MLPGenerator(nn.Module):
  """``G(x_t, z, t)`` for flat data: residual MLP blocks with AdaGN and time.

  Attributes:
    width: hidden width (a multiple of ``num_groups``).
    num_blocks: residual blocks (two Dense layers each).
    z_emb_dim: width of the style vector ``w`` (mapping network output).
    mapping_layers: hidden layers of the mapping network after its first.
    time_dim: width of the time embedding.
    num_groups: groups of the adaptive group norms.
    activation: hidden activation name.
    fourier_octaves: encode ``x_t`` with :func:`fourier_features` (0: raw).
    fourier_first_octave: the lowest of those octaves.
    time_scale: the time embedding sees ``time_scale * t``.
    dtype: computation dtype (parameters stay float32).
  """

  width: int = 256
  num_blocks: int = 3
  z_emb_dim: int = 128
  mapping_layers: int = 3
  time_dim: int = 128
  num_groups: int = 16
  activation: str = 'leaky_relu'
  fourier_octaves: int = 0
  fourier_first_octave: int = 0
  time_scale: float = 1.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_t: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    """``x_t`` ``[B, D]``, ``z`` ``[B, nz]``, ``t`` ``[B]`` int -> ``x0_hat`` ``[B, D]``."""
    if x_t.ndim != 2:
      raise ValueError(f'MLPGenerator expects flat inputs [B, D], got shape {x_t.shape}.')
    dtype = self.dtype
    act = layers.activation(self.activation)
    w = MappingNetwork(self.z_emb_dim, self.mapping_layers, self.activation, dtype=dtype,
                       name='mapping')(z)
    temb = TimeEmbedding(self.time_dim, self.time_dim, dtype=dtype,
                         name='time')(t * self.time_scale)
    features = _fourier_in(x_t, self.fourier_octaves, dtype, self.fourier_first_octave)
    h = nn.Dense(self.width, dtype=dtype, name='dense_in')(features)
    for i in range(self.num_blocks):
      h = _ResMLPBlock(self.width, self.num_groups, self.activation, dtype=dtype,
                       name=f'block_{i}')(h, temb, w)
    h = act(AdaptiveGroupNorm(self.num_groups, dtype=dtype, name='norm_out')(h, w))
    return nn.Dense(x_t.shape[-1], dtype=dtype, name='dense_out')(h)


class MLPDiscriminator(nn.Module):
  """``D(x_{t-1}, x_t, t)`` for flat data: Dense layers, each told the time step.

  Attributes:
    widths: hidden widths.
    time_dim: width of the time embedding.
    activation: hidden activation name (official: leaky ReLU 0.2).
    fourier_octaves: encode both inputs with :func:`fourier_features` (0: raw).
    fourier_first_octave: the lowest of those octaves.
    time_scale: the time embedding sees ``time_scale * t``.
    spectral_norm: spectrally normalise the layers the inputs pass through (see
      :class:`ConvDiscriminator`).
    dtype: computation dtype (parameters stay float32).
  """

  widths: Sequence[int] = (256, 256, 256)
  time_dim: int = 128
  activation: str = 'leaky_relu'
  fourier_octaves: int = 0
  fourier_first_octave: int = 0
  time_scale: float = 1.0
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_prev: jax.Array, x_t: jax.Array, t: jax.Array,
               update_stats: bool = False) -> jax.Array:
    """``x_prev``, ``x_t`` ``[B, D]``, ``t`` ``[B]`` -> logits ``[B]``."""
    if x_prev.ndim != 2 or x_prev.shape != x_t.shape:
      raise ValueError(
          f'MLPDiscriminator expects two flat inputs [B, D] of the same shape, got '
          f'{x_prev.shape} and {x_t.shape}.')
    dtype = self.dtype
    act = layers.activation(self.activation)
    temb = act(TimeEmbedding(self.time_dim, self.time_dim, dtype=dtype,
                             name='time')(t * self.time_scale))
    features = functools.partial(_fourier_in, num_octaves=self.fourier_octaves, dtype=dtype,
                                 first_octave=self.fourier_first_octave)
    h = jnp.concatenate([features(x_prev), features(x_t)], axis=-1)
    sn = functools.partial(layers.apply_layer, spectral_norm=self.spectral_norm,
                           update_stats=update_stats)
    for i, width in enumerate(self.widths):
      h = act(sn(nn.Dense(width, dtype=dtype, name=f'dense_{i}'), h)
              + nn.Dense(width, dtype=dtype, name=f'time_{i}')(temb))
    return sn(nn.Dense(1, dtype=dtype, name='out'), h)[:, 0]


# --------------------------------------------------------------------- images


def _conv(features: int, *, dtype: Dtype, kernel: int = 3, strides: int = 1,
          zero: bool = False, name: str | None = None) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding='SAME',
                 kernel_init=_zero_init if zero else nn.linear.default_kernel_init,
                 dtype=dtype, name=name)


def check_image_input(name: str, x_t: jax.Array, ch_mult: Sequence[int]) -> None:
  """Raises unless ``x_t`` is ``[B, H, W, C]`` with sides that ``len(ch_mult) - 1`` halvings divide."""
  if x_t.ndim != 4:
    raise ValueError(f'{name} expects images [B, H, W, C], got shape {x_t.shape}.')
  levels = len(ch_mult)
  factor = 2 ** (levels - 1)
  if x_t.shape[1] % factor or x_t.shape[2] % factor:
    raise ValueError(
        f'An image of {x_t.shape[1]}x{x_t.shape[2]} cannot be halved {levels - 1} times '
        f'(model.image.ch_mult={tuple(ch_mult)}); use fewer levels.')


class _AdaResBlock(nn.Module):
  """NCSN++-style residual block with AdaGN on ``w`` and an added time projection."""

  out_ch: int
  num_groups: int
  activation: str
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, temb: jax.Array, w: jax.Array) -> jax.Array:
    dtype = self.dtype
    act = layers.activation(self.activation)
    h = act(AdaptiveGroupNorm(self.num_groups, dtype=dtype, name='norm_0')(x, w))
    h = _conv(self.out_ch, dtype=dtype, name='conv_0')(h)
    h = h + nn.Dense(self.out_ch, dtype=dtype, name='time')(act(temb))[:, None, None, :]
    h = act(AdaptiveGroupNorm(self.num_groups, dtype=dtype, name='norm_1')(h, w))
    h = _conv(self.out_ch, dtype=dtype, zero=True, name='conv_1')(h)
    if x.shape[-1] != self.out_ch:
      x = nn.Dense(self.out_ch, dtype=dtype, name='skip')(x)
    return (x + h) / math.sqrt(2.0)


def noise_map_size(shape: Sequence[int], noise_channels: int) -> int:
  """Entries of ``z`` that :class:`UNetGenerator` reads as noise maps for ``[H, W, C]`` images."""
  return int(shape[0]) * int(shape[1]) * int(noise_channels)


class UNetGenerator(nn.Module):
  """``G(x_t, z, t)`` for images: a small U-Net of AdaGN residual blocks.

  Attributes:
    ch: base channels.
    ch_mult: channel multiplier per resolution level (``len - 1`` halvings).
    num_res_blocks: residual blocks per level on the way down (one more up).
    z_emb_dim, mapping_layers, time_dim, num_groups, activation: as in
      :class:`MLPGenerator` (``time_dim`` defaults to ``4 * ch`` when None).
    tanh: squash the output to (-1, 1) (official generator for [-1, 1] images).
    time_scale: the time embedding sees ``time_scale * t``.
    noise_channels: K > 0 takes the last ``H * W * K`` entries of ``z`` as K
      noise maps that enter beside ``x_t`` (randomness local to each pixel, not
      shared by the whole image as the mapped latent is); ``z`` then has
      ``latent_dim + H * W * K`` entries (:func:`noise_map_size`).
    latent_from_step: the mapped latent enters only at steps ``t >= k``;
      below ``k`` its entries are zeroed, so there the step's randomness is
      the noise maps' alone (1: the latent at every step).
    dtype: computation dtype (parameters stay float32).
  """

  ch: int = 32
  ch_mult: Sequence[int] = (1, 2)
  num_res_blocks: int = 1
  z_emb_dim: int = 128
  mapping_layers: int = 3
  time_dim: int | None = None
  num_groups: int = 8
  activation: str = 'silu'
  tanh: bool = True
  time_scale: float = 1.0
  noise_channels: int = 0
  latent_from_step: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_t: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    """``x_t`` ``[B, H, W, C]``, ``z`` ``[B, nz]``, ``t`` ``[B]`` -> ``x0_hat`` like ``x_t``."""
    check_image_input('UNetGenerator', x_t, self.ch_mult)
    levels = len(self.ch_mult)
    dtype = self.dtype
    act = layers.activation(self.activation)
    h_in = x_t
    if self.noise_channels:
      b, hgt, wid, _ = x_t.shape
      local = noise_map_size(x_t.shape[1:], self.noise_channels)
      if z.shape[-1] <= local:
        raise ValueError(f'z has {z.shape[-1]} entries; with noise_channels='
                         f'{self.noise_channels} on {hgt}x{wid} images it needs more than '
                         f'{local} (the latent, then the noise maps).')
      z, noise = z[:, :-local], z[:, -local:]
      h_in = jnp.concatenate([x_t, noise.reshape(b, hgt, wid, self.noise_channels)], axis=-1)
    if self.latent_from_step > 1:
      z = jnp.where((jnp.asarray(t) >= self.latent_from_step)[:, None], z, jnp.zeros_like(z))
    w = MappingNetwork(self.z_emb_dim, self.mapping_layers, 'leaky_relu', dtype=dtype,
                       name='mapping')(z)
    time_dim = self.time_dim or 4 * self.ch
    temb = TimeEmbedding(self.ch, time_dim, dtype=dtype, name='time')(t * self.time_scale)

    def block(h, out_ch, name):
      return _AdaResBlock(out_ch, self.num_groups, self.activation, dtype=dtype,
                          name=name)(h, temb, w)

    hs = [_conv(self.ch, dtype=dtype, name='conv_in')(h_in)]
    for level, mult in enumerate(self.ch_mult):
      for i in range(self.num_res_blocks):
        hs.append(block(hs[-1], self.ch * mult, f'down_{level}_{i}'))
      if level != levels - 1:
        hs.append(_conv(hs[-1].shape[-1], dtype=dtype, strides=2,
                        name=f'downsample_{level}')(hs[-1]))
    h = block(hs[-1], hs[-1].shape[-1], 'mid_0')
    h = block(h, h.shape[-1], 'mid_1')
    for level in reversed(range(levels)):
      for i in range(self.num_res_blocks + 1):
        h = block(jnp.concatenate([h, hs.pop()], axis=-1), self.ch * self.ch_mult[level],
                  f'up_{level}_{i}')
      if level != 0:
        b, hgt, wid, c = h.shape
        h = jax.image.resize(h, (b, 2 * hgt, 2 * wid, c), method='nearest')
        h = _conv(c, dtype=dtype, name=f'upsample_{level}')(h)
    h = act(AdaptiveGroupNorm(self.num_groups, dtype=dtype, name='norm_out')(h, w))
    h = _conv(x_t.shape[-1], dtype=dtype, name='conv_out')(h)
    return jnp.tanh(h) if self.tanh else h


class ConvDiscriminator(nn.Module):
  """``D(x_{t-1}, x_t, t)`` for images: residual downsampling conv blocks told the time step.

  The official "small" discriminator also appends a minibatch-stddev feature;
  it is left out here because it couples the examples of a batch (the logit
  of one example would depend on the others, and R1 would no longer be per
  example).

  Attributes:
    channels: output channels of the blocks; each block halves the resolution.
    time_dim: width of the time embedding.
    activation: hidden activation name (official: leaky ReLU 0.2).
    time_scale: the time embedding sees ``time_scale * t``.
    spectral_norm: spectrally normalise every layer the images pass through
      (Miyato et al. 2018; :func:`trilemma_jax.nets.layers.apply_layer`): each
      kernel, reshaped to a matrix, is divided by its largest singular value,
      which limits the logit's slope in ``x_{t-1}`` and ``x_t`` (not to 1: a
      3x3 conv and the spatial sum can still scale it up). The time embedding
      and its per-block projections only add a per-example offset and stay
      plain. The power iterations advance on ``update_stats``.
    dtype: computation dtype (parameters stay float32).
  """

  channels: Sequence[int] = (64, 128)
  time_dim: int = 128
  activation: str = 'leaky_relu'
  time_scale: float = 1.0
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_prev: jax.Array, x_t: jax.Array, t: jax.Array,
               update_stats: bool = False) -> jax.Array:
    """``x_prev``, ``x_t`` ``[B, H, W, C]``, ``t`` ``[B]`` -> logits ``[B]``."""
    if x_prev.ndim != 4 or x_prev.shape != x_t.shape:
      raise ValueError(
          f'ConvDiscriminator expects two images [B, H, W, C] of the same shape, got '
          f'{x_prev.shape} and {x_t.shape}.')
    dtype = self.dtype
    act = layers.activation(self.activation)
    temb = act(TimeEmbedding(self.time_dim, self.time_dim, dtype=dtype,
                             name='time')(t * self.time_scale))
    sn = functools.partial(layers.apply_layer, spectral_norm=self.spectral_norm,
                           update_stats=update_stats)
    h = sn(_conv(self.channels[0], dtype=dtype, kernel=1, name='conv_in'),
           jnp.concatenate([x_prev, x_t], -1))
    pool = lambda v: nn.avg_pool(v, (2, 2), strides=(2, 2), padding='SAME')
    for i, c in enumerate(self.channels):
      r = sn(_conv(c, dtype=dtype, name=f'block_{i}_conv_0'), act(h))
      r = r + nn.Dense(c, dtype=dtype, name=f'block_{i}_time')(temb)[:, None, None, :]
      # Stride-1 conv then average pooling: the gradient of a strided conv runs
      # through a slow transposed-conv path on XLA:CPU.
      r = pool(sn(_conv(c, dtype=dtype, name=f'block_{i}_conv_1'), act(r)))
      skip = sn(nn.Dense(c, dtype=dtype, name=f'block_{i}_skip'), pool(h))
      h = (skip + r) / math.sqrt(2.0)
    h = jnp.sum(act(h), axis=(1, 2))
    return sn(nn.Dense(1, dtype=dtype, name='out'), h)[:, 0]


# ------------------------------------------------------------------- packing


class PackedDiscriminator(nn.Module):
  """PacGAN packing (Lin et al. 2018): one logit for ``pack`` consecutive pairs.

  ``[B, ...]`` inputs become ``[B / pack, ...]`` inputs ``pack`` times as wide
  (features of flat data, channels of images, concatenated in order) and the
  wrapped discriminator scores each pack. A discriminator that sees several
  samples at once can tell a distribution that drops or under-weights modes
  from the data (PacGAN's 25-Gaussian grid: 17.3 modes for the GAN, 24.8 with
  packs of 4). The members of a pack share their step: ``t`` is taken from the
  first member (the draw makes them equal). Packs do not interact, so each
  example's R1 gradient is its pack's; R1 is averaged over examples, so per
  logit the penalty is ``gamma / (2 pack)`` times the pack's squared gradient
  norm (``ddgan.r1_gamma`` keeps its single-pair meaning per example).

  Attributes:
    inner: a discriminator module ``(x_prev, x_t, t) -> [B]``.
    pack: pairs per logit (1: ``inner`` unchanged).
  """

  inner: nn.Module
  pack: int = 1

  def __call__(self, x_prev: jax.Array, x_t: jax.Array, t: jax.Array, **kwargs) -> jax.Array:
    """As the wrapped discriminator; ``kwargs`` (e.g. ``update_stats``) are passed on."""
    m = self.pack
    if m == 1:
      return self.inner(x_prev, x_t, t, **kwargs)
    b = x_prev.shape[0]
    if b % m:
      raise ValueError(f'PackedDiscriminator: a batch of {b} cannot be cut into packs of {m}.')

    def packed(x):
      x = x.reshape(b // m, m, *x.shape[1:])
      return jnp.moveaxis(x, 1, -2).reshape(b // m, *x.shape[2:-1], m * x.shape[-1])

    return self.inner(packed(x_prev), packed(x_t), t[::m], **kwargs)


class PerStepGenerator(nn.Module):
  """One set of generator weights per denoising step: ``G_t(x_t, z)``.

  The official DDGAN shares one network over all steps and tells it the step
  through the time embedding. Sharing ties the steps' behaviour together: on
  grid25 a term that makes the middle steps use ``z`` also makes the shared
  last step stochastic. Separate weights untie them but did not make grid25
  hold every seed, so no config uses this (docs/ddgan_steps.md, section 25).
  Works with any body (MLP, U-Net, NCSN++). Here the wrapped body gets a
  leading axis of ``num_steps`` on every parameter (``nn.vmap``); each example
  is computed by every step's weights and keeps the output of its own step
  ``t``, so a call costs ``num_steps`` bodies' arithmetic.

  Attributes:
    body: a generator module ``(x_t, z, t) -> [B, ...]`` (it still sees ``t``).
    num_steps: T; ``t`` must be in ``1..T``.
  """

  body: nn.Module
  num_steps: int

  @nn.compact
  def __call__(self, x_t: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    every_step = nn.vmap(lambda body, x_t, z, t: body(x_t, z, t),
                         variable_axes={'params': 0}, split_rngs={'params': True},
                         in_axes=None, out_axes=0, axis_size=self.num_steps)
    outs = every_step(self.body, x_t, z, t)  # [T, B, ...]
    return outs[t - 1, jnp.arange(x_t.shape[0])]


# ------------------------------------------------------------ parameterisation


class SkipGenerator(nn.Module):
  """``x0_hat = c_skip(t) x_t + c_out(t) body(x_t, z, t)``: a generator built on the linear denoiser.

  For data of per-coordinate variance ``sigma_data²`` and ``x_t = sqrt(ab) x0 +
  sqrt(1 - ab) eps``, ``c_skip = sqrt(ab) sigma_data² / (ab sigma_data² + 1 - ab)``
  is the best linear estimate of ``x0`` from ``x_t`` and ``c_out = sigma_data
  sqrt((1 - ab) / (ab sigma_data² + 1 - ab))`` the standard deviation it leaves
  (the preconditioning of Karras et al. 2022, written for a VP schedule). The
  body then only predicts a unit-scale correction, and a body that ignores
  ``x_t`` no longer gives a generator that ignores it.

  Attributes:
    body: a generator module ``(x_t, z, t) -> [B, ...]``.
    alpha_bars: ``alpha_bar_t`` for ``t = 0..T`` (static floats).
    sigma_data: standard deviation of the (scaled) data per coordinate.

  It creates no layer: the body carries the computation dtype, and the mix of
  ``x_t`` with the body's output is float32 whatever that dtype is (``c_skip
  x_t`` is most of ``x0_hat`` at small ``t``, too close to ``x_t`` for bfloat16).
  """

  body: nn.Module
  alpha_bars: tuple[float, ...]
  sigma_data: float

  @nn.compact
  def __call__(self, x_t: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    ab = jnp.asarray(self.alpha_bars, jnp.float32)[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
    s2 = self.sigma_data ** 2
    denom = ab * s2 + 1.0 - ab
    c_skip = jnp.sqrt(ab) * s2 / denom
    c_out = self.sigma_data * jnp.sqrt((1.0 - ab) / denom)
    body = self.body(x_t, z, t).astype(jnp.float32)
    return c_skip * x_t.astype(jnp.float32) + c_out * body
