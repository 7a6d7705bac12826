"""The train engine: 1 vs 8 devices, exact resume (also after SIGKILL), SIGTERM, outputs."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from trilemma_jax import checkpoints, families, parallel, train
from trilemma_jax import config as config_lib
from trilemma_jax.config import load_config_file
from trilemma_jax.data import load_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAE_CONFIG = os.path.join(REPO, 'trilemma_jax', 'families', 'vae', 'config.py')


def small_vae_config(steps=12, dataset='ring8'):
  c = families.get_config('vae', dataset)
  if 'points' in c.model:
    c.model.points.hidden = (32, 32)
  else:
    c.model.image.channels = (8,)
    c.model.image.conv_hidden = 32
  c.data.batch_size = 32
  c.train.steps = steps
  c.train.log_every = 4
  c.train.checkpoint_every = 4
  c.train.progress = False
  c.train.num_samples = 16
  c.vae.iwae_samples = 4
  c.eval.num_examples = 64
  return c


def final_params(workdir, config):
  info = load_info(config.data.name)
  family = families.build(config, info)
  state = checkpoints.restore_state(workdir, family, info, jax.sharding.Mesh(
      np.asarray(jax.devices()[:1]), ('data',)))
  return jax.device_get(state)


def test_one_and_eight_devices_give_the_same_parameters(tmp_path):
  assert len(jax.devices()) == 8, 'conftest must force 8 CPU devices'
  config = small_vae_config(steps=8)
  one = train.train_and_evaluate(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  eight = train.train_and_evaluate(config, str(tmp_path / 'eight'), devices=jax.devices())
  np.testing.assert_equal(int(one.step), 8)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
               jax.device_get(one.params), jax.device_get(eight.params))


def test_init_is_replicated_and_agrees_with_the_optimised_program():
  # parallel.jit_init compiles at XLA:CPU optimisation level 0: same values to
  # float rounding as the default-optimised program, state born replicated.
  config = families.get_config('vae', 'digits')
  info = load_info('digits')
  family = families.build(config, info)
  batch = checkpoints.example_batch(info)
  mesh = parallel.make_mesh(jax.devices())
  state = parallel.jit_init(family.init, mesh)(jax.random.PRNGKey(5), batch)
  reference = jax.jit(family.init)(jax.random.PRNGKey(5), batch)
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
  chex.assert_trees_all_close(jax.device_get(state), jax.device_get(reference),
                              rtol=1e-6, atol=1e-7)


def test_batch_not_divisible_by_devices_is_a_clear_error(tmp_path):
  config = small_vae_config()
  config.data.batch_size = 12
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    train.train_and_evaluate(config, str(tmp_path))


def test_config_overrides_are_checked():
  c = load_config_file(f'{VAE_CONFIG}:digits', {'train.steps': 7, 'vae.beta': 0.5})
  assert (c.train.steps, c.vae.beta, c.data.name) == (7, 0.5, 'digits')
  with pytest.raises(ValueError, match="'stpes' is not a key"):
    load_config_file(f'{VAE_CONFIG}:digits', {'train.stpes': 7})
  c = families.get_config('vae', 'digits', {'model.image.channels': (8,)})
  assert tuple(c.model.image.channels) == (8,) and 'points' not in c.model
  with pytest.raises(ValueError, match="'points' is not a key"):
    families.get_config('vae', 'digits', {'model.points.hidden': (8,)})


def test_bad_config_is_rejected_up_front(tmp_path):
  config = small_vae_config()
  config.train.steps = 0
  with pytest.raises(ValueError, match='config.train.steps must be a positive integer'):
    train.train_and_evaluate(config, str(tmp_path))


def test_resume_with_more_steps_is_bit_exact_and_outputs_are_written(tmp_path):
  config = small_vae_config(steps=12, dataset='digits')
  unbroken = train.train_and_evaluate(config, str(tmp_path / 'a'))
  short = small_vae_config(steps=6, dataset='digits')
  train.train_and_evaluate(short, str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(config, str(tmp_path / 'b'))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(unbroken.params),
               jax.device_get(resumed.params))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(unbroken.opt_state),
               jax.device_get(resumed.opt_state))

  workdir = tmp_path / 'b'
  rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  train_steps = [r['step'] for r in rows if 'loss' in r]
  assert train_steps == [4, 6, 8, 12], train_steps  # every logged step once, in order
  test_rows = [r for r in rows if 'test/nll_bits_per_dim' in r]
  assert len(test_rows) == 1 and test_rows[0]['step'] == 12
  assert 0 < test_rows[0]['test/nll_bits_per_dim'] < 10
  assert json.load(open(workdir / 'config.json'))['family'] == 'vae'
  pngs = sorted(os.listdir(workdir / 'samples'))
  assert 'step_0000012.png' in pngs and 'reconstructions_0000012.png' in pngs
  assert any(f.startswith('events') for f in os.listdir(workdir / 'tensorboard'))


def test_a_run_with_a_schedule_over_its_steps_resumes_only_with_those_steps(tmp_path):
  # The DDPM's cosine decay is laid over train.steps: continuing 2 steps as 3 is
  # refused before anything is restored, and the run stays as it was.
  c = families.get_config('ddpm', 'ring8', {
      'model.points.hidden': (16,), 'model.points.time_dim': 8, 'ddpm.timesteps': 10,
      'ddpm.ddim_steps': (2,), 'ddpm.vb_terms': 0, 'optim.warmup_steps': 0,
      'data.batch_size': 16, 'train.steps': 2, 'train.log_every': 2,
      'train.checkpoint_every': 2, 'train.progress': False, 'train.num_samples': 4,
      'eval.num_examples': 16})
  assert c.optim.decay == 'cosine'
  train.train_and_evaluate(c, str(tmp_path))
  saved = json.load(open(tmp_path / 'config.json'))
  c.train.steps = 3
  with pytest.raises(ValueError, match=r"train.steps=2, asked to run to 3.*optim.decay='cosine'"):
    train.train_and_evaluate(c, str(tmp_path))
  assert json.load(open(tmp_path / 'config.json')) == saved
  assert checkpoints.checkpoint_manager(str(tmp_path)).latest_step() == 2


def test_several_steps_per_call_give_the_same_run_and_keep_step_granularity(tmp_path):
  # K steps in one lax.scan: the same bits as K single steps (MLP nets), every
  # logged and checkpointed step still ends a call, and a resume mid-way is exact.
  one = small_vae_config(steps=12)
  one.train.log_every, one.train.checkpoint_every = 5, 6
  single = train.train_and_evaluate(one, str(tmp_path / 'single'))
  four = small_vae_config(steps=12)
  four.train.log_every, four.train.checkpoint_every, four.train.steps_per_dispatch = 5, 6, 4
  scanned = train.train_and_evaluate(four, str(tmp_path / 'scanned'))
  four.train.steps = 7
  train.train_and_evaluate(four, str(tmp_path / 'resumed'))
  four.train.steps = 12
  resumed = train.train_and_evaluate(four, str(tmp_path / 'resumed'))
  for other in (scanned, resumed):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(single.params),
                 jax.device_get(other.params))
  logged = [json.loads(line)['step'] for line in open(tmp_path / 'scanned' / 'metrics.jsonl')
            if 'loss' in line]
  assert logged == [5, 10, 12]
  saved = sorted(int(d) for d in os.listdir(tmp_path / 'scanned' / 'checkpoints') if d.isdigit())
  assert saved == [6, 12]


def test_changed_keys_compares_flattened_configs_outside_the_free_sections():
  config = small_vae_config()
  saved = json.loads(config.to_json_best_effort())
  config.train.steps, config.model.points.hidden, config.vae.beta = 99, (8,), 2.0
  changes = config_lib.changed_keys(saved, config, may_change=('train',))
  assert changes == [('model.points.hidden', [32, 32], [8]), ('vae.beta', 1.0, 2.0)]
  assert config_lib.changed_keys(saved, config, may_change=('train', 'model', 'vae')) == []
  del saved['vae']['min_log_var']  # a key the saved run did not have
  assert ('vae.min_log_var', None, -14.0) in config_lib.changed_keys(saved, config)
  assert config_lib.describe_changes(changes, most=1) == (
      'model.points.hidden: [32, 32] -> [8], ...')


def test_workdir_of_another_run_is_refused(tmp_path):
  train.train_and_evaluate(small_vae_config(steps=4), str(tmp_path))
  other = small_vae_config(steps=8, dataset='grid25')
  with pytest.raises(ValueError, match='data.name'):
    train.train_and_evaluate(other, str(tmp_path))
  wider = small_vae_config(steps=8)
  wider.model.points.hidden = (48, 32)
  wider.optim.lr = 1e-4
  with pytest.raises(ValueError, match=r'model.points.hidden: \[32, 32\] -> \[48, 32\].*'
                                       r'optim.lr.*may change only train, eval'):
    train.train_and_evaluate(wider, str(tmp_path))
  # Training longer, logging and evaluating differently is the same run.
  longer = small_vae_config(steps=8)
  longer.train.log_every, longer.eval.num_examples = 2, 32
  assert int(train.train_and_evaluate(longer, str(tmp_path)).step) == 8


def _cli(workdir, steps, every):
  return [sys.executable, os.path.join(REPO, 'experiments', 'train.py'),
          f'--config={VAE_CONFIG}:ring8', f'--workdir={workdir}',
          f'--config.train.steps={steps}', f'--config.train.checkpoint_every={every}',
          '--config.train.log_every=10', '--config.train.progress=False',
          '--config.data.batch_size=64', '--config.model.points.hidden=(64,64)',
          '--config.vae.iwae_samples=4', '--config.eval.num_examples=64']


def _wait_for_checkpoint(workdir, min_step, proc, timeout=240):
  ckpt = os.path.join(workdir, 'checkpoints')
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.isdir(ckpt):
      steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()]
      if steps and max(steps) >= min_step:
        return max(steps)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.05)
  raise TimeoutError(f'no checkpoint >= {min_step} in {timeout}s')


@pytest.mark.slow
def test_sigkill_then_restart_ends_bit_identical(tmp_path):
  steps, every = 400, 25
  env = dict(os.environ)
  subprocess.run(_cli(tmp_path / 'unbroken', steps, every), check=True, env=env,
                 capture_output=True)
  proc = subprocess.Popen(_cli(tmp_path / 'killed', steps, every), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  _wait_for_checkpoint(tmp_path / 'killed', 50, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  subprocess.run(_cli(tmp_path / 'killed', steps, every), check=True, env=env,
                 capture_output=True)

  config = small_vae_config()
  config.model.points.hidden = (64, 64)
  a = final_params(tmp_path / 'unbroken', config)
  b = final_params(tmp_path / 'killed', config)
  assert int(a.step) == int(b.step) == steps
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  jax.tree.map(np.testing.assert_array_equal, a.ema, b.ema)
  rows = [json.loads(l) for l in open(tmp_path / 'killed' / 'metrics.jsonl')]
  train_logged = [r['step'] for r in rows if 'loss' in r]
  assert train_logged == list(range(10, steps + 1, 10)), 'a step was lost or logged twice'


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  steps, every = 100_000, 50
  proc = subprocess.Popen(_cli(tmp_path, steps, every), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  _wait_for_checkpoint(tmp_path, 50, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err.decode()[-2000:]
  saved = sorted(int(d) for d in os.listdir(tmp_path / 'checkpoints') if d.isdigit())
  assert saved and saved[-1] < steps
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert rows and max(r['step'] for r in rows) <= saved[-1]


def test_preemption_signal_sees_a_sigterm_an_enclosing_one_caught_before():
  """A SIGTERM while a run is set up (the job's handler caught it) stops that run's loop."""
  previous = signal.getsignal(signal.SIGTERM)
  with train.PreemptionSignal() as job:
    os.kill(os.getpid(), signal.SIGTERM)
    assert job.requested(0)
    with train.PreemptionSignal() as run:
      assert run.requested(0)
  with train.PreemptionSignal() as job:
    with train.PreemptionSignal() as run:
      assert not run.requested(0) and not job.requested(0)
  assert signal.getsignal(signal.SIGTERM) is previous


def test_preemption_signal_also_calls_the_handler_installed_before():
  """A SIGTERM in training reaches an outer handler too (the trilemma job stops after the run)."""

  seen = []
  outer = lambda signum, frame: seen.append(signum)
  previous = signal.signal(signal.SIGTERM, outer)
  try:
    with train.PreemptionSignal() as preemption:
      assert not preemption.requested(0)
      os.kill(os.getpid(), signal.SIGTERM)
      assert preemption.requested(1) and seen == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is outer
  finally:
    signal.signal(signal.SIGTERM, previous)
