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

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Sequence

from absl import app, flags

from trilemma_jax import benchmark
from trilemma_jax.throttle import (Cgroup, CgroupError, calibrate, exit_code, measure_peak,
                                   run_command)

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


class _Stopped(Exception):
  """SIGTERM arrived: stop the command, keep what was measured."""


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
      result['returncode'] = run_command(group, command)
    finally:
      result['wall_seconds'] = time.perf_counter() - start
    code = exit_code(result['returncode'])
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
