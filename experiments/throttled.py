"""Runs a command on an emulated slower machine: a CPU quota sized to a matmul peak.

Issue 10 sizes the main job for a 2-core machine whose jitted float32 matmul
peaks at about 95 GFLOP/s; the machines at hand peak 2-4x higher. This script
puts a command in a Linux control group whose CPU quota is calibrated so that
:func:`trilemma_jax.benchmark.matmul_peak`, measured inside the group, reads
the target, then times the command there:

  .venv/bin/python experiments/throttled.py --target_gflops 95 --out runs/slow.json -- \\
      bash -c 'bash experiments/setup.sh && .venv/bin/python experiments/trilemma.py \\
      --workdir runs/trilemma_slow'

A quota slows a job by letting it run only part of every scheduler period
(``--period_us``), so it emulates a machine with the same caches and memory
per FLOP, not a slower chip; the JSON written to ``--out`` keeps the peaks
measured in the group before and after the command beside the wall time, and
the unthrottled peak. Needs root and the cgroup CPU controller (v1
``cpu.cfs_quota_us`` or v2 ``cpu.max``); nothing else on the machine should be
running, since the quota bounds the job's share but not its neighbours'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable, Sequence

from absl import app, flags

from trilemma_jax import benchmark

_TARGET = flags.DEFINE_float('target_gflops', 95.0,
                             'Matmul peak (GFLOP/s) the quota is calibrated to.')
_TOLERANCE = flags.DEFINE_float('tolerance', 0.05,
                                'Relative distance of the measured peak from the target '
                                'that counts as calibrated.')
_PERIOD = flags.DEFINE_integer('period_us', 10000, 'Scheduler period of the quota (microseconds).')
_ROOT = flags.DEFINE_string('cgroup_root', '/sys/fs/cgroup',
                            'Where the cgroup file system is mounted.')
_NAME = flags.DEFINE_string('cgroup_name', 'trilemma_throttled', 'Name of the control group.')
_OUT = flags.DEFINE_string('out', '', 'JSON with the calibration and the timing.')

_PEAK_CODE = ('from trilemma_jax import benchmark; '
              'print(benchmark.matmul_peak(repeats=15))')
MAX_ROUNDS = 4


class CgroupError(RuntimeError):
  """The control group could not be made or does not throttle."""


class Cgroup:
  """A CPU-quota control group under ``root`` (cgroup v1 or v2 layout)."""

  def __init__(self, root: str, name: str, period_us: int):
    v2 = os.path.exists(os.path.join(root, 'cgroup.controllers'))
    v1_parent = os.path.join(root, 'cpu')
    if v2:
      parent = root
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
      raise CgroupError(f'cannot make the control group {self.path!r} ({e}); '
                        'the script needs root and a writable cgroup file system') from e

  def set_quota(self, quota_us: int) -> None:
    if self.v2:
      self._write('cpu.max', f'{int(quota_us)} {self.period_us}')
    else:
      self._write('cpu.cfs_period_us', str(self.period_us))
      self._write('cpu.cfs_quota_us', str(int(quota_us)))

  def _write(self, name: str, value: str) -> None:
    with open(os.path.join(self.path, name), 'w') as f:
      f.write(value)

  def enter(self) -> None:
    """Moves the calling process into the group (used between fork and exec)."""
    self._write('cgroup.procs', str(os.getpid()))

  def run(self, command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), preexec_fn=self.enter, **kwargs)

  def remove(self) -> None:
    """Removes the group once its processes are gone (a leftover group holds no process)."""
    try:
      os.rmdir(self.path)
    except OSError:
      pass


def quota_for(target: float, peak: float, cpus: int, period_us: int) -> int:
  """Quota (microseconds per period) that scales ``peak`` on ``cpus`` cores to ``target``."""
  if target <= 0 or peak <= 0:
    raise ValueError(f'peaks must be positive, got target {target} and measured {peak}')
  share = min(1.0, target / peak)
  return max(1000, int(round(share * cpus * period_us)))


def measure_peak(run: Callable[..., subprocess.CompletedProcess]) -> float:
  """Matmul peak in GFLOP/s measured by a fresh Python process started through ``run``."""
  done = run([sys.executable, '-c', _PEAK_CODE], capture_output=True, text=True)
  if done.returncode != 0:
    raise CgroupError(f'the peak measurement failed (exit {done.returncode}):\n{done.stderr[-2000:]}')
  return float(done.stdout.strip().splitlines()[-1])


def calibrate(group: Cgroup, target: float, tolerance: float, free_peak: float, cpus: int,
              peak: Callable[[], float]) -> tuple[int, list[dict]]:
  """Finds the quota whose in-group peak is within ``tolerance`` of ``target``.

  ``free_peak`` is the peak without a quota and ``peak()`` measures inside the
  group. The peak is about linear in the quota, so the first quota is the share
  target / free_peak of all cores and each further round rescales the quota by
  target / measured.
  """
  rounds = []
  quota = quota_for(target, free_peak, cpus, group.period_us)
  for _ in range(MAX_ROUNDS):
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


def main(argv: Sequence[str]) -> None:
  command = list(argv[1:])
  if command and command[0] == '--':
    command = command[1:]
  if not command:
    raise app.UsageError('give the command to run after --, e.g. -- bash -c "..."')
  cpus = os.cpu_count() or 1
  group = Cgroup(_ROOT.value, _NAME.value, _PERIOD.value)
  try:
    free_peak = measure_peak(subprocess.run)
    print(f'matmul peak without a quota: {free_peak:.1f} GFLOP/s', flush=True)
    quota, rounds = calibrate(group, _TARGET.value, _TOLERANCE.value, free_peak, cpus,
                              lambda: measure_peak(group.run))
    print(f'quota {quota} us per {group.period_us} us on {cpus} cores: matmul peak '
          f'{rounds[-1]["peak_gflops"]:.1f} GFLOP/s', flush=True)
    start = time.perf_counter()
    done = group.run(command)
    wall = time.perf_counter() - start
    after = measure_peak(group.run)
    print(f'command exit {done.returncode}, {wall:.0f} s wall; matmul peak in the group after: '
          f'{after:.1f} GFLOP/s', flush=True)
  finally:
    group.remove()
  result = {'command': command, 'returncode': done.returncode, 'wall_seconds': wall,
            'target_gflops': _TARGET.value, 'peak_without_quota': free_peak,
            'calibration': rounds, 'quota_us': quota, 'period_us': group.period_us,
            'peak_after': after, 'cpus': cpus, 'cgroup_v2': group.v2,
            'cpu': benchmark.cpu_model(), 'date': time.strftime('%Y-%m-%d %H:%M:%S')}
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, 'w') as f:
      json.dump(result, f, indent=2)
  sys.exit(done.returncode)


if __name__ == '__main__':
  app.run(main)
