"""Generator and discriminator wrappers: any body net, optionally class-conditional.

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
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

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
      or :class:`~trilemma_jax.nets.dcgan.ConvGenerator`).
    out_shape: per-example output shape, e.g. ``(2,)`` or ``(28, 28, 1)``.
    num_classes: number of classes if conditional, else None.
    embed_dim: width of the label embedding concatenated to ``z``.
  """

  body: nn.Module
  out_shape: tuple[int, ...]
  num_classes: int | None = None
  embed_dim: int = 32

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    _check_labels('Generator', self.num_classes, labels)
    if self.num_classes is not None:
      z = jnp.concatenate([z, nn.Embed(self.num_classes, self.embed_dim)(labels)], axis=-1)
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
      ``out_dim=None`` or :class:`~trilemma_jax.nets.dcgan.ConvFeatures`).
    num_classes: number of classes for the projection head, else None.
    spectral_norm: spectrally normalise the head (the trunk has its own flag).
  """

  trunk: nn.Module
  num_classes: int | None = None
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array | None = None, *,
               update_stats: bool = False) -> jax.Array:
    _check_labels('Discriminator', self.num_classes, labels)
    h = self.trunk(x, update_stats=update_stats)
    logits = layers.apply_layer(nn.Dense(1), h, spectral_norm=self.spectral_norm,
                                update_stats=update_stats)[:, 0]
    if self.num_classes is not None:
      embed = nn.Embed(self.num_classes, h.shape[-1],
                       embedding_init=nn.initializers.xavier_uniform())
      e = layers.apply_layer(embed, labels, spectral_norm=self.spectral_norm,
                             update_stats=update_stats)
      logits = logits + jnp.sum(e * h, axis=-1)
    return logits
