"""A small conv classifier whose penultimate layer serves as a feature space.

The evaluation harness cannot download ImageNet Inception weights, so quality
metrics use a classifier trained on the data itself (a "Fréchet LeNet
distance", docs/references.md). The network is LeNet-like and kept plain: no
BatchNorm, so there is no mutable state and ``apply`` is one pure function of
``(params, x)``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype


class Classifier(nn.Module):
  """``x [B, H, W, C] -> (logits [B, num_classes], features [B, feature_dim])``.

  Each stage is ``convs_per_stage`` 3x3 convolutions with ReLU followed by a 2x2
  max-pool, so ``H`` and ``W`` shrink by ``2 ** len(channels)``; then a dense
  ReLU layer of width ``feature_dim`` (the features) and a linear read-out.

  Attributes:
    num_classes: number of labels.
    channels: output channels of each stage, e.g. ``(32, 64)``.
    feature_dim: width of the penultimate (feature) layer.
    convs_per_stage: convolutions before each pooling.
    dropout_rate: dropout on the features during training only.
    dtype: computation dtype (parameters stay float32).
  """

  num_classes: int
  channels: Sequence[int] = (32, 64)
  feature_dim: int = 128
  convs_per_stage: int = 1
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
    h = x
    for width in self.channels:
      for _ in range(self.convs_per_stage):
        h = nn.relu(nn.Conv(width, (3, 3), dtype=self.dtype)(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2), padding='SAME')
    h = h.reshape(h.shape[0], -1)
    features = nn.relu(nn.Dense(self.feature_dim, dtype=self.dtype)(h))
    # The features are returned before dropout: evaluation sees the full layer.
    dropped = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(dropped)
    return logits, features
