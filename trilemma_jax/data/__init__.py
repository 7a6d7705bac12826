"""One way to get batches, whatever the source.

>>> from trilemma_jax import data
>>> info = data.load_info('grid25')
>>> it = data.train_iterator(data.get_source('grid25', 'train'),
...                          global_batch_size=256, seed=0)
>>> batch = next(it)  # {'x': float32 [256, 2], 'label': int32 [256]}

Names: ``ring8``, ``grid25``, ``digits``, ``stacked_digits``, ``fashion_mnist``,
``tfds:<name>``, ``npz:<path>`` and names given to :func:`register_array`.
Prepared TFDS data live in ``data_dir``, else ``$TRILEMMA_DATA_DIR``, else
``~/.cache/trilemma_jax/tensorflow_datasets``.
"""

from trilemma_jax.data.catalog import (
    BUILTIN_NAMES,
    get_source,
    kind_of,
    load_arrays,
    load_info,
    prepare,
    register_array,
)
from trilemma_jax.data.info import DatasetInfo, EvalProtocol, resolve_data_dir
from trilemma_jax.data.pipeline import eval_batches, train_iterator
from trilemma_jax.data.sources import ArraySource

__all__ = [
    'ArraySource',
    'BUILTIN_NAMES',
    'DatasetInfo',
    'EvalProtocol',
    'eval_batches',
    'get_source',
    'kind_of',
    'load_arrays',
    'load_info',
    'prepare',
    'register_array',
    'resolve_data_dir',
    'train_iterator',
]
