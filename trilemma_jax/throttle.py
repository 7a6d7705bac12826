"""A command on an emulated slower machine: a Linux CPU quota calibrated to a matmul peak.

The pieces of ``experiments/throttled.py``: a control group with a CPU quota
(cgroup v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``; root needed), the matmul
peak measured in a fresh process inside it
(:func:`trilemma_jax.benchmark.matmul_peak`), and the calibration of the quota
to a target peak. The quota bounds the group's CPU time per scheduler period
summed over the cores: work that keeps every core busy slows by the ratio of
the peaks, single-threaded work by less (down to that ratio over the number of
cores). Hand-written: no maintained package does this.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from typing import Callable, Sequence

PEAK_CODE = ('import sys; from trilemma_jax import benchmark; '
             'print(benchmark.matmul_peak(repeats=int(sys.argv[1])))')
# Joins the group, then becomes the command (same pid): no Python between fork and exec.
_ENTER = 'echo $$ > "$0" && exec "$@"'


class CgroupError(RuntimeError):
  """The control group could not be made, is in use, or does not throttle."""


class Cgroup:
  """A CPU-quota control group under ``root`` (cgroup v1 or v2 layout)."""

  def __init__(self, root: str, name: str, period_us: int):
    v2 = os.path.exists(os.path.join(root, 'cgroup.controllers'))
    v1_parent = os.path.join(root, 'cpu')
    if v2:
      parent = root
      with open(os.path.join(root, 'cgroup.controllers')) as f:
        if 'cpu' not in f.read().split():
          raise CgroupError(f'the cgroup v2 hierarchy at {root!r} has no cpu controller '
                            f'(see {root}/cgroup.controllers)')
    elif os.path.exists(os.path.join(v1_parent, 'cpu.cfs_quota_us')):
      parent = v1_parent
    else:
      raise CgroupError(
          f'no cgroup CPU controller under {root!r}: expected {root}/cgroup.controllers '
          f'(cgroup v2) or {v1_parent}/cpu.cfs_quota_us (cgroup v1)')
    self.v2, self.period_us = v2, int(period_us)
    self.path = os.path.join(parent, name)
    try:
      if v2:
        with open(os.path.join(root, 'cgroup.subtree_control'), 'w') as f:
          f.write('+cpu')
      os.makedirs(self.path, exist_ok=True)
    except OSError as e:
      hint = ('; in a container the cgroup root may hold processes, which keeps cgroup v2 '
              'from delegating the cpu controller' if e.errno == errno.EBUSY else '')
      raise CgroupError(f'cannot make the control group {self.path!r}: {e}{hint}') from e
    if self.pids():
      raise CgroupError(f'the control group {self.path!r} still holds processes '
                        f'{self.pids()}: stop them or pass another --cgroup_name')

  def set_quota(self, quota_us: int) -> None:
    if self.v2:
      self._write('cpu.max', f'{int(quota_us)} {self.period_us}')
    else:
      self._write('cpu.cfs_period_us', str(self.period_us))
      self._write('cpu.cfs_quota_us', str(int(quota_us)))

  def _write(self, name: str, value: str) -> None:
    with open(os.path.join(self.path, name), 'w') as f:
      f.write(value)

  def pids(self) -> list[int]:
    """Live processes in the group."""
    try:
      with open(os.path.join(self.path, 'cgroup.procs')) as f:
        pids = [int(p) for p in f.read().split()]
    except OSError:
      return []
    return [p for p in pids if os.path.exists(f'/proc/{p}')]

  def wrap(self, command: Sequence[str]) -> list[str]:
    """``command`` started inside the group."""
    return ['sh', '-c', _ENTER, os.path.join(self.path, 'cgroup.procs'), *command]

  def run(self, command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(self.wrap(command), **kwargs)

  def remove(self) -> None:
    """Removes the group; one that still holds processes is left, with a warning."""
    try:
      os.rmdir(self.path)
    except OSError as e:
      if self.pids():
        print(f'warning: the control group {self.path} still holds processes {self.pids()} '
              f'({e})', file=sys.stderr)


def quota_for(target: float, peak: float, cpus: int, period_us: int) -> int:
  """Quota (microseconds per period) that scales ``peak`` on ``cpus`` cores to ``target``."""
  if target <= 0 or peak <= 0:
    raise ValueError(f'peaks must be positive, got target {target} and measured {peak}')
  share = min(1.0, target / peak)
  return max(1000, int(round(share * cpus * period_us)))


def measure_peak(run: Callable[..., subprocess.CompletedProcess], repeats: int = 15) -> float:
  """Matmul peak in GFLOP/s measured by a fresh Python process started through ``run``."""
  done = run([sys.executable, '-c', PEAK_CODE, str(repeats)], capture_output=True, text=True)
  lines = done.stdout.strip().splitlines()
  if done.returncode != 0 or not lines:
    raise CgroupError(f'the peak measurement failed (exit {done.returncode}):\n'
                      f'{done.stderr[-2000:]}')
  peak = float(lines[-1])
  if not peak > 0:
    raise CgroupError(f'the peak measurement gave {peak} GFLOP/s')
  return peak


def calibrate(group: Cgroup, target: float, tolerance: float, free_peak: float, cpus: int,
              peak: Callable[[], float], max_rounds: int = 4) -> tuple[int, list[dict]]:
  """Finds the quota whose in-group peak is within ``tolerance`` of ``target``.

  ``free_peak`` is the peak without a quota and ``peak()`` measures inside the
  group. The peak is about linear in the quota, so the first quota is the share
  target / free_peak of all cores and each further round rescales the quota by
  target / measured.
  """
  if target > free_peak * (1 + tolerance):
    raise CgroupError(f'the target {target:g} GFLOP/s is above this machine\'s unthrottled '
                      f'matmul peak ({free_peak:.1f}): a quota can only slow it down')
  rounds = []
  quota = quota_for(target, free_peak, cpus, group.period_us)
  for _ in range(max_rounds):
    group.set_quota(quota)
    measured = peak()
    rounds.append({'quota_us': quota, 'period_us': group.period_us, 'peak_gflops': measured})
    if abs(measured - target) <= tolerance * target:
      return quota, rounds
    quota = max(1000, int(round(quota * target / measured)))
    if quota > cpus * group.period_us:
      break
  raise CgroupError(
      f'the quota does not bring the matmul peak to {target:g} GFLOP/s within '
      f'{tolerance:.0%}: measured {[round(r["peak_gflops"], 1) for r in rounds]} GFLOP/s at '
      f'quotas {[r["quota_us"] for r in rounds]} us per {group.period_us} us; is the cgroup '
      f'CPU controller enforcing quotas here, and is the machine otherwise idle?')


def run_command(group: Cgroup, command: Sequence[str]) -> int:
  """Runs ``command`` in the group in a session of its own; stops the session if interrupted."""
  proc = subprocess.Popen(group.wrap(command), start_new_session=True)
  try:
    return proc.wait()
  except BaseException:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
      try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait)
      except ProcessLookupError:  # the session has already ended
        pass
      except subprocess.TimeoutExpired:
        continue  # still running: the next, harder signal
      break
    raise


def exit_code(returncode: int) -> int:
  return 128 - returncode if returncode < 0 else returncode  # killed by signal n: 128 + n
