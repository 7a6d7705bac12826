"""Test set-up: eight forced CPU devices, set before jax is first imported."""

import os

_FLAG = '--xla_force_host_platform_device_count=8'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
