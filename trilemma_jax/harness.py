"""The trilemma job: every family of a profile on the same data, measured side by side.

``run_profile(profile, workdir)`` trains (or resumes) one run per dataset, family
and seed under ``workdir/runs/<dataset>/<family>/seed_<s>``, evaluates it
(``eval.json`` beside it) and writes

* ``workdir/report.json``: ``{'profile', 'description', 'rows', 'published',
  'wall_seconds', 'runs'}``, one row per (family, sampler, dataset) with the
  mean and ``<name>_std`` over the seeds, the published figures on the
  profile's datasets (:data:`trilemma_jax.report.PUBLISHED`), and per run the
  wall seconds of its training and its evaluation;
* ``workdir/report.md``: the rows as a table, then the published figures;
* ``workdir/trilemma.png``: quality against samples/s, coverage as colour;
* ``workdir/samples/<dataset>_<family>.png``: the first seed's sample picture.

Running it again on the same ``workdir`` reuses finished evaluations and resumes
unfinished runs; a run of other settings than the profile's is refused (the
resume rule of :data:`trilemma_jax.config.RESUMABLE`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Sequence

import ml_collections

from trilemma_jax import data as data_lib
from trilemma_jax import evaluation, families, parallel, report, train
from trilemma_jax.profiles import Profile


class Stopped(Exception):
  """SIGTERM stopped the job: the run in training is saved there and not evaluated."""


def family_config(family: str, dataset: str, seed: int,
                  overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """The family's config for ``dataset`` with the profile's overrides and ``seed``."""
  config = families.get_config(family, dataset, overrides)
  config.seed = seed
  config.train.progress = False
  return config


def run_dir(out: str, dataset: str, family: str, seed: int) -> str:
  return os.path.join(out, 'runs', dataset.replace(':', '_'), family, f'seed_{seed}')


def check_same_setting(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises if ``workdir`` holds a run that ``config`` may not continue."""
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path):
    with open(path) as f:
      families.check_resumable(json.load(f), config, workdir)


def eval_settings(config: ml_collections.ConfigDict, profile: Profile) -> dict[str, Any]:
  """What an ``eval.json`` depends on beyond the trained weights: reused only if equal."""
  eval_section = config.get('eval')
  return {'train_steps': config.train.steps, 'num_samples': profile.num_samples,
          'speed_repeats': profile.speed_repeats,
          'eval': eval_section.to_dict() if eval_section is not None else None}


def run_one(config: ml_collections.ConfigDict, workdir: str,
            profile: Profile) -> tuple[list[dict[str, Any]], dict[str, float]]:
  """Trains (or resumes) and evaluates one run; reuses an evaluation of the same settings.

  Returns:
    The run's rows, and the wall seconds of its phases: ``train`` (training,
    compile and the final outputs included) and ``evaluation`` (as measured
    when the evaluation was made).

  Raises:
    Stopped: training was stopped by SIGTERM before ``config.train.steps``; the
      run is checkpointed and resumes when the job is run again.
  """
  check_same_setting(config, workdir)
  settings = eval_settings(config, profile)
  eval_path = os.path.join(workdir, 'eval.json')
  if os.path.exists(eval_path):
    with open(eval_path) as f:
      saved = json.load(f)
    # The rows' own step count guards against an evaluation of an unfinished run
    # (written by a job of an earlier version that evaluated a stopped run).
    if (saved.get('settings') == json.loads(json.dumps(settings)) and saved['rows'] and
        all(r.get('train_steps') == config.train.steps for r in saved['rows'])):
      return saved['rows'], saved.get('timing', {})
  start = time.perf_counter()
  state = train.train_and_evaluate(config, workdir)
  trained = time.perf_counter()
  step = int(parallel.to_numpy(state.step))
  if step < config.train.steps:
    raise Stopped(f'{workdir} stopped at step {step} of {config.train.steps} (SIGTERM) and is '
                  'saved there; run the same command again to resume it.')
  rows = evaluation.evaluate_run(workdir, num_samples=profile.num_samples,
                                 speed_repeats=profile.speed_repeats)
  timing = {'train': trained - start, 'evaluation': time.perf_counter() - trained}
  evaluation.write_eval(workdir, rows, settings, timing)
  return rows, timing


def select(profile: Profile, *, family_names: Sequence[str] | None = None,
           datasets: Sequence[str] | None = None,
           seeds: Sequence[int] | None = None) -> Profile:
  """The profile restricted to some of its families and datasets, and run on ``seeds``.

  ``seeds`` replaces the profile's seeds: any distinct non-negative integers,
  fewer for a quicker look or more for mean ± std over seeds (the default
  profile runs one seed; ``(0, 1, 2)`` takes about three times as long); the
  description says so.
  """
  for chosen, field in ((family_names, 'families'), (datasets, 'datasets')):
    if chosen:
      unknown = sorted(set(chosen) - set(getattr(profile, field)))
      if unknown:
        raise ValueError(f'{field} {unknown} are not in the profile ({", ".join(getattr(profile, field))}).')
      profile = dataclasses.replace(profile, **{field: tuple(chosen)})
  if seeds:
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad or len(set(seeds)) != len(seeds):
      raise ValueError(f'seeds {list(seeds)} must be distinct non-negative integers, e.g. 0 or '
                       '0,1,2.')
    profile = dataclasses.replace(
        profile, seeds=tuple(seeds),
        description=f'{profile.description} (run on seeds {", ".join(map(str, seeds))})'
        if profile.description else '')
  return profile


def run_profile(profile: Profile, out: str, *, name: str = '',
                progress: bool = True) -> dict[str, Any]:
  """Runs every (dataset, family, seed) of ``profile`` under ``out`` and writes the report.

  Every config is built and validated, and every existing run checked against
  it, before anything trains: a bad override or a stale run fails at once.

  Returns:
    The contents of ``report.json``.
  """
  os.makedirs(out, exist_ok=True)
  jobs = [(d, f, s) for d in profile.datasets for f in profile.families for s in profile.seeds]
  configs = {job: family_config(profile.family_of(job[1]), job[0], job[2],
                                profile.overrides_for(job[1], job[0])) for job in jobs}
  for (dataset, family, seed), config in configs.items():
    families.validate(config, data_lib.load_info(dataset, data_dir=config.data.data_dir or None))
    check_same_setting(config, run_dir(out, dataset, family, seed))

  per_setting: dict[tuple, list[dict]] = {}
  runs = []
  start = time.perf_counter()
  bar = jobs
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(jobs, unit='run', dynamic_ncols=True)
  # The train loop's own SIGTERM handler calls this one too (PreemptionSignal
  # chains), so a signal during a run's training stops that run, then the job.
  with train.PreemptionSignal() as sigterm:
    for dataset, family, seed in bar:
      if sigterm.requested(len(runs)):
        raise Stopped(f'SIGTERM: the job stopped before {dataset}/{family}/seed_{seed}; run the '
                      'same command again to go on.')
      if progress:
        bar.set_description(f'{family} on {dataset}, seed {seed}')
      workdir = run_dir(out, dataset, family, seed)
      rows, timing = run_one(configs[(dataset, family, seed)], workdir, profile)
      runs.append({'dataset': dataset, 'family': family, 'seed': seed,
                   **{f'{k}_seconds': v for k, v in timing.items()}})
      for row in rows:
        if family in profile.variants:
          row = {**row, 'variant': family}
        per_setting.setdefault((row['dataset'], family, row['sampler']), []).append(row)
      if seed == profile.seeds[0]:
        _copy_sample_picture(workdir, out, dataset, family)
    if sigterm.requested(len(runs)):
      raise Stopped('SIGTERM: the job stopped before its report; run the same command again '
                    'to write it.')
  rows = [report.aggregate(v) for v in per_setting.values()]

  result = {'profile': name, 'description': profile.description, 'rows': rows,
            'published': report.published_rows(profile.datasets),
            'wall_seconds': time.perf_counter() - start, 'runs': runs}
  with open(os.path.join(out, 'report.json'), 'w') as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(out, 'report.md'), 'w') as f:
    f.write(f'# Trilemma report: profile `{name}`\n\n{profile.description}\n\n')
    f.write(report.markdown_table(rows))
    published = report.published_table(profile.datasets)
    if published:
      f.write(f'\n## Published figures on these benchmarks\n\n{published}')
  report.trilemma_figure(rows, os.path.join(out, 'trilemma.png'))
  return result


def _copy_sample_picture(workdir: str, out: str, dataset: str, family: str) -> None:
  """Copies the run's final sample picture to ``out/samples/<dataset>_<family>.png``."""
  samples_dir = os.path.join(workdir, 'samples')
  pictures = sorted(p for p in os.listdir(samples_dir) if p.startswith('step_'))
  if pictures:
    os.makedirs(os.path.join(out, 'samples'), exist_ok=True)
    target = os.path.join(out, 'samples', f"{dataset.replace(':', '_')}_{family}.png")
    shutil.copyfile(os.path.join(samples_dir, pictures[-1]), target)
