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
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from trilemma_jax import config as config_lib
from trilemma_jax import data as data_lib
from trilemma_jax import parallel
from trilemma_jax import plotting
from trilemma_jax.families import build_family
from trilemma_jax.train_state import Family, TrainState, new_rng

log = logging.getLogger(__name__)

# What a resumed run may change: how long it trains, how it logs and checkpoints,
# and the evaluation at its end; the data's location. Anything else (model,
# optimiser, family settings, batch size, seed) belongs to another run. Learning-
# rate schedules that decay over ``train.steps`` (DDPM's cosine decay, DDGAN's)
# are rebuilt for the new total when a run continues with more steps, so such a
# continued run is not the same as one trained that long without a break.
RESUMABLE_SECTIONS = ('train', 'eval', 'data.data_dir')


class PreemptionSignal:
  """Turns SIGTERM into a flag the loop polls after each step (then saves and stops)."""

  def __init__(self):
    self._event = threading.Event()
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def requested(self) -> bool:
    flag = self._event.is_set()
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      flag = bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
    return flag


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


def checkpoint_manager(workdir: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """The run's orbax manager (async; at most ``max_to_keep`` checkpoints)."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True),
  )


def abstract_state(family: Family, example_batch: Any, mesh) -> TrainState:
  """Shapes, dtypes and (replicated) shardings of the state, without computing it."""
  shapes = jax.eval_shape(family.init, jax.ShapeDtypeStruct((2,), jnp.uint32), example_batch)
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def restore_state(workdir: str, family: Family, info: data_lib.DatasetInfo, mesh,
                  step: int | None = None) -> TrainState:
  """Loads a run's state (latest checkpoint by default) onto ``mesh``, for evaluation."""
  with checkpoint_manager(workdir) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'No checkpoint under {workdir}/checkpoints; train the run first.')
    target = abstract_state(family, example_batch(info), mesh)
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return restored.state


def example_batch(info: data_lib.DatasetInfo, batch_size: int = 1) -> dict[str, np.ndarray]:
  """A zero batch with the dataset's shapes, for ``init`` and shape inference."""
  return {'x': np.zeros((batch_size, *info.shape), np.float32),
          'label': np.zeros((batch_size,), np.int32)}


def _check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume a run with other settings than those it was trained with."""
  changes = config_lib.changed_keys(saved, config, may_change=RESUMABLE_SECTIONS)
  if changes:
    raise ValueError(
        f'{workdir} holds a run of other settings ({config_lib.describe_changes(changes)}). '
        f'A resumed run may change only {", ".join(RESUMABLE_SECTIONS)}. Use a new --workdir, '
        f'or the settings in {os.path.join(workdir, "config.json")} to resume.')


def _scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def draw_samples(family: Family, state: TrainState, n: int, seed: int = 0,
                 sampler: str | None = None) -> np.ndarray:
  """``n`` samples with the named sampler (default: the family's first) as numpy."""
  name = sampler or next(iter(family.samplers))
  kwargs, _ = family.samplers[name]
  fn = jax.jit(family.sample, static_argnums=(2,), static_argnames=tuple(kwargs))
  return np.asarray(fn(state, jax.random.PRNGKey(seed), n, **kwargs))


def evaluate_likelihood(family: Family, state: TrainState, source, *, batch_size: int,
                        seed: int = 0, limit: int | None = None) -> dict[str, float]:
  """Means of ``family.evaluate`` over the test split (``limit`` examples at most)."""
  if family.evaluate is None:
    return {}
  fn = jax.jit(family.evaluate)
  totals: dict[str, float] = {}
  count = 0
  for i, batch in enumerate(data_lib.eval_batches(source, batch_size=batch_size)):
    if limit is not None and count >= limit:
      break
    if limit is not None:
      batch = {k: v[:limit - count] for k, v in batch.items()}
    n = len(batch['x'])
    # Pad to the full batch so every call hits the same compiled program.
    padded = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)]) if n < batch_size
              else v for k, v in batch.items()}
    out = jax.device_get(fn(state, padded, jax.random.fold_in(jax.random.PRNGKey(seed), i)))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(np.sum(np.asarray(v)[:n], dtype=np.float64))
    count += n
  return {k: v / count for k, v in totals.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       devices: list[jax.Device] | None = None) -> TrainState:
  """Trains ``config.family`` on ``config.data.name`` in ``workdir``, resuming if possible.

  Args:
    config: an experiment config (``experiments/configs/*.py``).
    workdir: output directory; an existing run in it is resumed.
    devices: devices of the data-parallel mesh (default: all).

  Returns:
    The final train state (replicated on the mesh).
  """
  config_lib.validate(config)
  os.makedirs(workdir, exist_ok=True)
  info = data_lib.load_info(config.data.name, data_dir=config.data.data_dir or None)
  family = build_family(config, info)
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(config.data.batch_size, mesh)

  source = data_lib.get_source(config.data.name, 'train', data_dir=config.data.data_dir or None)
  iterator = data_lib.train_iterator(
      source, global_batch_size=config.data.batch_size, seed=config.seed)

  mngr = checkpoint_manager(workdir, max_to_keep=config.train.max_to_keep)
  start = mngr.latest_step()
  if start is None:
    state = parallel.jit_init(family.init, mesh)(new_rng(config.seed), example_batch(info))
    start = 0
  else:
    saved = mngr.restore(start, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    try:
      _check_resumable(saved.config, config, workdir)
    except ValueError:
      mngr.close()
      raise
    target = abstract_state(family, example_batch(info), mesh)
    restored = mngr.restore(start, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=grain.checkpoint.CheckpointRestore(iterator)))
    state = restored.state
    log.info('Resumed %s from step %d.', workdir, start)

  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))

  def save(step: int) -> None:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        data=grain.checkpoint.CheckpointSave(iterator)), force=True)

  step_fn = parallel.jit_train_step(family.train_step, mesh)
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
        batch = parallel.shard_batch(next(iterator), mesh)
        previous = metrics
        state, metrics = step_fn(state, batch)
        # At most two steps in flight: the host never runs far ahead of the device, so a
        # SIGTERM is answered within about one step instead of after a long queue drains.
        jax.block_until_ready(previous)
        step += 1
        window_steps += 1
        if bar is not None:
          bar.update(1)
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
        if preemption.requested():
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

  if step >= config.train.steps and jax.process_index() == 0:
    _write_final_outputs(config, workdir, family, state, info, writer_step=step)
  return state


def _write_final_outputs(config, workdir, family, state, info, *, writer_step: int) -> None:
  samples = draw_samples(family, state, config.train.num_samples, seed=config.seed)
  path = os.path.join(workdir, 'samples', f'step_{writer_step:07d}.png')
  plotting.save_samples(samples, path, kind=info.kind, means=info.means,
                        title=f'{config.family} on {info.name}, step {writer_step}')
  test = data_lib.get_source(config.data.name, 'test', data_dir=config.data.data_dir or None)
  if family.reconstruct is not None and info.kind == 'image':
    x = next(data_lib.eval_batches(test, batch_size=min(32, len(test))))['x']
    x_hat = np.asarray(jax.jit(family.reconstruct)(state, x))
    pairs = np.stack([x, x_hat], axis=1).reshape(-1, *info.shape)  # originals left, recons right
    plotting.save_image_grid(
        pairs, os.path.join(workdir, 'samples', f'reconstructions_{writer_step:07d}.png'),
        columns=8, scale=4 if info.shape[0] <= 16 else 2)
  if family.evaluate is not None and config.get('eval') is not None:
    scores = evaluate_likelihood(family, state, test, batch_size=config.eval.batch_size,
                                 seed=config.seed, limit=config.eval.num_examples or None)
    with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
      row = {'step': writer_step, **{f'test/{k}': v for k, v in scores.items()}}
      f.write(json.dumps(row) + '\n')
    log.info('Test split: %s', scores)
