r"""Trains one family on one dataset.

  python experiments/train.py --config trilemma_jax/families/vae/config.py:digits \
      --workdir runs/vae_digits [--config.train.steps=4000 ...]

Any family's config file works, also one outside the library (its package must
be importable; see README 'Adding a family').

Running it again with the same --workdir resumes from the latest checkpoint; with
more steps configured it continues, unless a schedule is laid over the steps (a
cosine decay: then it is refused). SIGTERM saves a checkpoint and exits cleanly.
On a pod, run the same command with --distributed on every host: each process
loads its slice of the global batch, all of them compute, and process 0 writes
the logs, samples and reports. Outside a detected cluster (TPU VMs, SLURM, ...)
also give the coordinator: e.g. two processes on one machine,

  python experiments/train.py ... --distributed --coordinator_address=localhost:1234 \
      --num_processes=2 --process_id=0   # and --process_id=1 in a second shell
"""

from absl import app, flags, logging
from ml_collections import config_flags

from trilemma_jax import parallel, train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config: trilemma_jax/families/<family>/config.py:<dataset>.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (resumed if it holds a run).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False,
    'Call jax.distributed.initialize() first (multi-process jobs, e.g. a TPU pod slice: '
    'run the same command on every host).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'With --distributed outside a detected cluster: host:port of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'With --coordinator_address: the number of processes.', lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'With --coordinator_address: this process (0 .. num_processes-1).',
    lower_bound=0)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  explicit = [_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value]
  if any(v is not None for v in explicit) and not _DISTRIBUTED.value:
    raise app.UsageError('--coordinator_address, --num_processes and --process_id need '
                         '--distributed.')
  if _DISTRIBUTED.value:
    parallel.initialize_distributed(*explicit)
  parallel.enable_compilation_cache()
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
