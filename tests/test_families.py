"""The family registry, the one validation pass, and a family added from outside the library."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from trilemma_jax import checkpoints, families, parallel, train
from trilemma_jax.data import load_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')


def test_builtin_families_are_registered_in_one_place():
  assert families.BUILTIN == ('vae', 'gan', 'ddpm', 'ddgan')
  for name in families.BUILTIN:
    family = families.get(name)
    assert family.name == name
    for dataset in ('grid25', 'digits'):
      config = family.get_config(dataset)
      assert config.family == name and config.data.name == dataset
      kind = load_info(dataset).kind
      assert [k for k in ('points', 'image') if k in config.model] == [kind]
      built = families.build(config)
      assert built.name == name and built.samplers


def test_unknown_or_malformed_families_are_clear_errors():
  with pytest.raises(ValueError, match=r"Unknown family 'vea': expected one of \('vae'"):
    families.get('vea')
  with pytest.raises(ValueError, match='defines no FAMILY'):
    families.get('json')
  with pytest.raises(ValueError, match="registers its family as 'vae', not "):
    families.get('trilemma_jax.families.vae')


@pytest.mark.parametrize('family, key, value, message', [
    ('vae', 'vae.likelihood', 'laplace', r"config.vae.likelihood must be one of \('gaussian'"),
    ('gan', 'gan.n_critic', 0, 'config.gan.n_critic must be a positive integer, got 0'),
    ('gan', 'model.points.d_widths', (), r'config.model.points.d_widths must be a tuple'),
    ('ddpm', 'ddpm.ddim_steps', (50, 2000), r'config.ddpm.ddim_steps\[1\] must be an integer '
                                            r'in 1..1000'),
    ('ddgan', 'ddgan.data_scale', 0.0, 'config.ddgan.data_scale must be a positive number'),
    ('ddgan', 'model.latent_dim', 0, 'config.model.latent_dim must be a positive integer'),
    ('ddgan', 'model.points.d_fourier_first_octave', 20,
     r'config.model.points.d_fourier_first_octave must be an integer in -16..16, got 20'),
    ('vae', 'ema.decay', 1.0, r'config.ema.decay must be a number in \[0.0, 1.0\)'),
])
def test_one_validation_pass_names_the_bad_key(family, key, value, message):
  config = families.get_config(family, 'grid25', {key: value})
  with pytest.raises(ValueError, match=message):
    families.build(config)


def test_a_config_must_carry_the_section_of_its_data_kind():
  config = families.get_config('gan', 'digits')
  config.data.name = 'grid25'
  with pytest.raises(ValueError, match=r"'grid25' is points data, so config.model needs the "
                                       r"section model.points .*has \['image'\]"):
    families.build(config)


def test_data_dependent_values_come_from_the_dataset():
  grid = load_info('grid25')
  # Per-coordinate std of the mixture: the spread of the means and of each component.
  assert grid.data_std == pytest.approx(np.sqrt(8.0 + 0.05 ** 2))
  assert load_info('ring8').data_std == pytest.approx(np.sqrt(0.5 + 0.01 ** 2))
  assert load_info('digits').data_std is None
  config = families.get_config('ddgan', 'digits', {'ddgan.skip_generator': True})
  with pytest.raises(ValueError, match='skip_generator=True needs the per-coordinate std'):
    families.build(config)


@pytest.fixture
def toy_on_path(monkeypatch):
  monkeypatch.syspath_prepend(TESTS)
  yield
  for name in [m for m in sys.modules if m == 'toy_family' or m.startswith('toy_family.')]:
    del sys.modules[name]


def test_family_state_carries_and_resumes_its_extra_slot(tmp_path, toy_on_path):
  config = families.get_config('toy_family', 'grid25', {'train.steps': 6, 'train.progress': False,
                                                       'train.checkpoint_every': 3})
  config.data.batch_size = 16
  train.train_and_evaluate(config, str(tmp_path))
  config.train.steps = 10
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.extra['examples_seen']) == 10 * 16
  info = load_info('grid25')
  family = families.build(config, info)
  restored = checkpoints.restore_state(str(tmp_path), family, info,
                                       parallel.make_mesh(jax.devices()[:1]))
  assert int(restored.extra['examples_seen']) == 160


@pytest.mark.slow
def test_a_family_from_outside_the_library_trains_evaluates_and_reports(tmp_path,
                                                                        host_devices_env):
  env = {**host_devices_env, 'PYTHONPATH': TESTS, 'TRILEMMA_CACHE_DIR': str(tmp_path / 'cache')}
  run = tmp_path / 'run'
  script = lambda name: os.path.join(REPO, 'experiments', name)
  subprocess.run([sys.executable, script('train.py'),
                  f'--config={TESTS}/toy_family/config.py:grid25', f'--workdir={run}',
                  '--config.train.steps=30', '--config.train.progress=False'],
                 check=True, env=env, capture_output=True)
  subprocess.run([sys.executable, script('evaluate.py'), f'--workdir={run}'],
                 check=True, env=env, capture_output=True)
  (row,) = json.load(open(run / 'eval.json'))['rows']
  assert (row['family'], row['sampler'], row['train_steps']) == ('toy_family', 'gaussian', 30)
  assert row['modes'] is not None and row['samples_per_second'] > 0
  assert row['nll_bits_per_dim'] is not None

  job = tmp_path / 'job'
  result = subprocess.run([sys.executable, script('trilemma.py'), f'--workdir={job}',
                           '--profile=toy_family.profile:SMOKE'],
                          env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  report_json = json.load(open(job / 'report.json'))
  rows = report_json['rows']
  assert {r['family'] for r in rows} == {'toy_family', 'vae'}
  # Two seeds per setting: one row each, mean and spread over both.
  assert len(report_json['runs']) == 4 and all(r['seeds'] == [0, 1] for r in rows)
  assert all(f'{k}_std' in r for r in rows for k in ('hq_fraction', 'samples_per_second'))
  assert '| grid25 | toy_family | gaussian |' in (job / 'report.md').read_text()
  assert (job / 'trilemma.png').stat().st_size > 10_000

  # --seeds runs the profile on other seeds: here one of the two, reused as it is.
  result = subprocess.run([sys.executable, script('trilemma.py'), f'--workdir={job}',
                           '--profile=toy_family.profile:SMOKE', '--seeds=1'],
                          env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert all(r['seeds'] == [1] for r in json.load(open(job / 'report.json'))['rows'])
  result = subprocess.run([sys.executable, script('trilemma.py'), f'--workdir={job}',
                           '--profile=toy_family.profile:SMOKE', '--seeds=one'],
                          env=env, capture_output=True, text=True)
  assert result.returncode == 1 and '--seeds=one: expected integers' in result.stderr
