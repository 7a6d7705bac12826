r"""The main job: every family on the same data, measured on the three corners.

  python experiments/trilemma.py --workdir runs/trilemma [--profile default] [--seeds 0,1,2]

For each dataset, family and seed of the profile (trilemma_jax/profiles.py, or
'<module>:<attribute>' for one of your own) it trains (or resumes) a run under
DIR/runs/<dataset>/<family>/seed_<s>, evaluates it (eval.json beside it), and
writes DIR/report.json, DIR/report.md, DIR/trilemma.png and
DIR/samples/<dataset>_<family>.png (see trilemma_jax/harness.py). Running it
again with the same DIR reuses finished runs and evaluations and resumes
unfinished ones. SIGTERM stops the job after the run in training has saved its
step (that run is not evaluated, and no report is written) or, outside
training, after the run being evaluated; it then exits with status 143.
"""

import signal

from absl import app, flags, logging

from trilemma_jax import harness, parallel, profiles, report

_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (reused when re-run).')
_PROFILE = flags.DEFINE_string(
    'profile', 'default',
    f'Profile to run: one of {", ".join(sorted(profiles.PROFILES))}, or '
    "'<module>:<attribute>' naming a trilemma_jax.profiles.Profile.")
_FAMILIES = flags.DEFINE_list('families', None, "Subset of the profile's families (default all).")
_DATASETS = flags.DEFINE_list('datasets', None, "Subset of the profile's datasets (default all).")
_SEEDS = flags.DEFINE_list(
    'seeds', None, "Seeds to run instead of the profile's, e.g. 0,1,2 (the default profile "
    "on three seeds, mean ± std over them: about three times its one seed's time) or 0.")
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    seeds = None
    if _SEEDS.value:
      try:
        seeds = [int(s) for s in _SEEDS.value]
      except ValueError:
        raise ValueError(f'--seeds={",".join(_SEEDS.value)}: expected integers, e.g. '
                         '--seeds=0 or --seeds=0,1,2.') from None
    profile = harness.select(profiles.get_profile(_PROFILE.value), family_names=_FAMILIES.value,
                             datasets=_DATASETS.value, seeds=seeds)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  parallel.enable_compilation_cache()
  try:
    result = harness.run_profile(profile, _WORKDIR.value, name=_PROFILE.value)
  except harness.Stopped as e:  # SIGTERM: the run is saved; no report of a partial job
    print(f'Stopped: {e}', flush=True)
    return 128 + signal.SIGTERM  # what a shell reports for a job SIGTERM ended
  print(report.markdown_table(result['rows']))
  published = report.published_table(profile.datasets)
  if published:
    print(f'Published figures on these benchmarks:\n{published}')
  print(f'wrote {_WORKDIR.value}/report.json, report.md, trilemma.png')


if __name__ == '__main__':
  app.run(main)
