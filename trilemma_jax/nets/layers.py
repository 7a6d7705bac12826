"""Small building blocks shared by the nets: activations, spectral norm, group counts.

Every module of the library's nets takes ``dtype``, the dtype of its arithmetic
(``config.model.compute_dtype``), and hands it to each layer and submodule it
creates; parameters are float32 whatever it is (Flax's ``param_dtype`` default),
so bfloat16 gives mixed precision with float32 weights and optimiser state.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'leaky_relu': functools.partial(nn.leaky_relu, negative_slope=0.2),
    'elu': nn.elu,
    'gelu': nn.gelu,
    'silu': nn.silu,
    'tanh': nn.tanh,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation called ``name`` (``leaky_relu`` has slope 0.2, as in DCGAN)."""
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(
        f'Unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}.') from None


def apply_layer(layer: nn.Module, x: jax.Array, *, spectral_norm: bool,
                update_stats: bool) -> jax.Array:
  """``layer(x)``, with the layer's weights spectrally normalised if asked.

  Spectral normalisation (Miyato et al. 2018) divides each weight matrix by a
  power-iteration estimate of its largest singular value. The iteration vector
  lives in the ``'batch_stats'`` collection and only advances when
  ``update_stats`` is True (the caller must then make that collection mutable).
  Biases are left alone. Must be called from inside a compact method.

  The layer's own ``dtype`` sets the precision of its arithmetic; the power
  iteration runs on the float32 weight and stores its vector and sigma as
  float32. ``nn.SpectralNorm`` itself gets no ``dtype``: at init Flax writes the
  normalised weight back as the parameter in that dtype, so a bfloat16 one
  would leave bfloat16 parameters. The layer casts the weight instead.
  """
  if not spectral_norm:
    return layer(x)
  return nn.SpectralNorm(layer)(x, update_stats=update_stats)


def norm_groups(num_groups: int, channels: int) -> int:
  """Groups of a GroupNorm over ``channels``: ``min(num_groups, channels)``, which must divide it."""
  groups = min(num_groups, channels)
  if channels % groups:
    raise ValueError(
        f'GroupNorm with {groups} groups cannot split {channels} channels; choose widths '
        f'that are multiples of model.<kind>.num_groups, or lower it.')
  return groups
