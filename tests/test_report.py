"""Report aggregation, table, figure, corner leaders; evaluation of a run (the main job's quick
profile runs in tests/test_notebooks.py, after the trilemma notebook)."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from trilemma_jax import data, evaluation, families, harness, plotting, profiles, report
from trilemma_jax.evaluation import likelihood, speed


REQUIRED = ('family', 'sampler', 'dataset', 'nfe', 'samples_per_second', 'fd', 'kid',
            'precision', 'recall', 'density', 'coverage', 'modes', 'max_modes', 'hq_fraction',
            'reverse_kl', 'nll_bits_per_dim', 'train_steps', 'train_seconds', 'seeds')
WITH_SPREAD = ('samples_per_second', 'fd', 'kid', 'precision', 'recall', 'density', 'coverage',
               'modes', 'hq_fraction', 'reverse_kl', 'nll_bits_per_dim', 'train_seconds')


def _row(seed, **figures):
  base = {'family': 'gan', 'sampler': 'generator', 'dataset': 'grid25', 'nfe': 1,
          'max_modes': 25, 'train_steps': 100, 'device': 'cpu:cpu', 'seed': seed}
  return {**base, **figures}


def test_aggregate_is_mean_and_population_std_over_seeds():
  rows = [_row(0, modes=20, fd=1.0, reverse_kl=0.5), _row(1, modes=24, fd=3.0,
                                                          reverse_kl=float('nan')),
          _row(2, modes=25, fd=2.0, reverse_kl=0.3)]
  agg = report.aggregate(rows)
  assert agg['modes'] == pytest.approx(23.0)
  assert agg['modes_std'] == pytest.approx(np.std([20, 24, 25]))
  assert agg['fd'] == pytest.approx(2.0) and agg['fd_std'] == pytest.approx(np.sqrt(2 / 3))
  # NaN (no high-quality sample) is left out of the mean and counted.
  assert agg['reverse_kl'] == pytest.approx(0.4)
  assert agg['reverse_kl_undefined_seeds'] == 1
  assert agg['precision'] is None and agg['precision_std'] is None
  assert agg['seeds'] == [0, 1, 2]
  for key in REQUIRED:
    assert key in agg, key


def test_aggregate_refuses_rows_of_different_settings():
  with pytest.raises(ValueError, match='nfe'):
    report.aggregate([_row(0), {**_row(1), 'nfe': 4}])


def test_markdown_table_has_one_line_per_row():
  rows = [report.aggregate([_row(0, modes=20, hq_fraction=0.9)]),
          report.aggregate([{**_row(0, fd=5.0), 'family': 'vae', 'dataset': 'digits',
                             'max_modes': None}])]
  table = report.markdown_table(rows).strip().splitlines()
  assert len(table) == 4
  assert '20 / 25' in table[2] and '90' in table[2]
  assert table[3].startswith('| digits | vae |')


def test_markdown_table_notes_the_kl_split_of_per_channel_labels():
  stacked = dict(dataset='stacked_digits', max_modes=1000)
  rows = [report.aggregate([{**_row(s, modes=990 + s, reverse_kl=0.3 + 0.1 * s, kl_channels=0.1,
                                    kl_dependence=0.2 + 0.1 * s), **stacked} for s in (0, 1)]),
          report.aggregate([_row(0, modes=20, hq_fraction=0.9)])]
  assert rows[0]['kl_dependence'] == pytest.approx(0.25)
  assert rows[0]['kl_dependence_std'] == pytest.approx(0.05)
  table = report.markdown_table(rows)
  note = [line for line in table.splitlines() if 'own imbalance' in line]
  assert note == ['* rev. KL of per-channel labels = the channels\' own imbalance + their '
                  'dependence: stacked_digits gan generator 0.1 + 0.25']


def test_trilemma_figure_is_written(tmp_path):
  rows = [report.aggregate([_row(0, modes=20, hq_fraction=0.9, samples_per_second=1e5)]),
          report.aggregate([{**_row(0, fd=5.0, recall=0.5, samples_per_second=10.0),
                             'family': 'ddpm', 'dataset': 'digits', 'max_modes': None}])]
  path = tmp_path / 'trilemma.png'
  report.trilemma_figure(rows, str(path))
  assert path.stat().st_size > 10_000


def test_trilemma_figure_leaves_pyplots_backend_alone_and_returns_the_figure(tmp_path):
  import matplotlib
  before = matplotlib.get_backend()
  matplotlib.use('svg')  # stands for a notebook's inline backend
  try:
    fig = report.trilemma_figure([_row(0, modes=20, hq_fraction=0.9, samples_per_second=1e5)])
    plotting.save_scatter(np.zeros((3, 2)), str(tmp_path / 'points.png'), means=np.ones((2, 2)))
    assert fig.axes and matplotlib.get_backend() == 'svg'
  finally:
    matplotlib.use(before)
  assert (tmp_path / 'points.png').stat().st_size > 1000


def test_corner_leaders_use_the_figures_axes_per_dataset():
  def row(family, dataset, **figures):
    return {'family': family, 'sampler': family, 'dataset': dataset, 'nfe': 1,
            'max_modes': 25 if dataset == 'grid25' else None, **figures}
  rows = [row('gan', 'grid25', hq_fraction=0.95, modes=20, reverse_kl=0.3,
              samples_per_second=1e6),
          row('ddpm', 'grid25', hq_fraction=0.80, modes=25, reverse_kl=0.01,
              samples_per_second=1e3),
          row('ddgan', 'grid25', hq_fraction=0.90, modes=25, reverse_kl=0.2,
              samples_per_second=1e5),
          row('vae', 'grid25', hq_fraction=float('nan'), modes=None, samples_per_second=None),
          row('gan', 'digits', fd=5.0, recall=0.4, samples_per_second=1e5),
          row('ddpm', 'digits', fd=9.0, recall=0.8, samples_per_second=50.0)]
  leaders = report.corner_leaders(rows)
  pick = {d: {c: r['family'] for c, r in corners.items()} for d, corners in leaders.items()}
  # Modes tie at 25 on grid25: the lower reverse KL (DDPM) leads coverage.
  assert pick == {'grid25': {'quality': 'gan', 'coverage': 'ddpm', 'speed': 'gan'},
                  'digits': {'quality': 'gan', 'coverage': 'ddpm', 'speed': 'gan'}}
  # FD is lower-is-better: a higher FD must not lead.
  rows[4]['fd'] = 20.0
  assert report.corner_leaders(rows)['digits']['quality']['family'] == 'ddpm'
  assert report.corner_leaders([row('vae', 'grid25')]) == {'grid25': {}}
  assert report.corner_keys(rows) == {
      'digits': {'quality': 'fd', 'coverage': 'recall', 'speed': 'samples_per_second'},
      'grid25': {'quality': 'hq_fraction', 'coverage': 'modes', 'speed': 'samples_per_second'}}


def test_training_speed_skips_the_compile_window(tmp_path):
  lines = [{'step': 10, 'steps_per_second': 1.0, 'train_seconds': 10.0},
           {'step': 20, 'steps_per_second': 50.0, 'train_seconds': 10.2},
           {'step': 30, 'steps_per_second': 40.0, 'train_seconds': 10.45},
           {'step': 30, 'test/nll_bits_per_dim': 2.0}]
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in lines)
  assert speed.training_speed(str(tmp_path)) == {'train_steps_per_second': 45.0, 'train_seconds': 10.45}


def test_logged_likelihood_is_the_test_row_of_that_step(tmp_path):
  lines = [{'step': 30, 'test/nll_bits_per_dim': 9.0},  # an earlier session's final step
           {'step': 60, 'loss': 1.0},
           {'step': 60, 'test/nll_bits_per_dim': 2.5, 'test/iwae_nats': 100.0}]
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in lines)
  assert likelihood.logged_likelihood(str(tmp_path), 60) == {'nll_bits_per_dim': 2.5,
                                                             'iwae_nats': 100.0}
  assert likelihood.logged_likelihood(str(tmp_path), 30) == {'nll_bits_per_dim': 9.0}
  assert likelihood.logged_likelihood(str(tmp_path), 45) == {}
  assert likelihood.logged_likelihood(str(tmp_path / 'missing'), 60) == {}


def test_main_job_refuses_a_run_of_another_setting(tmp_path):
  config = harness.family_config('ddpm', 'digits', 0, {'train.steps': 100})
  harness.check_same_setting(config, str(tmp_path))  # no run there yet
  (tmp_path / 'config.json').write_text(config.to_json_best_effort(indent=2))
  more_steps = harness.family_config('ddpm', 'digits', 0, {'train.steps': 300})
  # Its cosine decay is laid over train.steps: a longer run is another run.
  with pytest.raises(ValueError, match=r'train.steps=100, asked to run to 300.*optim.decay'):
    harness.check_same_setting(more_steps, str(tmp_path))
  evaluated_longer = harness.family_config('ddpm', 'digits', 0,
                                          {'train.steps': 100, 'eval.num_examples': 10})
  harness.check_same_setting(evaluated_longer, str(tmp_path))  # the same resume rule as train
  other_t = harness.family_config('ddpm', 'digits', 0, {'ddpm.timesteps': 200})
  with pytest.raises(ValueError, match=r'ddpm.timesteps: 1000 -> 200.*new workdir'):
    harness.check_same_setting(other_t, str(tmp_path))


def test_a_run_extends_its_steps_only_where_no_schedule_is_laid_over_them(tmp_path):
  constant = {'optim.decay': 'constant'}
  config = harness.family_config('ddpm', 'digits', 0, {**constant, 'train.steps': 100})
  (tmp_path / 'config.json').write_text(config.to_json_best_effort(indent=2))
  harness.check_same_setting(
      harness.family_config('ddpm', 'digits', 0, {**constant, 'train.steps': 300}), str(tmp_path))
  # stacked_long at 9,600 steps, asked for 19,200: the cosine decay of both optimisers.
  long = profiles.get_profile('stacked_long').overrides_for('ddgan', 'stacked_digits')
  saved = harness.family_config('ddgan', 'stacked_digits', 0, {**long, 'train.steps': 9600})
  (tmp_path / 'config.json').write_text(saved.to_json_best_effort(indent=2))
  longer = harness.family_config('ddgan', 'stacked_digits', 0, long)
  with pytest.raises(ValueError, match=r'train.steps=9600, asked to run to 19200; but '
                     r'its config lays a schedule over train.steps \(optim.cosine_decay=True\)'
                     r'.*resume with train.steps=9600'):
    harness.check_same_setting(longer, str(tmp_path))
  # A saved config without train.steps (not one of ours) is not compared.
  without_steps = json.loads(saved.to_json_best_effort())
  del without_steps['train']['steps']
  families.check_resumable(without_steps, longer, str(tmp_path))
  # Grid25's R1 path is laid over the steps too; the stacked default has neither.
  assert families.step_schedules(harness.family_config('ddgan', 'grid25', 0, {})) == (
      'ddgan.r1_gamma_start',)
  assert families.step_schedules(harness.family_config('ddgan', 'stacked_digits', 0, {})) == ()
  assert families.step_schedules(harness.family_config('vae', 'digits', 0, {})) == ()


def test_an_evaluation_is_reused_only_for_the_same_settings():
  profile = profiles.PROFILES['quick']
  config = harness.family_config('vae', 'digits', 0, profile.overrides_for('vae', 'digits'))
  settings = harness.eval_settings(config, profile)
  assert settings['train_steps'] == 60 and settings['num_samples'] == profile.num_samples
  for change in ({'train.steps': 61}, {'eval.num_examples': 7}):
    other = harness.family_config('vae', 'digits', 0,
                                  {**profile.overrides_for('vae', 'digits'), **change})
    assert harness.eval_settings(other, profile) != settings, change
  fewer = dataclasses.replace(profile, num_samples=100)
  assert harness.eval_settings(config, fewer) != settings


def test_profile_selection_and_profiles_by_import_path():
  quick = profiles.get_profile('quick')
  assert harness.select(quick, family_names=['gan'], datasets=['digits']).families == ('gan',)
  with pytest.raises(ValueError, match=r"families \['gann'\] are not in the profile"):
    harness.select(quick, family_names=['gann'])
  default = profiles.get_profile('default')
  assert default.seeds == (0,)
  three = harness.select(default, seeds=[0, 1, 2])
  assert three.seeds == (0, 1, 2) and three.description.endswith('(run on seeds 0, 1, 2)')
  assert harness.select(default, seeds=[4, 3]).seeds == (4, 3)
  assert harness.select(default, seeds=None) == default
  for bad in ([0, 0], [-1], [1.5]):
    with pytest.raises(ValueError, match='must be distinct non-negative integers'):
      harness.select(default, seeds=bad)
  with pytest.raises(ValueError, match='cannot be loaded'):
    profiles.get_profile('trilemma_jax.profiles:NO_SUCH_PROFILE')
  with pytest.raises(ValueError, match='is a dict, not a trilemma_jax Profile'):
    profiles.get_profile('trilemma_jax.profiles:PROFILES')
  with pytest.raises(ValueError, match='Unknown profile'):
    profiles.get_profile('defualt')


def test_variants_of_a_family_train_apart_and_report_as_their_own_rows(tmp_path):
  tiny = {'train.steps': 20, 'train.log_every': 10, 'train.checkpoint_every': 20,
          'eval.num_examples': 64}
  profile = profiles.Profile(
      datasets=('grid25',), families=('vae', 'vae_z1'), seeds=(0,),
      overrides={('vae', '*'): tiny, ('vae_z1', 'grid25'): {'train.log_every': 5}},
      variants={'vae_z1': ('vae', {'model.latent_dim': 1})}, num_samples=300, speed_repeats=1)
  assert profile.family_of('vae_z1') == 'vae' and profile.family_of('vae') == 'vae'
  assert profile.overrides_for('vae_z1', 'grid25') == {**tiny, 'model.latent_dim': 1,
                                                       'train.log_every': 5}
  result = harness.run_profile(profile, str(tmp_path), progress=False)
  rows = {(r['family'], r['variant']): r for r in result['rows']}
  assert set(rows) == {('vae', None), ('vae', 'vae_z1')}  # same sampler, two rows
  saved = json.load(open(tmp_path / 'runs' / 'grid25' / 'vae_z1' / 'seed_0' / 'config.json'))
  assert saved['model']['latent_dim'] == 1 and saved['family'] == 'vae'
  report_md = (tmp_path / 'report.md').read_text()
  assert '| grid25 | vae_z1 | prior |' in report_md
  # The published grid figures follow the project's own rows, in the JSON too.
  assert report_md.index('| grid25 | vae_z1 |') < report_md.index(
      '| grid25 | PacGAN4 | 24.8 / 25 | 93.6 | 0.04 | Lin et al. 2018 (PacGAN) |')
  assert {r['method'] for r in result['published']} == {'GAN', 'PacGAN4', 'VEEGAN'}


def test_the_coverage_profile_gives_ring8_and_stacked_digits_the_default_budgets():
  default, coverage = profiles.get_profile('default'), profiles.get_profile('coverage')
  assert coverage.datasets == ('ring8', 'stacked_digits') and coverage.seeds == (0, 1, 2)
  assert set(coverage.families) == {'vae', 'gan', 'ddpm', 'ddgan'}
  for family in coverage.families:
    assert coverage.overrides_for(family, 'ring8') == default.overrides_for(family, 'grid25')
    stacked = dict(coverage.overrides_for(family, 'stacked_digits'))
    if family == 'ddpm':  # its 26,000 stacked samples are drawn with DDIM only
      assert stacked.pop('ddpm.ancestral') is False
      assert stacked.pop('ddpm.ddim_steps') == (50, 4)
      config = harness.family_config(family, 'stacked_digits', 0,
                                     coverage.overrides_for(family, 'stacked_digits'))
      info = data.load_info('stacked_digits')
      assert list(families.build(config, info).samplers) == ['ddim50', 'ddim4']
    assert stacked == default.overrides_for(family, 'digits')


def test_the_stacked_long_profile_runs_the_recipe_sections_38_40_measured():
  """The runs of docs/ddgan_steps.md sections 38-40 at 19,200 steps: the stacked default
  with R1 0.02 every 15, the official grid and cosine decay; energy score and maps kept."""
  long = profiles.get_profile('stacked_long')
  assert (long.datasets, long.families, long.seeds) == (('stacked_digits',), ('ddgan',), (0, 1, 2))
  config = harness.family_config('ddgan', 'stacked_digits', 0,
                                 long.overrides_for('ddgan', 'stacked_digits'))
  assert config.train.steps == 19200 and config.optim.cosine_decay
  assert (config.ddgan.r1_gamma, config.ddgan.r1_every, config.ddgan.time_power) == (0.02, 15, 1.0)
  assert (config.ddgan.energy_weight, config.model.image.noise_channels) == (0.3, 3)
  # The same config as the investigation profile's entry that measured it, and at
  # 9,600 steps the same as section 35's.
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).parents[1] / 'experiments/investigations/ddgan_profiles.py'
  spec = importlib.util.spec_from_file_location('ddgan_profiles_for_stacked_long', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  measured = module.STACKED_19200.overrides_for('ddgan_19200_energy0_3_noise3', 'stacked_digits')
  assert config == harness.family_config('ddgan', 'stacked_digits', 0, measured)
  shorter = module.STACKED_8X_STEPS.overrides_for('ddgan_9600_energy0_3_noise3', 'stacked_digits')
  assert harness.family_config('ddgan', 'stacked_digits', 0,
                               {**long.overrides_for('ddgan', 'stacked_digits'),
                                'train.steps': 9600}) == \
      harness.family_config('ddgan', 'stacked_digits', 0, shorter)
  # Both reports name the steps their stacked DDGAN trains, and the coverage report,
  # whose DDGAN is short of issue 11's stacked KL, points at the long profile.
  coverage = profiles.get_profile('coverage')
  short = harness.family_config('ddgan', 'stacked_digits', 0,
                                coverage.overrides_for('ddgan', 'stacked_digits'))
  assert f'DDGAN at {short.train.steps:,} steps' in coverage.description
  assert 'profile stacked_long' in coverage.description
  assert f'DDGAN at {config.train.steps:,} steps' in long.description


def test_the_t_sweep_runs_each_grid25_t_as_it_was_measured():
  """Grid25's default is T = 4 on the p = 1.5 grid with the energy score; T = 8 ran
  the score on the official grid, T = 1 and 2 neither (docs/ddgan_steps.md, section 31)."""
  sweep = profiles.get_profile('ddgan_steps')
  for t in (1, 2, 4, 8):
    grid25 = harness.family_config('ddgan', 'grid25', 0, sweep.overrides_for(f'ddgan_T{t}', 'grid25'))
    digits = harness.family_config('ddgan', 'digits', 0, sweep.overrides_for(f'ddgan_T{t}', 'digits'))
    assert grid25.ddgan.num_steps == digits.ddgan.num_steps == t
    assert grid25.ddgan.energy_weight == (0.3 if t >= 4 else 0.0), t
    assert grid25.ddgan.time_power == (1.5 if t == 4 else 1.0), t
    assert digits.ddgan.energy_weight == 0.0 and digits.ddgan.time_power == 1.0
    # The rest of grid25's recipe (R1 path, D's octaves) runs at every T.
    assert grid25.ddgan.r1_gamma_start == 3.0 and grid25.model.points.d_fourier_first_octave == -3
  assert harness.family_config('ddgan', 'grid25', 0, sweep.overrides_for('ddgan_T4', 'grid25')) \
      == harness.family_config('ddgan', 'grid25', 0, profiles.get_profile('default').overrides_for(
          'ddgan', 'grid25'))


def test_published_figures_are_shown_for_the_benchmarks_that_have_them():
  table = report.published_table(['digits', 'stacked_digits', 'ring8'])
  lines = table.strip().splitlines()
  assert lines[0].startswith('| dataset | method | modes | %HQ | rev. KL')
  assert [line.split(' | ')[:2] for line in lines[2:]] == [
      ['| stacked_digits', 'DDGAN (StackedMNIST, 28x28)'], ['| ring8', 'GAN'],
      ['| ring8', 'PacGAN2']]
  assert '| stacked_digits | DDGAN (StackedMNIST, 28x28) | 1000 / 1000 | – | 0.071 |' in table
  assert report.published_table(['digits', 'fashion_mnist']) == ''
  # A figure the source does not give is a dash, not a zero.
  assert '| grid25 | VEEGAN | 24.6 / 25 | 40 | – |' in report.published_table(['grid25'])
  assert report.published_rows(['ring8'])[1] == {
      'dataset': 'ring8', 'method': 'PacGAN2', 'modes': 7.9, 'max_modes': 8,
      'hq_fraction': 0.956, 'reverse_kl': 0.07, 'source': 'Lin et al. 2018 (PacGAN)'}


def _tiny_vae_run(tmp_path, dataset):
  from trilemma_jax import train
  config = families.get_config('vae', dataset)
  config.model.image.channels, config.model.image.conv_hidden = (8,), 16
  config.model.latent_dim = 4
  config.data.batch_size = 32
  config.train.steps, config.train.log_every, config.train.checkpoint_every = 4, 2, 4
  config.train.progress, config.train.num_samples = False, 16
  config.vae.iwae_samples, config.eval.num_examples = 2, 64
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  return workdir


def test_labelled_npz_images_are_scored_with_a_feature_spec_and_skipped_without(tmp_path):
  x, y = data.load_arrays('digits', 'train')
  x_test, y_test = data.load_arrays('digits', 'test')
  as_uint8 = lambda a: np.round((a + 1.0) * 127.5).astype(np.uint8)
  np.savez(tmp_path / 'mine.npz', x=as_uint8(x), label=y, x_test=as_uint8(x_test),
           label_test=y_test)
  workdir = _tiny_vae_run(tmp_path, f'npz:{tmp_path}/mine.npz')
  cache = str(tmp_path / 'cache')
  run = evaluation.restore_run(workdir)
  assert (run.config.family, run.info.name, int(run.state.step)) == (
      'vae', f'npz:{tmp_path}/mine.npz', 4)
  with pytest.raises(FileNotFoundError, match='is not a trilemma_jax run'):
    evaluation.restore_run(str(tmp_path))

  rows = evaluation.evaluate_run(workdir, num_samples=200, speed_repeats=1,
                                 feature_cache_dir=cache)
  assert [r['fd'] for r in rows] == [None] and 'no feature network' in rows[0]['quality_skipped']
  assert rows[0]['samples_per_second'] > 0 and rows[0]['nll_bits_per_dim'] is not None
  table = report.markdown_table([report.aggregate(rows)])
  assert "\n* no feature network for 'npz:" in table

  spec = evaluation.feature_spec_for_run(workdir, 0.8)
  assert spec.image_shape == (8, 8, 1) and spec.num_classes == 10
  rows = evaluation.evaluate_run(workdir, num_samples=200, speed_repeats=1,
                                 feature_cache_dir=cache, feature_spec=spec)
  assert math.isfinite(rows[0]['fd']) and rows[0]['feature_net_accuracy'] >= 0.8
  assert 'quality_skipped' not in rows[0]
  with pytest.raises(ValueError, match=r'min_accuracy in \[0, 1\], got 10 and 80.0'):
    evaluation.feature_spec_for_run(workdir, 80.0)
  # A dataset with its own network keeps it: a user spec would replace it in the cache.
  config = json.load(open(os.path.join(workdir, 'config.json')))
  config['data']['name'] = 'digits'
  os.makedirs(tmp_path / 'digits_run')
  json.dump(config, open(tmp_path / 'digits_run' / 'config.json', 'w'))
  with pytest.raises(ValueError, match="'digits' has a built-in feature network"):
    evaluation.feature_spec_for_run(str(tmp_path / 'digits_run'), 0.5)


def test_diverged_seeds_are_counted_not_hidden():
  rows = [_row(0, fd=2.0), {**_row(1), 'diverged': True}, _row(2, fd=4.0)]
  agg = report.aggregate(rows)
  assert agg['fd'] == pytest.approx(3.0) and agg['diverged_seeds'] == [1]
  assert '| 3 (1 diverged) |' in report.markdown_table([agg])


def _gan_grid25_profile(seeds, steps, log_every, checkpoint_every):
  return profiles.Profile(
      datasets=('grid25',), families=('gan',), seeds=seeds,
      overrides={('gan', '*'): {'train.steps': steps, 'train.log_every': log_every,
                                'train.checkpoint_every': checkpoint_every}},
      num_samples=300, speed_repeats=1)


def _sigterm_first(fn):
  """``fn`` that sends this process a SIGTERM before it runs."""
  import signal

  def wrapped(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return fn(*args, **kwargs)

  return wrapped


def test_a_stopped_run_is_saved_not_evaluated_and_the_job_resumes_it(tmp_path, monkeypatch):
  """SIGTERM during a run's training stops the job; the next job resumes that run."""
  from trilemma_jax import train
  profile = _gan_grid25_profile((0,), steps=12, log_every=4, checkpoint_every=100)
  config = harness.family_config('gan', 'grid25', 0, profile.overrides_for('gan', 'grid25'))
  workdir = harness.run_dir(str(tmp_path), 'grid25', 'gan', 0)
  # What the loop sees when SIGTERM arrives after step 5.
  monkeypatch.setattr(train.PreemptionSignal, 'requested', lambda self, step: step >= 5)
  with pytest.raises(harness.Stopped, match=r'stopped at step 5 of 12 \(SIGTERM\)'):
    harness.run_profile(profile, str(tmp_path), progress=False)
  assert not os.path.exists(os.path.join(workdir, 'eval.json'))
  assert not os.path.exists(tmp_path / 'report.json')
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['5']
  monkeypatch.undo()
  result = harness.run_profile(profile, str(tmp_path), progress=False)
  (row,) = result['rows']
  assert row['train_steps'] == 12
  # An evaluation of an unfinished run (as an earlier version of the job wrote
  # them) is not reused: the run is evaluated again at its full length.
  saved = json.load(open(os.path.join(workdir, 'eval.json')))
  saved['rows'][0]['train_steps'] = 5
  saved['rows'][0]['fd'] = -1.0
  evaluation.write_eval(workdir, saved['rows'], saved['settings'], saved['timing'])
  rows, _ = harness.run_one(config, workdir, profile)
  assert rows[0]['train_steps'] == 12 and rows[0]['fd'] >= 0


def test_sigterm_while_a_run_is_set_up_stops_it_after_its_first_step(tmp_path, monkeypatch):
  """A SIGTERM before the train loop (state built, step compiled) is not lost in the run."""
  from trilemma_jax import train
  profile = _gan_grid25_profile((0,), steps=12, log_every=4, checkpoint_every=100)
  monkeypatch.setattr(train, '_StepsFunction', _sigterm_first(train._StepsFunction))
  with pytest.raises(harness.Stopped, match=r'stopped at step 1 of 12 \(SIGTERM\)'):
    harness.run_profile(profile, str(tmp_path), progress=False)
  workdir = harness.run_dir(str(tmp_path), 'grid25', 'gan', 0)
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['1']


def test_sigterm_outside_training_stops_the_job_after_that_run(tmp_path, monkeypatch):
  """A SIGTERM while a run is evaluated: that run is finished, the next one does not start."""
  import signal
  profile = _gan_grid25_profile((0, 1), steps=4, log_every=2, checkpoint_every=4)
  monkeypatch.setattr(evaluation, 'evaluate_run', _sigterm_first(evaluation.evaluate_run))
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(harness.Stopped, match='before grid25/gan/seed_1'):
    harness.run_profile(profile, str(tmp_path), progress=False)
  assert signal.getsignal(signal.SIGTERM) == before  # the job's handler is gone again
  assert os.path.exists(harness.run_dir(str(tmp_path), 'grid25', 'gan', 0) + '/eval.json')
  assert not os.path.exists(harness.run_dir(str(tmp_path), 'grid25', 'gan', 1))
  assert not os.path.exists(tmp_path / 'report.json')
