"""Checks of user-given values, with one error format for the whole library.

Every check takes the name the user knows the value by (``'config.gan.n_critic'``
or a keyword argument's name) and the value, returns the value when it is
acceptable and raises ``ValueError`` saying what was wrong and what was
expected otherwise. :func:`check_config` applies checks to config keys by
path, so a family validates its whole section in one call.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Collection, Mapping

Check = Callable[[str, Any], Any]


def _fail(name: str, value: Any, expected: str) -> ValueError:
  return ValueError(f'{name} must be {expected}, got {value!r}.')


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
  if not _is_int(value) or value <= 0:
    raise _fail(name, value, 'a positive integer')
  return int(value)


def non_negative_int(name: str, value: Any) -> int:
  if not _is_int(value) or value < 0:
    raise _fail(name, value, 'a non-negative integer')
  return int(value)


def positive(name: str, value: Any) -> float:
  if not _is_real(value) or not value > 0:
    raise _fail(name, value, 'a positive number')
  return float(value)


def non_negative(name: str, value: Any) -> float:
  if not _is_real(value) or not value >= 0:
    raise _fail(name, value, 'a non-negative number')
  return float(value)


def boolean(name: str, value: Any) -> bool:
  if not isinstance(value, bool):
    raise _fail(name, value, 'True or False')
  return value


def one_of(choices: Collection[Any]) -> Check:
  """A check that the value is one of ``choices``."""

  def check(name: str, value: Any) -> Any:
    if value not in choices:
      raise _fail(name, value, f'one of {tuple(choices)}')
    return value

  return check


def in_range(low: float, high: float, *, high_open: bool = False) -> Check:
  """A check that the value is a number in ``[low, high]`` (``[low, high)`` if ``high_open``)."""

  def check(name: str, value: Any) -> float:
    if not _is_real(value) or not low <= value <= high or (high_open and value == high):
      raise _fail(name, value, f'a number in [{low}, {high}{")" if high_open else "]"}')
    return float(value)

  return check


def int_range(low: int, high: int) -> Check:
  """A check that the value is an integer in ``low..high`` (both included)."""

  def check(name: str, value: Any) -> int:
    if not _is_int(value) or not low <= value <= high:
      raise _fail(name, value, f'an integer in {low}..{high}')
    return int(value)

  return check


def tuple_of(item: Check, *, min_length: int = 1) -> Check:
  """A check that the value is a sequence of at least ``min_length`` items passing ``item``."""

  def check(name: str, value: Any) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, '__len__') or (
        len(value) < min_length):
      raise _fail(name, value, f'a tuple of at least {min_length} item(s)')
    return tuple(item(f'{name}[{i}]', v) for i, v in enumerate(value))

  return check


def config_value(config: Any, path: str) -> Any:
  """``config.a.b`` for ``path='a.b'``; a missing key is a ``ValueError`` naming it."""
  node = config
  for part in path.split('.'):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise ValueError(f'config.{path} is missing from the config.') from None
  return node


def check_config(config: Any, checks: Mapping[str, Check]) -> None:
  """Applies ``{path: check}`` to the config; the first failure raises ``ValueError``."""
  for path, check in checks.items():
    check(f'config.{path}', config_value(config, path))
