"""A two-process job on loopback: gloo CPU collectives, two forced devices per process.

The job is ``experiments/train.py --distributed`` as a user runs it on two
hosts. It is preempted (SIGTERM to one process), restarted, killed outright
(SIGKILL to both), restarted and run to the end; its final state must equal a
one-process run on four devices with the same global batch.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from trilemma_jax import checkpoints, families, parallel, train
from trilemma_jax import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'experiments', 'train.py')
CONFIG = os.path.join(ROOT, 'trilemma_jax', 'families', 'vae', 'config.py') + ':grid25'
OVERRIDES = {'train.checkpoint_every': 10, 'train.log_every': 10, 'train.progress': False,
             'train.num_samples': 200, 'data.batch_size': 64, 'eval.num_examples': 256}
BIG = 100_000  # steps of the sessions that are stopped from outside
TIMEOUT = 240


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _launch(workdir: str, steps: int, logs: str) -> list[subprocess.Popen]:
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             TRILEMMA_COMPILATION_CACHE='0')
  port = _free_port()
  flags = [f'--config.{k}={v}' for k, v in {**OVERRIDES, 'train.steps': steps}.items()]
  procs = []
  for pid in range(2):
    log = open(os.path.join(logs, f'process_{pid}_{len(os.listdir(logs))}.log'), 'w')
    procs.append(subprocess.Popen(
        [sys.executable, TRAIN, '--config', CONFIG, '--workdir', workdir, *flags,
         '--distributed', f'--coordinator_address=localhost:{port}', '--num_processes=2',
         f'--process_id={pid}'], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
  return procs


def _committed_steps(workdir: str) -> list[int]:
  root = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(root):
    return []
  return sorted(int(d) for d in os.listdir(root)
                if d.isdigit() and os.path.exists(os.path.join(root, d, 'commit_success.txt')))


def _wait_for_checkpoint_after(workdir, step, procs, logs):
  deadline = time.monotonic() + TIMEOUT
  while time.monotonic() < deadline:
    done = _committed_steps(workdir)
    if done and done[-1] > step:
      return done[-1]
    if any(p.poll() is not None for p in procs):
      break
    time.sleep(0.05)
  _kill(procs)
  pytest.fail(f'No checkpoint after step {step} in {workdir}; logs: {_tails(logs)}')


def _wait(procs, logs):
  try:
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
  except subprocess.TimeoutExpired:
    _kill(procs)
    pytest.fail(f'The job did not finish in {TIMEOUT} s; logs: {_tails(logs)}')
  assert codes == [0, 0], _tails(logs)


def _kill(procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
  for p in procs:
    p.wait()


def _tails(logs: str) -> str:
  out = []
  for name in sorted(os.listdir(logs)):
    with open(os.path.join(logs, name)) as f:
      out.append(f'--- {name}\n' + ''.join(f.readlines()[-15:]))
  return '\n'.join(out)


def _final_params(workdir: str, config) -> dict:
  info = data_lib.load_info('grid25')
  family = families.build(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  return jax.tree.map(np.asarray, checkpoints.restore_state(workdir, family, info, mesh).params)


def test_two_processes_survive_preemption_and_a_kill_and_match_one_process(tmp_path):
  work, logs = str(tmp_path / 'two'), str(tmp_path / 'logs')
  os.makedirs(logs)

  # 1. Preempted: SIGTERM reaches one process; both save the same step and exit cleanly.
  procs = _launch(work, BIG, logs)
  _wait_for_checkpoint_after(work, 10, procs, logs)
  procs[1].send_signal(signal.SIGTERM)
  _wait(procs, logs)
  preempted = _committed_steps(work)[-1]
  assert 20 <= preempted < BIG

  # 2. Restarted, then killed outright while training: no save, no clean-up.
  procs = _launch(work, BIG, logs)
  killed_after = _wait_for_checkpoint_after(work, preempted, procs, logs)
  _kill(procs)
  last_good = _committed_steps(work)[-1]
  assert last_good >= killed_after > preempted

  # 3. Restarted from the last good checkpoint and run to the end.
  total = last_good + 20
  _wait(_launch(work, total, logs), logs)
  assert _committed_steps(work)[-1] == total

  with open(os.path.join(work, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  steps = [r['step'] for r in rows if 'loss' in r]
  assert steps == list(range(10, total + 1, 10))  # one writer, one unbroken run
  assert [r['step'] for r in rows if 'test/iwae_nats' in r] == [total]
  assert os.path.exists(os.path.join(work, 'samples', f'step_{total:07d}.png'))

  # The same global batch in one process on four devices, without a break.
  config = families.get_config('vae', 'grid25')
  config.update_from_flattened_dict({**OVERRIDES, 'train.steps': total})
  one = str(tmp_path / 'one')
  train.train_and_evaluate(config, one, devices=jax.devices()[:4])
  two_params, one_params = _final_params(work, config), _final_params(one, config)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               two_params, one_params)


def test_an_explicit_coordinator_needs_the_process_count_and_index():
  with pytest.raises(ValueError, match='num_processes and process_id'):
    parallel.initialize_distributed('localhost:1234')
  with pytest.raises(ValueError, match=r'process_id must be in \[0, 2\)'):
    parallel.initialize_distributed('localhost:1234', 2, 2)


def test_the_train_script_refuses_process_flags_without_distributed(tmp_path):
  out = subprocess.run([sys.executable, TRAIN, '--config', CONFIG, '--workdir', str(tmp_path),
                        '--num_processes=2'], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode != 0
  assert 'need --distributed' in out.stderr
