r"""The main job: every family on the same data, measured on the three corners.

  python experiments/trilemma.py --workdir runs/trilemma [--profile default]

For each dataset, family and seed of the profile (experiments/configs/profiles.py)
it trains (or resumes) a run under DIR/runs/<dataset>/<family>/seed_<s>, evaluates
it (eval.json beside it), and writes

  DIR/report.json   {'profile': ..., 'rows': [...]}: one row per (family, sampler,
                    dataset), mean and <name>_std over the seeds
  DIR/report.md     the same as a table
  DIR/trilemma.png  quality against samples/s, coverage as colour
  DIR/samples/<dataset>_<family>.png  a sample grid (scatter for 2-D data)

Running it again with the same DIR reuses finished runs and evaluations and
resumes unfinished ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time

from absl import app, flags, logging

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, 'configs'))

import profiles  # noqa: E402  (experiments/configs/profiles.py)

from trilemma_jax import config as config_lib  # noqa: E402
from trilemma_jax import data as data_lib  # noqa: E402
from trilemma_jax import evaluation, parallel, report, train  # noqa: E402
from trilemma_jax.families import build_family  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (reused when re-run).')
_PROFILE = flags.DEFINE_enum('profile', 'default', sorted(profiles.PROFILES), 'Profile to run.')
_FAMILIES = flags.DEFINE_list('families', None, 'Subset of the profile\'s families (default all).')
_DATASETS = flags.DEFINE_list('datasets', None, 'Subset of the profile\'s datasets (default all).')
flags.mark_flag_as_required('workdir')


def family_config(family: str, dataset: str, seed: int, overrides: dict):
  """The family's config for ``dataset`` with the profile's overrides and ``seed``."""
  path = os.path.join(_HERE, 'configs', f'{family}.py')
  config = config_lib.load_config_file(f'{path}:{dataset}', overrides)
  config.seed = seed
  config.train.progress = False
  return config


# Keys a re-run may change without invalidating a finished or partial run.
_RESUMABLE_CHANGES = ('train.steps', 'train.log_every', 'train.checkpoint_every',
                      'train.max_to_keep', 'train.progress')


def check_same_setting(config, workdir: str) -> None:
  """Raises if ``workdir`` holds a run of another setting than ``config``.

  A profile edited between two invocations (say, a different ``ddpm.timesteps``)
  must not have its old runs reused or resumed as if they were the new setting;
  only the keys of ``_RESUMABLE_CHANGES`` (e.g. more steps) may differ.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  changes = config_lib.changed_keys(saved, config, may_change=_RESUMABLE_CHANGES)
  if changes:
    raise ValueError(
        f'{workdir} holds a run of another setting ({config_lib.describe_changes(changes)}).'
        ' Use a new --workdir, or delete that run to retrain it.')


def run_one(config, workdir: str, profile: profiles.Profile) -> list[dict]:
  """Trains (or resumes) and evaluates one run; reuses an evaluation of the same step."""
  check_same_setting(config, workdir)
  eval_path = os.path.join(workdir, 'eval.json')
  if os.path.exists(eval_path):
    with open(eval_path) as f:
      rows = json.load(f)['rows']
    if rows and all(r['train_steps'] == config.train.steps for r in rows):
      return rows
  train.train_and_evaluate(config, workdir)
  rows = evaluation.evaluate_run(workdir, num_samples=profile.num_samples,
                                 speed_repeats=profile.speed_repeats)
  evaluation.write_eval(workdir, rows)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  parallel.enable_compilation_cache()
  from tqdm.auto import tqdm

  profile = profiles.get_profile(_PROFILE.value)
  for flag, field in ((_FAMILIES, 'families'), (_DATASETS, 'datasets')):
    if flag.value:
      unknown = sorted(set(flag.value) - set(getattr(profile, field)))
      if unknown:
        raise app.UsageError(f'--{field}: {unknown} not in profile {_PROFILE.value!r} '
                             f'({", ".join(getattr(profile, field))}).')
      profile = dataclasses.replace(profile, **{field: tuple(flag.value)})
  out = _WORKDIR.value
  os.makedirs(out, exist_ok=True)
  jobs = [(d, f, s) for d in profile.datasets for f in profile.families for s in profile.seeds]
  # Configs first: a bad override fails before any training starts.
  configs = {job: family_config(job[1], job[0], job[2], profile.overrides_for(job[1], job[0]))
             for job in jobs}
  for (dataset, family, seed), config in configs.items():
    # Building the family validates its section of the config (cheap: nothing compiles).
    build_family(config, data_lib.load_info(config.data.name, data_dir=config.data.data_dir or None))
  for dataset, family, seed in jobs:
    check_same_setting(configs[(dataset, family, seed)], _run_dir(out, dataset, family, seed))
  per_setting: dict[tuple, list[dict]] = {}
  start = time.perf_counter()
  bar = tqdm(jobs, unit='run', dynamic_ncols=True)
  for dataset, family, seed in bar:
    bar.set_description(f'{family} on {dataset}, seed {seed}')
    workdir = _run_dir(out, dataset, family, seed)
    for row in run_one(configs[(dataset, family, seed)], workdir, profile):
      per_setting.setdefault((row['dataset'], row['family'], row['sampler']), []).append(row)
    if seed == profile.seeds[0]:
      _sample_picture(workdir, out, dataset, family)
  rows = [report.aggregate(v) for v in per_setting.values()]

  with open(os.path.join(out, 'report.json'), 'w') as f:
    json.dump({'profile': _PROFILE.value, 'description': profile.description, 'rows': rows,
               'wall_seconds': time.perf_counter() - start}, f, indent=2)
  table = report.markdown_table(rows)
  with open(os.path.join(out, 'report.md'), 'w') as f:
    f.write(f'# Trilemma report: profile `{_PROFILE.value}`\n\n{profile.description}\n\n')
    f.write(table)
  report.trilemma_figure(rows, os.path.join(out, 'trilemma.png'))
  print(table)
  print(f'wrote {out}/report.json, report.md, trilemma.png')


def _run_dir(out: str, dataset: str, family: str, seed: int) -> str:
  return os.path.join(out, 'runs', dataset.replace(':', '_'), family, f'seed_{seed}')


def _sample_picture(workdir: str, out: str, dataset: str, family: str) -> None:
  """Copies the run's final sample picture to DIR/samples/<dataset>_<family>.png."""
  samples_dir = os.path.join(workdir, 'samples')
  pictures = sorted(p for p in os.listdir(samples_dir) if p.startswith('step_'))
  if pictures:
    os.makedirs(os.path.join(out, 'samples'), exist_ok=True)
    target = os.path.join(out, 'samples', f"{dataset.replace(':', '_')}_{family}.png")
    shutil.copyfile(os.path.join(samples_dir, pictures[-1]), target)


if __name__ == '__main__':
  app.run(main)
