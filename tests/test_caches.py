"""The cache root shared by the feature networks and JAX's compilation cache."""

import os

import jax

from trilemma_jax import caches, parallel
from trilemma_jax.metrics import features


def test_one_root_for_feature_nets_and_compiled_programs(tmp_path, monkeypatch):
  monkeypatch.setenv('TRILEMMA_CACHE_DIR', str(tmp_path / 'root'))
  assert features.cache_root() == str(tmp_path / 'root' / 'feature_nets')
  assert features.cache_root(str(tmp_path / 'mine')) == str(tmp_path / 'mine')
  monkeypatch.delenv('TRILEMMA_CACHE_DIR')
  assert caches.cache_path('x') == os.path.expanduser(os.path.join('~', '.cache', 'trilemma_jax',
                                                                   'x'))


def test_compilation_cache_follows_the_root_and_can_be_turned_off(tmp_path, monkeypatch):
  before = (jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs)
  try:
    monkeypatch.setenv('TRILEMMA_CACHE_DIR', str(tmp_path))
    monkeypatch.setenv('TRILEMMA_COMPILATION_CACHE', '0')
    assert parallel.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir == before[0]
    monkeypatch.delenv('TRILEMMA_COMPILATION_CACHE')
    path = parallel.enable_compilation_cache(min_compile_seconds=2.0)
    assert path == str(tmp_path / 'jax_compilation') and os.path.isdir(path)
    assert jax.config.jax_compilation_cache_dir == path
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0
  finally:
    jax.config.update('jax_compilation_cache_dir', before[0])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', before[1])


def test_npz_feature_nets_are_keyed_by_file_not_by_sanitised_name(tmp_path):
  import numpy as np
  (tmp_path / 'a').mkdir()
  np.savez(tmp_path / 'a' / 'b.npz', x=np.zeros((10, 2), np.float32))
  np.savez(tmp_path / 'a_b.npz', x=np.zeros((10, 2), np.float32))
  first = features.checkpoint_dir(f'npz:{tmp_path}/a/b.npz', str(tmp_path / 'c'))
  assert first != features.checkpoint_dir(f'npz:{tmp_path}/a_b.npz', str(tmp_path / 'c'))
  assert first == features.checkpoint_dir(f'npz:{tmp_path}/a/b.npz', str(tmp_path / 'c'))
  np.savez(tmp_path / 'a' / 'b.npz', x=np.ones((12, 2), np.float32))  # rewritten in place
  assert first != features.checkpoint_dir(f'npz:{tmp_path}/a/b.npz', str(tmp_path / 'c'))
  assert os.path.basename(first).startswith('npz_b.npz-')
