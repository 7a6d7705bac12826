"""Self-attention over the pixels of a feature map (the U-Nets' attention block)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from trilemma_jax.nets import layers

# Glorot-uniform ("fan_avg") projections and a zero output projection, so the
# block starts as the identity (Ho et al. and NCSN++ initialise it this way).
_default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
_zero_init = nn.initializers.zeros


class AttnBlock(nn.Module):
  """Single-head self-attention over all pixels, residual.

  The logits and their softmax are float32 under any ``dtype``: a bfloat16
  softmax over many pixels loses the small weights and its sum drifts from 1.

  Attributes:
    num_groups: groups of the input GroupNorm (at most; see ``layers.norm_groups``).
    rescale: return ``(x + h) / sqrt(2)`` instead of ``x + h`` (NCSN++'s
      ``skip_rescale``, which keeps the variance of the sum at that of ``x``).
    dtype: computation dtype (parameters stay float32).
  """

  num_groups: int
  rescale: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, hgt, wid, c = x.shape
    dense = lambda name, init=_default_init: nn.Dense(c, kernel_init=init, dtype=self.dtype,
                                                      name=name)
    # Flax computes the group statistics in float32 at least, whatever dtype is.
    h = nn.GroupNorm(num_groups=layers.norm_groups(self.num_groups, c), epsilon=1e-6,
                     dtype=self.dtype, name='norm')(x)
    q = dense('q')(h).reshape(b, hgt * wid, c)
    k = dense('k')(h).reshape(b, hgt * wid, c)
    v = dense('v')(h).reshape(b, hgt * wid, c)
    logits = jnp.einsum('bic,bjc->bij', q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits * c ** -0.5, axis=-1).astype(self.dtype)
    h = jnp.einsum('bij,bjc->bic', weights, v).reshape(b, hgt, wid, c)
    out = x + dense('proj_out', _zero_init)(h)
    return out / math.sqrt(2.0) if self.rescale else out
