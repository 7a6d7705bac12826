"""The generic training loop: one compiled step over a mesh, orbax checkpoints, logging.

``train_and_evaluate(config, workdir)`` is what ``experiments/train.py`` runs. It
knows a family only through :class:`~trilemma_jax.train_state.Family`:

* the state is created already replicated on the mesh and the step is compiled
  once (batch sharded on the ``data`` axis, state donated);
* every ``train.checkpoint_every`` steps, at the end and on SIGTERM, an orbax
  checkpoint holds the state, the config and the grain iterator state, so a run
  restarted on the same workdir continues bit-exactly;
* process 0 writes ``metrics.jsonl``, TensorBoard events, ``config.json`` and
  ``samples/*.png``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from trilemma_jax import checkpoints, families, parallel, perf, plotting, sampling
from trilemma_jax import data as data_lib
from trilemma_jax.evaluation.likelihood import evaluate_likelihood
from trilemma_jax.evaluation.speed import SPEED_BATCH
from trilemma_jax.train_state import TrainState, new_rng

log = logging.getLogger(__name__)


class PreemptionSignal:
  """Turns SIGTERM into a flag the loop polls after each call (then saves and stops).

  In a multi-process job the flag is JAX's preemption sync point: the
  distributed runtime catches SIGTERM on any process (or the TPU maintenance
  notice) and every process reaches the same step with the flag set, so all of
  them save that step and stop, without a collective per step.

  A Python SIGTERM handler installed before (the trilemma job's own
  ``PreemptionSignal``, see ``harness.run_profile``) is called as well, so a signal that arrives during
  the last call, after which the loop stops anyway, still reaches it. The other
  way round, a signal an enclosing ``PreemptionSignal`` caught before this one was
  entered (while a run was set up or compiled) counts as requested here too, so
  the run stops after its first call instead of training to the end.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    self._multi = False

  def __enter__(self):
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self._event.set()
    if callable(self._previous):
      self._previous(signum, frame)

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _pending(self) -> bool:
    if self._event.is_set():
      return True
    outer = getattr(self._previous, '__self__', None)
    return isinstance(outer, PreemptionSignal) and outer._pending()

  def requested(self, step: int) -> bool:
    if self._multi:
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(step)
    return self._pending()


class MetricWriter:
  """``metrics.jsonl`` plus TensorBoard events; only process 0 writes.

  On resume the lines after the restored step (written by a run that was
  killed before its next checkpoint) are dropped, so the file reads as one
  unbroken run; so are earlier test-split lines, which the end of the run
  writes afresh.
  """

  def __init__(self, workdir: str, start_step: int):
    self._active = jax.process_index() == 0
    self._path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    self.train_seconds = 0.0  # wall time of the logged training so far, over all sessions
    if not self._active:
      return
    if os.path.exists(self._path):
      with open(self._path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      kept = [r for r in rows
              if r['step'] <= start_step and not any(k.startswith('test/') for k in r)]
      self.train_seconds = max([r.get('train_seconds', 0.0) for r in kept] + [0.0])
      kept = [json.dumps(r) + '\n' for r in kept]
      with open(self._path + '.tmp', 'w') as f:
        f.writelines(kept)
      os.replace(self._path + '.tmp', self._path)
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=start_step + 1)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._active:
      return
    with open(self._path, 'a') as f:
      f.write(json.dumps({'step': step, **scalars}) + '\n')
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _chunk(step: int, train: ml_collections.ConfigDict) -> int:
  """Steps of the next call: ``steps_per_dispatch``, cut at the next log, checkpoint or end.

  Every logged and checkpointed step therefore ends a call, so logs, checkpoints,
  resumes and SIGTERM keep step granularity whatever ``steps_per_dispatch`` is.
  """
  to_boundary = [train.steps - step, train.log_every - step % train.log_every,
                 train.checkpoint_every - step % train.checkpoint_every]
  return min(train.steps_per_dispatch, *to_boundary)


class _StepsFunction:
  """``(state, local batches) -> (state, metrics of the last step)``, one compiled call.

  One batch runs the plain compiled step; ``K > 1`` batches a ``lax.scan`` over
  them, compiled once per ``K`` (a run meets at most a few lengths: its
  ``steps_per_dispatch`` and the remainders up to a log or checkpoint step).
  """

  def __init__(self, train_step, mesh, steps_per_dispatch: int):
    self._mesh = mesh
    self._single = parallel.jit_train_step(train_step, mesh)
    self._multi = parallel.jit_train_steps(train_step, mesh) if steps_per_dispatch > 1 else None

  def __call__(self, state, local_batches):
    if len(local_batches) == 1:
      return self._single(state, parallel.shard_batch(local_batches[0], self._mesh))
    state, metrics = self._multi(state, parallel.shard_batches(local_batches, self._mesh))
    return state, jax.tree.map(lambda m: m[-1], metrics)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       devices: list[jax.Device] | None = None) -> TrainState:
  """Trains ``config.family`` on ``config.data.name`` in ``workdir``, resuming if possible.

  A run may continue with more steps unless its config lays a schedule over
  ``train.steps`` (DDPM's cosine decay, DDGAN's, the DDGAN's R1 gamma path
  ``ddgan.r1_gamma_start``: ``FamilyDef.step_schedules``); such a run resumes
  only with its own steps (``families.check_resumable``).

  Args:
    config: an experiment config (``families.get_config`` or a config file).
    workdir: output directory; an existing run in it is resumed.
    devices: devices of the data-parallel mesh (default: all).

  Returns:
    The final train state (replicated on the mesh).
  """
  info = data_lib.load_info(config.data.name, data_dir=config.data.data_dir or None)
  family = families.build(config, info)  # validates the config first
  os.makedirs(workdir, exist_ok=True)
  counts = checkpoints.parameter_counts(family, info)
  if jax.process_index() == 0:
    message = (f'{config.family} on {info.name}, parameters: '
               f'{checkpoints.format_counts(counts)}')
    log.info(message)
    if config.train.progress:
      print(message, flush=True)
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(config.data.batch_size, mesh)
  if config.train.steps_per_dispatch > 1 and not perf.scanned_steps_are_fast(
      info.kind, list(mesh.devices.flat)):
    log.warning('train.steps_per_dispatch=%d: the scanned steps of %s nets run far slower here '
                'than single steps (docs/performance.md); 1 is faster on this backend.',
                config.train.steps_per_dispatch, info.kind)

  source = data_lib.get_source(config.data.name, 'train', data_dir=config.data.data_dir or None)
  iterator = data_lib.train_iterator(
      source, global_batch_size=config.data.batch_size, seed=config.seed)

  mngr = checkpoints.checkpoint_manager(workdir, max_to_keep=config.train.max_to_keep)
  start = mngr.latest_step()
  if start is None:
    state = parallel.jit_init(family.init, mesh)(new_rng(config.seed),
                                                 checkpoints.example_batch(info))
    start = 0
  else:
    saved = mngr.restore(start, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    try:
      families.check_resumable(saved.config, config, workdir)
    except ValueError:
      mngr.close()
      raise
    state = checkpoints.restore_for_training(mngr, start, family, info, mesh,
                                             grain.checkpoint.CheckpointRestore(iterator))
    log.info('Resumed %s from step %d.', workdir, start)

  if jax.process_index() == 0:  # after the resume check: a refused run changes nothing
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(workdir, 'parameters.json'), 'w') as f:
      json.dump(counts, f)

  def save(step: int) -> None:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        data=grain.checkpoint.CheckpointSave(iterator)), force=True)

  steps_fn = _StepsFunction(family.train_step, mesh, config.train.steps_per_dispatch)
  writer = MetricWriter(workdir, start)
  bar = None
  if config.train.progress and jax.process_index() == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=config.train.steps, initial=start, desc=f'{config.family}/{info.name}',
               unit='step', dynamic_ncols=True)
  last_saved = start
  step = start
  metrics = None
  window_start, window_steps = time.perf_counter(), 0
  session_start = window_start
  try:
    with PreemptionSignal() as preemption:
      while step < config.train.steps:
        k = _chunk(step, config.train)
        previous = metrics
        state, metrics = steps_fn(state, [next(iterator) for _ in range(k)])
        # At most two calls in flight: the host never runs far ahead of the device, so a
        # SIGTERM is answered within about one call instead of after a long queue drains.
        jax.block_until_ready(previous)
        step += k
        window_steps += k
        if bar is not None:
          bar.update(k)
        if step % config.train.log_every == 0 or step == config.train.steps:
          scalars = _scalars(metrics)
          elapsed = time.perf_counter() - window_start
          scalars['steps_per_second'] = window_steps / max(elapsed, 1e-9)
          scalars['train_seconds'] = writer.train_seconds + time.perf_counter() - session_start
          writer.write(step, scalars)
          if bar is not None:
            shown = {k: f'{v:.4g}' for k, v in scalars.items() if 'loss' in k}
            bar.set_postfix(shown, refresh=False)
          window_start, window_steps = time.perf_counter(), 0
        if step % config.train.checkpoint_every == 0:
          save(step)
          last_saved = step
        if preemption.requested(step):
          log.warning('SIGTERM: saving step %d and stopping.', step)
          break
    if last_saved != step:
      save(step)
    mngr.wait_until_finished()
  finally:
    mngr.close()
    writer.close()
    if bar is not None:
      bar.close()

  if step >= config.train.steps:
    _write_final_outputs(config, workdir, family, state, info, writer_step=step)
  return state


def _write_final_outputs(config, workdir, family, state, info, *, writer_step: int) -> None:
  """Samples, reconstructions and the test-split bound of the final state.

  Every process computes them (the state spans the devices of all processes),
  and process 0 writes them.
  """
  writes = jax.process_index() == 0
  # Drawn in batches of the evaluation's size, so the evaluation reuses the compiled
  # sampler (from the compilation cache); many-step 2-D samplers draw all batches in one
  # vmapped call instead, several times faster than the separate calls.
  _, nfe = next(iter(family.samplers.values()))
  samples = sampling.draw(sampling.sampler_fn(family), state, config.train.num_samples,
                          batch=min(config.train.num_samples, SPEED_BATCH), seed=config.seed,
                          vmapped=sampling.vmap_pays(info.kind, nfe))
  if writes:
    path = os.path.join(workdir, 'samples', f'step_{writer_step:07d}.png')
    plotting.save_samples(samples, path, kind=info.kind, means=info.means,
                          title=f'{config.family} on {info.name}, step {writer_step}')
  test = data_lib.get_source(config.data.name, 'test', data_dir=config.data.data_dir or None)
  if family.reconstruct is not None and info.kind == 'image':
    x = next(data_lib.eval_batches(test, batch_size=min(32, len(test))))['x']
    x_hat = parallel.to_numpy(jax.jit(family.reconstruct)(state, x))
    pairs = np.stack([x, x_hat], axis=1).reshape(-1, *info.shape)  # originals left, recons right
    if writes:
      plotting.save_image_grid(
          pairs, os.path.join(workdir, 'samples', f'reconstructions_{writer_step:07d}.png'),
          columns=8, scale=4 if info.shape[0] <= 16 else 2)
  if family.evaluate is not None and config.get('eval') is not None:
    scores = evaluate_likelihood(family, state, test, batch_size=config.eval.batch_size,
                                 seed=config.seed, limit=config.eval.num_examples or None)
    if writes:
      with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
        row = {'step': writer_step, **{f'test/{k}': v for k, v in scores.items()}}
        f.write(json.dumps(row) + '\n')
      log.info('Test split: %s', scores)
