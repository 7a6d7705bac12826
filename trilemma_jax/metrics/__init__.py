"""Evaluation metrics: quality, coverage and speed.

Feature-space metrics take features ``[N, d]`` from any network (the feature
networks live in ``trilemma_jax.metrics.features``); mode metrics take samples
or predicted labels; speed helpers take a compiled sampler.
"""

from trilemma_jax.metrics.frechet import feature_statistics
from trilemma_jax.metrics.frechet import frechet_distance
from trilemma_jax.metrics.frechet import frechet_distance_from_statistics
from trilemma_jax.metrics.kid import kernel_distance
from trilemma_jax.metrics.manifold import density_coverage
from trilemma_jax.metrics.manifold import nearest_neighbour_radii
from trilemma_jax.metrics.manifold import prdc
from trilemma_jax.metrics.manifold import precision_recall
from trilemma_jax.metrics.modes import label_kl_parts
from trilemma_jax.metrics.modes import label_mode_metrics
from trilemma_jax.metrics.modes import mode_metrics
from trilemma_jax.metrics.speed import time_sampler

__all__ = [
    'density_coverage',
    'feature_statistics',
    'frechet_distance',
    'frechet_distance_from_statistics',
    'kernel_distance',
    'label_kl_parts',
    'label_mode_metrics',
    'mode_metrics',
    'nearest_neighbour_radii',
    'prdc',
    'precision_recall',
    'time_sampler',
]

from trilemma_jax.metrics.features import FEATURE_NET_SPECS
from trilemma_jax.metrics.features import MIN_TEST_ACCURACY
from trilemma_jax.metrics.features import FeatureNet
from trilemma_jax.metrics.features import FeatureNetAccuracyError
from trilemma_jax.metrics.features import FeatureNetSpec
from trilemma_jax.metrics.features import get_feature_net
from trilemma_jax.metrics.features import has_builtin_feature_net
from trilemma_jax.metrics.features import image_quality_metrics

__all__ += [
    'FEATURE_NET_SPECS',
    'FeatureNet',
    'FeatureNetAccuracyError',
    'FeatureNetSpec',
    'MIN_TEST_ACCURACY',
    'get_feature_net',
    'has_builtin_feature_net',
    'image_quality_metrics',
]
