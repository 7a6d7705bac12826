"""Runs a command on an emulated slower machine: a CPU quota sized to a matmul peak.

Issue 10 sizes the main job for a 2-core machine whose jitted float32 matmul
peaks at about 95 GFLOP/s; the machines at hand peak 2-4x higher. This script
puts a command in a Linux control group whose CPU quota is calibrated so that
:func:`trilemma_jax.benchmark.matmul_peak`, measured inside the group, reads
the target, then times the command there:

  .venv/bin/python experiments/throttled.py --target_gflops 95 --out runs/slow.json -- \\
      bash -c 'bash experiments/setup.sh && .venv/bin/python experiments/trilemma.py \\
      --workdir runs/trilemma_slow'

The quota bounds the CPU time the group gets per scheduler period
(``--period_us``), summed over the cores. Work that keeps every core busy (the
matmul, XLA's multi-threaded kernels) is slowed by the full ratio of the peaks;
single-threaded work (Python, most compiles) less, down to that ratio divided
by the number of cores, since one thread may use the whole quota. So this
emulates a machine with fewer cycles per second, not a slower chip. The JSON
written to ``--out`` (also when the command fails or the script is stopped)
keeps the unthrottled peak, the calibration, the peak in the group after the
command, the wall time and the exit code. Needs root and the cgroup CPU
controller (v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``); nothing else on the
machine should run, since the quota bounds the job's share, not its
neighbours'.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from absl import app, flags

from trilemma_jax import benchmark

_TARGET = flags.DEFINE_float('target_gflops', 95.0,
                             'Matmul peak (GFLOP/s) the quota is calibrated to.')
_TOLERANCE = flags.DEFINE_float('tolerance', 0.05,
                                'Relative distance of the measured peak from the target '
                                'that counts as calibrated.')
_ROUNDS = flags.DEFINE_integer('max_rounds', 4, 'Calibration rounds before giving up.')
_PERIOD = flags.DEFINE_integer('period_us', 10000, 'Scheduler period of the quota (microseconds).')
_ROOT = flags.DEFINE_string('cgroup_root', '/sys/fs/cgroup',
                            'Where the cgroup file system is mounted.')
_NAME = flags.DEFINE_string('cgroup_name', 'trilemma_throttled', 'Name of the control group.')
_OUT = flags.DEFINE_string('out', '', 'JSON with the calibration and the timing.')

_PEAK_REPEATS = flags.DEFINE_integer('peak_repeats', 15,
                                     'Timed matmuls per peak measurement (their median counts).')
_PEAK_CODE = ('import sys; from trilemma_jax import benchmark; '
              'print(benchmark.matmul_peak(repeats=int(sys.argv[1])))')
# Joins the group, then becomes the command (same pid): no Python between fork and exec.
_ENTER = 'echo $$ > "$0" && exec "$@"'


class CgroupError(RuntimeError):
  """The control group could not be made, is in use, or does not throttle."""


class _Stopped(Exception):
  """SIGTERM arrived: stop the command, keep what was measured."""


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
  done = run([sys.executable, '-c', _PEAK_CODE, str(repeats)], capture_output=True, text=True)
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


def _run_command(group: Cgroup, command: Sequence[str]) -> int:
  """Runs ``command`` in the group in a session of its own; stops the session if interrupted."""
  proc = subprocess.Popen(group.wrap(command), start_new_session=True)
  try:
    return proc.wait()
  except BaseException:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
      try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait)
        break
      except (ProcessLookupError, subprocess.TimeoutExpired):
        continue
    raise


def _exit_code(returncode: int) -> int:
  return 128 - returncode if returncode < 0 else returncode  # killed by signal n: 128 + n


def main(argv: Sequence[str]) -> None:
  command = list(argv[1:])
  if command and command[0] == '--':
    command = command[1:]
  if not command:
    raise app.UsageError('give the command to run after --, e.g. -- bash -c "..."')

  def stop(signum, frame):
    raise _Stopped()
  signal.signal(signal.SIGTERM, stop)

  cpus = len(os.sched_getaffinity(0))
  result: dict[str, Any] = {'command': command, 'target_gflops': _TARGET.value, 'cpus': cpus,
                            'cpu': benchmark.cpu_model(),
                            'start': time.strftime('%Y-%m-%d %H:%M:%S')}
  code = 1
  group = None
  try:
    group = Cgroup(_ROOT.value, _NAME.value, _PERIOD.value)
    result.update(cgroup=group.path, cgroup_v2=group.v2, period_us=group.period_us)
    result['peak_without_quota'] = free_peak = measure_peak(subprocess.run, _PEAK_REPEATS.value)
    print(f'matmul peak without a quota: {free_peak:.1f} GFLOP/s', flush=True)
    in_group = lambda: measure_peak(group.run, _PEAK_REPEATS.value)
    quota, result['calibration'] = calibrate(group, _TARGET.value, _TOLERANCE.value, free_peak,
                                             cpus, in_group, max_rounds=_ROUNDS.value)
    result['quota_us'] = quota
    print(f'quota {quota} us per {group.period_us} us on {cpus} cores: matmul peak '
          f'{result["calibration"][-1]["peak_gflops"]:.1f} GFLOP/s', flush=True)
    start = time.perf_counter()
    try:
      result['returncode'] = _run_command(group, command)
    finally:
      result['wall_seconds'] = time.perf_counter() - start
    code = _exit_code(result['returncode'])
    result['peak_after'] = in_group()
    print(f'command exit {result["returncode"]}, {result["wall_seconds"]:.0f} s wall; matmul '
          f'peak in the group after: {result["peak_after"]:.1f} GFLOP/s', flush=True)
  except (CgroupError, _Stopped, KeyboardInterrupt) as e:
    result['error'] = str(e) or type(e).__name__
    print(f'throttled.py: {result["error"]}', file=sys.stderr)
    code = code or 1  # the command's own failure, else the script's
  finally:
    if group is not None:
      group.remove()
    result['end'] = time.strftime('%Y-%m-%d %H:%M:%S')
    if _OUT.value:
      os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
      with open(_OUT.value + '.tmp', 'w') as f:
        json.dump(result, f, indent=2)
      os.replace(_OUT.value + '.tmp', _OUT.value)
  sys.exit(code)


if __name__ == '__main__':
  app.run(main)
