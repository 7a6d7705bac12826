"""The benchmark's measurements: FLOP counts, a train-step case, a sampler case."""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trilemma_jax import benchmark, families, throttle


def test_flops_of_a_matmul_are_two_n_cubed():
  a = jnp.ones((64, 32))
  b = jnp.ones((32, 16))
  compiled = jax.jit(lambda x, y: x @ y).lower(a, b).compile()
  assert benchmark.flops_of(compiled) == 2 * 64 * 32 * 16


def test_a_train_step_case_reports_speed_flops_and_samplers():
  config = families.get_config('gan', 'grid25', {'data.batch_size': 64})
  row = benchmark.bench_train_step(config, windows=2, steps_per_window=3, peak_gflops=100.0)
  state, family = row.pop('_state'), row.pop('_family')
  assert row['steps_per_second'] > 0
  assert row['examples_per_second'] == pytest.approx(64 * row['steps_per_second'])
  assert row['flops_per_step'] > 0 and row['compile_seconds'] > 0
  assert row['peak_fraction'] == pytest.approx(row['gflops'] / 100.0)
  assert row['params'] == sum(x.size for x in jax.tree.leaves(state.params))
  samplers = benchmark.bench_samplers(family, state, repeats=1)
  assert list(samplers) == ['generator'] and samplers['generator']['samples_per_second'] > 0


def test_cases_follow_the_profile():
  profile = benchmark.profiles.get_profile('default')
  assert len(benchmark.profile_cases(profile)) == len(profile.families) * len(profile.datasets)
  cases = benchmark.profile_cases(profile, ['ddgan', 'vae'], ['digits'])
  assert cases == [('ddgan', 'ddgan', 'digits', profile.overrides_for('ddgan', 'digits')),
                   ('vae', 'vae', 'digits', profile.overrides_for('vae', 'digits'))]
  sweep = benchmark.profiles.get_profile('ddgan_steps')
  assert benchmark.profile_cases(sweep, ['ddgan_T2'], ['grid25']) == [
      ('ddgan_T2', 'ddgan', 'grid25', {**sweep.overrides_for('ddgan', 'grid25'),
                                       'ddgan.num_steps': 2, 'ddgan.energy_weight': 0.0,
                                       'ddgan.time_power': 1.0})]


def test_a_precision_case_compares_float32_and_bfloat16_runs():
  config = families.get_config('ddpm', 'grid25', {
      'data.batch_size': 32, 'model.points.hidden': (16, 16), 'model.points.time_dim': 16,
      'ddpm.timesteps': 10, 'ddpm.ddim_steps': (2,), 'optim.warmup_steps': 1,
      'train.steps': 10})
  row = benchmark.bench_precision(config, steps=3)
  assert row['steps'] == 3 and row['num_samples'] == 2500
  assert row['sampler'] == 'ddim2'  # the fewest network calls of ancestral (10) and ddim2
  f32, bf16 = row['float32'], row['bfloat16']
  assert list(f32['final_losses']) == list(bf16['final_losses']) == ['loss']
  assert row['loss_difference']['loss'] == pytest.approx(
      bf16['final_losses']['loss'] - f32['final_losses']['loss'])
  # Same seed, batches and sampling key: the runs differ by their arithmetic only,
  # which changes the samples by little but not by nothing.
  assert 0 < row['sample_mean_abs_difference'] < 0.1 * row['sample_mean_abs']
  for run in (f32, bf16):
    assert run['steps_per_second'] > 0 and run['compile_seconds'] > 0
    assert run['modes']['max_modes'] == 25
  assert row['speedup'] == pytest.approx(bf16['steps_per_second'] / f32['steps_per_second'])
  with pytest.raises(ValueError, match='steps must be a positive integer, got 0'):
    benchmark.bench_precision(config, steps=0)


def test_windowed_steps_per_second_returns_the_stepped_state_and_a_rate():
  step = jax.jit(lambda state, batch: (state + batch, {'loss': state}))
  batches = [jnp.float32(1.0), jnp.float32(2.0)]
  state, rate = benchmark.windowed_steps_per_second(step, jnp.float32(0.0), batches,
                                                    steps=9, window=3)
  assert float(state) == 1 + 2 + 1 + 2 + 1 + 2 + 1 + 2 + 1  # batches cycled, every step taken
  assert np.isfinite(rate) and rate > 0
  with pytest.raises(ValueError, match='two windows of 3 steps need at least 6'):
    benchmark.windowed_steps_per_second(step, jnp.float32(0.0), batches, steps=5, window=3)


def test_throttled_quota_and_the_group_files_of_both_cgroup_layouts(tmp_path):
  # 95 of 380 GFLOP/s on 2 cores: a quarter of 2 x 10 ms per 10 ms period.
  assert throttle.quota_for(95.0, 380.0, 2, 10000) == 5000
  assert throttle.quota_for(500.0, 380.0, 2, 10000) == 20000  # never above all cores
  with pytest.raises(ValueError, match='positive'):
    throttle.quota_for(95.0, 0.0, 2, 10000)

  with pytest.raises(throttle.CgroupError, match='cpu.cfs_quota_us'):
    throttle.Cgroup(str(tmp_path / 'none'), 'g', 10000)

  v1 = tmp_path / 'v1'
  (v1 / 'cpu').mkdir(parents=True)
  (v1 / 'cpu' / 'cpu.cfs_quota_us').write_text('-1')
  group = throttle.Cgroup(str(v1), 'g', 20000)
  group.set_quota(7000)
  assert (v1 / 'cpu' / 'g' / 'cpu.cfs_period_us').read_text() == '20000'
  assert (v1 / 'cpu' / 'g' / 'cpu.cfs_quota_us').read_text() == '7000'
  done = group.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                   capture_output=True, text=True)
  # The command's process wrote its own pid into the group before it started.
  assert (v1 / 'cpu' / 'g' / 'cgroup.procs').read_text().strip() == done.stdout.strip()
  throttle.Cgroup(str(v1), 'g', 20000)  # the command has exited: the group is free again
  (v1 / 'cpu' / 'g' / 'cgroup.procs').write_text(f'{os.getpid()}\n')
  with pytest.raises(throttle.CgroupError, match='still holds processes'):
    throttle.Cgroup(str(v1), 'g', 20000)

  v2 = tmp_path / 'v2'
  v2.mkdir()
  (v2 / 'cgroup.controllers').write_text('cpu memory')
  group = throttle.Cgroup(str(v2), 'g', 10000)
  group.set_quota(4000)
  assert (v2 / 'cgroup.subtree_control').read_text() == '+cpu'
  assert (v2 / 'g' / 'cpu.max').read_text() == '4000 10000'


def test_throttled_calibration_converges_or_says_the_quota_is_not_enforced(tmp_path):
  (tmp_path / 'cpu').mkdir()
  (tmp_path / 'cpu' / 'cpu.cfs_quota_us').write_text('-1')
  group = throttle.Cgroup(str(tmp_path), 'g', 10000)
  quota_file = tmp_path / 'cpu' / 'g' / 'cpu.cfs_quota_us'
  # A machine whose peak is 85% of linear in its share of the two cores.
  linear = lambda: 0.85 * 400.0 * int(quota_file.read_text()) / 20000
  quota, rounds = throttle.calibrate(group, 95.0, 0.05, 400.0, 2, linear)
  assert [r['quota_us'] for r in rounds] == [4750, 5588]
  assert quota == 5588 and abs(rounds[-1]['peak_gflops'] - 95.0) < 0.05 * 95.0
  with pytest.raises(throttle.CgroupError, match='enforcing quotas'):
    throttle.calibrate(group, 95.0, 0.05, 400.0, 2, lambda: 400.0)
  with pytest.raises(throttle.CgroupError, match='above this machine'):
    throttle.calibrate(group, 500.0, 0.05, 400.0, 2, linear)


def test_throttled_script_writes_its_json_and_passes_the_command_exit_code_on(tmp_path):
  """The script end to end on a fake (non-throttling) group: success and a refused target."""
  import json
  import pathlib
  import subprocess
  script = pathlib.Path(__file__).parents[1] / 'experiments/throttled.py'
  (tmp_path / 'cpu').mkdir()
  (tmp_path / 'cpu' / 'cpu.cfs_quota_us').write_text('-1')
  out = tmp_path / 'out.json'
  base = [sys.executable, str(script), f'--cgroup_root={tmp_path}', '--out', str(out),
          '--peak_repeats=2']
  # Any peak counts as calibrated at this tolerance: one round, then the command.
  done = subprocess.run(base + ['--target_gflops=1', '--tolerance=1e9', '--max_rounds=1', '--',
                                'sh', '-c', 'exit 3'], capture_output=True, text=True)
  assert done.returncode == 3, done.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result['returncode'] == 3 and result['quota_us'] == 1000
  assert len(result['calibration']) == 1 and result['peak_after'] > 0
  assert result['wall_seconds'] > 0 and 'error' not in result
  done = subprocess.run(base + ['--target_gflops=1e9', '--', 'true'], capture_output=True,
                        text=True)
  assert done.returncode == 1
  assert 'above this machine' in done.stderr
  result = json.loads(out.read_text())
  assert 'above this machine' in result['error'] and 'returncode' not in result


@pytest.mark.skipif(os.geteuid() != 0 or not os.access('/sys/fs/cgroup', os.W_OK),
                    reason='needs root and a writable cgroup file system')
def test_throttled_group_really_slows_a_process():
  try:
    group = throttle.Cgroup('/sys/fs/cgroup', f'trilemma_test_{os.getpid()}', 10000)
  except throttle.CgroupError as e:
    pytest.skip(str(e))
  busy = ('import time\nstart = time.process_time()\n'
          'while time.process_time() - start < 0.4: pass\n')
  try:
    group.set_quota(2000)  # a fifth of one core
    start = time.perf_counter()
    group.run([sys.executable, '-c', busy], check=True)
    wall = time.perf_counter() - start
    with open(os.path.join(group.path, 'cpu.stat')) as f:
      stat = dict(line.split() for line in f)
  finally:
    group.remove()
  # 0.4 s of CPU at a fifth of a core takes about 2 s (the interpreter's start-up too),
  # and the scheduler says it held the group back.
  assert wall > 1.2, wall
  assert int(stat['nr_throttled']) > 0, stat
