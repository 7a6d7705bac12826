"""Speed of the train steps and samplers on the device at hand, against its matmul peak.

Every figure is a median over timed windows that follow a warm-up, with
``block_until_ready`` before the clock is read; compile time is reported apart.
Achieved GFLOP/s come from XLA's cost analysis of the compiled program (the
FLOPs XLA counts for one call) divided by the measured time, and are put
beside the peak of a large float32 matmul measured in the same run, so that
machines of different speed can be compared as ratios.

The precision section (:func:`bench_precision`) trains each case twice, with
``model.compute_dtype`` float32 and bfloat16, from the same seed on the same
batches, and reports what mixed precision changed: losses, samples, mode
figures and train speed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trilemma_jax import checkpoints, data, families, parallel, profiles, sampling, validation
from trilemma_jax import config as config_lib
from trilemma_jax.evaluation import coverage
from trilemma_jax.data.info import DatasetInfo
from trilemma_jax.evaluation import speed as speed_lib
from trilemma_jax.train_state import new_rng


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
  """GFLOP/s of an ``n x n`` float32 matmul (median of ``repeats`` after a warm-up)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(f(a, a))
  return 2 * n ** 3 / _median_seconds(lambda: f(a, a), repeats) / 1e9


def flops_of(compiled) -> float | None:
  """FLOPs of one call of a compiled program by XLA's cost analysis (None if unknown)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


def cpu_model() -> str:
  """The CPU's model name (Linux's /proc/cpuinfo, else what the platform module says)."""
  model = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      model = next((line.split(':', 1)[1].strip() for line in f
                    if line.startswith('model name')), model)
  except OSError:
    pass
  return model


def machine() -> dict[str, Any]:
  """What the figures were measured on."""
  device = jax.devices()[0]
  return {'cpu': cpu_model(), 'cpu_count': os.cpu_count(), 'platform': device.platform,
          'device_kind': device.device_kind, 'device_count': jax.device_count(),
          'jax': jax.__version__}


def _time_train_step(step, state, batches, *, k: int, batch_size: int, windows: int,
                     steps_per_window: int | None, peak_gflops: float | None) -> dict[str, Any]:
  """Compiles ``step`` on ``batches[0]``, then times it (see :func:`bench_train_step`)."""
  start = time.perf_counter()
  compiled = step.lower(state, batches[0]).compile()
  compile_seconds = time.perf_counter() - start
  # XLA's cost analysis counts the body of the scan once, i.e. one step's FLOPs.
  flops = flops_of(compiled)

  state, _ = compiled(state, batches[0])  # warm-up
  jax.block_until_ready(state)
  start = time.perf_counter()
  state, _ = compiled(state, batches[1])
  once = time.perf_counter() - start if jax.block_until_ready(state) is not None else 0.0
  n = steps_per_window or max(3, min(200, int(1.0 / max(once, 1e-4))))

  def window():
    nonlocal state
    for i in range(n):
      state, metrics = compiled(state, batches[i % len(batches)])
    return state

  seconds = _median_seconds(window, windows) / (n * k)
  result = {
      'steps_per_dispatch': k,
      'steps_per_second': 1.0 / seconds,
      'examples_per_second': batch_size / seconds,
      'batch_size': batch_size,
      'compile_seconds': compile_seconds,
      'flops_per_step': flops,
      'gflops': flops / seconds / 1e9 if flops else None,
      'params': int(sum(x.size for x in jax.tree.leaves(state.params))),
  }
  if peak_gflops and result['gflops']:
    result['peak_fraction'] = result['gflops'] / peak_gflops
  result['_state'] = state
  return result


def train_setup(config) -> tuple[Any, Any, Any, Any]:
  """``(family, mesh, state, iterator)`` to time ``config``'s train step on one device.

  The family built for the config, a one-device mesh, the initial state as
  training makes it, and the train stream of the dataset's batches.
  """
  info = data.load_info(config.data.name, data_dir=config.data.data_dir or None)
  family = families.build(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = parallel.jit_init(family.init, mesh)(new_rng(config.seed),
                                               checkpoints.example_batch(info))
  source = data.get_source(config.data.name, 'train', data_dir=config.data.data_dir or None)
  iterator = data.train_iterator(source, global_batch_size=config.data.batch_size,
                                 seed=config.seed)
  return family, mesh, state, iterator


def windowed_steps_per_second(step, state, batches, steps: int, window: int) -> tuple[Any, float]:
  """``(state, median steps/s)`` of ``steps`` calls of ``step`` timed in windows of ``window``.

  At most two calls are in flight, as in training; ``batches`` are cycled. The
  state comes back so a caller can keep training it (``step`` may donate it).
  """
  if steps < 2 * window:
    raise ValueError(f'steps={steps}: two windows of {window} steps need at least {2 * window}.')
  metrics, marks = None, []
  for i in range(steps):
    previous = metrics
    state, metrics = step(state, batches[i % len(batches)])
    jax.block_until_ready(previous)
    if i % window == window - 1:
      marks.append(time.perf_counter())
  jax.block_until_ready(metrics)
  return state, statistics.median(window / (b - a) for a, b in zip(marks, marks[1:]))


def bench_train_step(config, *, windows: int = 5, steps_per_window: int | None = None,
                     peak_gflops: float | None = None) -> dict[str, Any]:
  """Train-step speed of ``config``'s family on its dataset, one device.

  The step is the one training compiles (:func:`trilemma_jax.parallel.jit_train_step`,
  or :func:`~trilemma_jax.parallel.jit_train_steps` for ``train.steps_per_dispatch``
  steps per call) on real batches of the dataset, prefetched to the device.

  Returns:
    ``steps_per_second`` and ``examples_per_second`` (medians over ``windows``),
    ``compile_seconds``, ``flops_per_step``, ``gflops`` (achieved) and
    ``peak_fraction`` (of ``peak_gflops``, when given), ``batch_size``,
    ``params`` (trained parameters in all networks).
  """
  family, mesh, state, iterator = train_setup(config)
  k = config.train.steps_per_dispatch
  if k == 1:
    batches = [parallel.shard_batch(next(iterator), mesh) for _ in range(8)]
    step = parallel.jit_train_step(family.train_step, mesh)
  else:
    batches = [parallel.shard_batches([next(iterator) for _ in range(k)], mesh)
               for _ in range(2)]
    step = parallel.jit_train_steps(family.train_step, mesh)
  result = _time_train_step(step, state, batches, k=k, batch_size=config.data.batch_size,
                            windows=windows, steps_per_window=steps_per_window,
                            peak_gflops=peak_gflops)
  result['_family'] = family  # beside '_state': the caller times the samplers on both
  return result


def bench_samplers(family, state, *, repeats: int = 3) -> dict[str, dict[str, Any]]:
  """Samples/s at batch 100 per named sampler, compile time apart."""
  out = {}
  for name, (_, nfe) in family.samplers.items():
    fn = sampling.sampler_fn(family, name)
    _, timing = sampling.draw_timed(fn, state, speed_lib.SPEED_BATCH,
                                    batch=speed_lib.SPEED_BATCH, min_timed=repeats)
    out[name] = {'nfe': nfe, **timing}
  return out


# The paper-scale configs are the families' tfds:cifar10 configs; the benchmark
# feeds them random images of CIFAR-10's shape, so it needs no download.
PAPER_DATASET = DatasetInfo(name='tfds:cifar10', shape=(32, 32, 3), kind='image',
                            num_classes=10, num_train=50_000, num_test=10_000, levels=256)
PAPER_FAMILIES = ('ddgan', 'ddpm', 'gan', 'vae')


def bench_paper(family_name: str, *, batch_size: int | None = None,
                sample_batch: int | None = None, max_nfe: int | None = None,
                windows: int = 3, steps_per_window: int = 1,
                peak_gflops: float | None = None) -> dict[str, Any]:
  """Train-step and sampler speed of ``family_name``'s paper-scale (CIFAR-10) config, one device.

  Args:
    family_name: one of :data:`PAPER_FAMILIES`.
    batch_size: global batch of the timed train step (default: the config's).
    sample_batch: batch of each sampler call (default: 100, the batch of the
      DDGAN paper's timings).
    max_nfe: samplers with more network evaluations are not run (reported as
      skipped); ``None`` runs them all.
    windows, steps_per_window: timed windows (median kept) and steps in each.
    peak_gflops: the measured matmul peak, for ``peak_fraction``.

  Returns:
    The :func:`bench_train_step` figures (compile time apart), ``params`` per
    network, and ``samplers``: per named sampler its NFE and samples/s at
    ``sample_batch`` (compile time apart), or ``skipped``.
  """
  overrides = {} if batch_size is None else {'data.batch_size': batch_size}
  config = families.get_config(family_name, PAPER_DATASET.name, overrides)
  info = PAPER_DATASET
  family = families.build(config, info)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = parallel.jit_init(family.init, mesh)(new_rng(config.seed),
                                               checkpoints.example_batch(info))
  rng = np.random.default_rng(0)
  batches = [parallel.shard_batch(
      {'x': rng.uniform(-1, 1, (config.data.batch_size, *info.shape)).astype(np.float32),
       'label': rng.integers(0, 10, config.data.batch_size).astype(np.int32)}, mesh)
      for _ in range(2)]
  row = _time_train_step(parallel.jit_train_step(family.train_step, mesh), state, batches, k=1,
                         batch_size=config.data.batch_size, windows=windows,
                         steps_per_window=steps_per_window, peak_gflops=peak_gflops)
  state = row.pop('_state')
  row['params_per_network'] = checkpoints.parameter_counts(family, info)
  sample_batch = sample_batch or speed_lib.SPEED_BATCH
  row['sample_batch'] = sample_batch
  row['samplers'] = {}
  for name, (_, nfe) in family.samplers.items():
    if max_nfe is not None and nfe > max_nfe:
      row['samplers'][name] = {'nfe': nfe, 'skipped': f'NFE {nfe} > max_nfe {max_nfe}'}
      continue
    _, timing = sampling.draw_timed(sampling.sampler_fn(family, name), state, sample_batch,
                                    batch=sample_batch, min_timed=1)
    row['samplers'][name] = {'nfe': nfe, **timing,
                             'seconds_per_batch': sample_batch / timing['samples_per_second']}
  return row


PRECISIONS = ('float32', 'bfloat16')


def bench_precision(config, *, steps: int = 100) -> dict[str, Any]:
  """``config`` trained ``steps`` steps in float32 and in bfloat16, compared.

  Both runs start from the same parameters (the seed's; they do not depend on
  the compute dtype) and take the same ``steps`` batches of the dataset,
  prefetched to one device, one step per call. Their samples come from the
  family's cheapest sampler (fewest network calls) with the same key. The
  learning-rate schedules are those of ``config.train.steps``, of which the
  first ``steps`` are run. Meant for a small ``steps``: every batch is held on
  the device at once.

  Returns:
    ``steps``, ``num_samples``, ``sampler``; per precision (``'float32'``,
    ``'bfloat16'``) ``steps_per_second`` (of the median step after the
    first, each timed to its end), ``compile_seconds``, ``final_losses`` (the
    metrics named ``*loss`` of the last step) and for 2-D mixtures ``modes``
    (the mode figures of the samples); ``loss_difference`` (bfloat16 minus
    float32, per loss), ``sample_mean_abs_difference`` (mean absolute
    difference of the two sample sets, in data units) beside
    ``sample_mean_abs`` (of the float32 samples) for scale, and ``speedup``
    (bfloat16 steps/s over float32).
  """
  steps = validation.positive_int('steps', steps)
  info = data.load_info(config.data.name, data_dir=config.data.data_dir or None)
  mesh = parallel.make_mesh(jax.devices()[:1])
  source = data.get_source(config.data.name, 'train', data_dir=config.data.data_dir or None)
  iterator = data.train_iterator(source, global_batch_size=config.data.batch_size,
                                 seed=config.seed)
  batches = [parallel.shard_batch(next(iterator), mesh) for _ in range(steps)]
  mixture = info.protocol.modes == 'mixture'
  num_samples = info.protocol.mode_samples if mixture else config.train.num_samples
  out: dict[str, Any] = {'steps': steps, 'num_samples': num_samples}
  samples = {}
  for precision in PRECISIONS:
    run_config = config_lib.apply_overrides(config.copy_and_resolve_references(),
                                            {'model.compute_dtype': precision})
    family = families.build(run_config, info)
    state = parallel.jit_init(family.init, mesh)(new_rng(config.seed),
                                                 checkpoints.example_batch(info))
    start = time.perf_counter()
    step = parallel.jit_train_step(family.train_step, mesh).lower(state, batches[0]).compile()
    compile_seconds = time.perf_counter() - start
    seconds = []
    for batch in batches:
      start = time.perf_counter()
      state, metrics = step(state, batch)
      jax.block_until_ready(state)
      seconds.append(time.perf_counter() - start)
    sampler = min(family.samplers, key=lambda name: family.samplers[name][1])
    samples[precision] = sampling.draw_samples(family, state, num_samples, seed=config.seed,
                                               sampler=sampler)
    out['sampler'] = sampler
    # The median step after the first (which may carry one-off costs): robust to
    # the load spikes of a shared machine.
    row = {'steps_per_second': 1.0 / statistics.median(seconds[1:] or seconds),
           'compile_seconds': compile_seconds,
           'final_losses': {k: float(v) for k, v in jax.device_get(metrics).items()
                            if k.endswith('loss')}}
    if mixture:
      row['modes'] = coverage.mode_figures(info, samples[precision])
    out[precision] = row
  f32, bf16 = out['float32'], out['bfloat16']
  out['loss_difference'] = {k: bf16['final_losses'][k] - v
                            for k, v in f32['final_losses'].items()}
  difference = np.abs(samples['bfloat16'].astype(np.float64) - samples['float32'])
  out['sample_mean_abs_difference'] = float(np.mean(difference))
  out['sample_mean_abs'] = float(np.mean(np.abs(samples['float32'])))
  out['speedup'] = bf16['steps_per_second'] / f32['steps_per_second']
  return out


def profile_cases(profile: profiles.Profile, family_names: Sequence[str] | None = None,
                  datasets: Sequence[str] | None = None) -> list[tuple[str, str, str, dict]]:
  """``(entry, family, dataset, overrides)`` of every entry of ``families`` (a family or a
  variant of one) and dataset of the profile."""
  return [(f, profile.family_of(f), d, profile.overrides_for(f, d))
          for d in (datasets or profile.datasets) for f in (family_names or profile.families)]


def unet_cases() -> list[tuple[str, dict[str, Any]]]:
  """The DDPM U-Net alone: 28x28 widths (32, 64, 64) and 8x8 widths (32, 64), batch 128."""
  return [
      ('unet_28x28', {'data.name': 'fashion_mnist', 'model.image.ch': 32,
                      'model.image.ch_mult': (1, 2, 2), 'model.image.attn_resolutions': (7,),
                      'data.batch_size': 128}),
      ('unet_8x8', {'data.name': 'digits', 'model.image.ch': 32, 'model.image.ch_mult': (1, 2),
                    'data.batch_size': 128}),
  ]


REFERENCE_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'experiments', 'reference', 'diffusers_unet.py')


def reference_unets(python: str, cases: Sequence[str], windows: int) -> dict[str, dict]:
  """diffusers' UNet2DModel train step on the U-Net cases' shapes, timed by ``python``.

  ``python`` is an interpreter with PyTorch and diffusers (made by
  ``experiments/reference/setup.sh``); the script prints JSON.
  """
  out = subprocess.run([python, REFERENCE_SCRIPT, '--cases', ','.join(cases),
                        '--windows', str(windows)], capture_output=True, text=True, check=True)
  result = json.loads(out.stdout)
  return {row['case']: {**row, 'torch': result['torch'], 'threads': result['threads']}
          for row in result['cases']}


def run(*, profile_name: str = 'default', family_names: Sequence[str] | None = None,
        datasets: Sequence[str] | None = None, unet: bool = True, samplers: bool = True,
        windows: int = 5, steps_per_dispatch: int = 1, reference_python: str | None = None,
        precision: bool = False, precision_steps: int = 100,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  """The whole benchmark; returns the JSON-ready result.

  With ``reference_python`` the U-Net cases are also timed in diffusers
  (:func:`reference_unets`), right after ours, and each gets ``reference`` and
  ``speedup_vs_reference`` (our examples/s over diffusers').

  With ``precision`` every profile case is also trained ``precision_steps``
  steps in float32 and in bfloat16 (:func:`bench_precision`); the rows go to
  ``result['precision']``.
  """
  if precision:
    precision_steps = validation.positive_int('precision_steps', precision_steps)
  peak = matmul_peak()
  log(f'matmul peak {peak:.1f} GFLOP/s')
  result: dict[str, Any] = {'machine': machine(), 'matmul_peak_gflops': peak,
                            'profile': profile_name, 'steps_per_dispatch': steps_per_dispatch,
                            'cases': []}
  cases = [(f'{e}/{d}', f, d, o) for e, f, d, o in profile_cases(
      profiles.get_profile(profile_name), family_names, datasets)]
  precision_cases = list(cases)
  if unet:
    cases += [(name, 'ddpm', o['data.name'], o) for name, o in unet_cases()]
  for name, family_name, dataset, overrides in cases:
    overrides = {k: v for k, v in overrides.items() if k != 'data.name'}
    overrides['train.steps_per_dispatch'] = steps_per_dispatch
    config = families.get_config(family_name, dataset, overrides)
    row = bench_train_step(config, windows=windows, peak_gflops=peak)
    state, family = row.pop('_state'), row.pop('_family')
    row = {'case': name, 'family': family_name, 'dataset': dataset, **row}
    if samplers and not name.startswith('unet'):
      row['samplers'] = bench_samplers(family, state)
    if reference_python and name.startswith('unet'):
      row['reference'] = reference_unets(reference_python, [name], windows)[name]
      row['speedup_vs_reference'] = (row['examples_per_second'] /
                                     row['reference']['examples_per_second'])
    log(_describe(row))
    result['cases'].append(row)
  if precision:
    result['precision'] = []
    for name, family_name, dataset, overrides in precision_cases:
      overrides = {k: v for k, v in overrides.items() if k != 'data.name'}
      config = families.get_config(family_name, dataset, overrides)
      row = {'case': name, 'family': family_name, 'dataset': dataset,
             **bench_precision(config, steps=precision_steps)}
      log(_describe_precision(row))
      result['precision'].append(row)
  return result


def check_paper_families(family_names: Sequence[str]) -> None:
  """Raises ``ValueError`` naming any of ``family_names`` without a paper-scale config."""
  unknown = sorted(set(family_names) - set(PAPER_FAMILIES))
  if unknown:
    raise ValueError(f'No paper-scale config for {unknown}; expected some of {PAPER_FAMILIES}.')


def run_paper(family_names: Sequence[str] = PAPER_FAMILIES, *, batch_size: int | None = None,
              sample_batch: int | None = None, max_nfe: int | None = None, windows: int = 3,
              log: Callable[[str], None] = print) -> dict[str, Any]:
  """:func:`bench_paper` for each of ``family_names``; returns the JSON-ready result."""
  check_paper_families(family_names)
  for name, value in (('batch_size', batch_size), ('sample_batch', sample_batch),
                      ('max_nfe', max_nfe)):
    if value is not None:
      validation.positive_int(name, value)
  peak = matmul_peak()
  log(f'matmul peak {peak:.1f} GFLOP/s')
  result: dict[str, Any] = {'machine': machine(), 'matmul_peak_gflops': peak,
                            'dataset': PAPER_DATASET.name, 'paper': []}
  for name in family_names:
    row = {'family': name, **bench_paper(name, batch_size=batch_size, sample_batch=sample_batch,
                                         max_nfe=max_nfe, windows=windows, peak_gflops=peak)}
    log(_describe_paper(row))
    result['paper'].append(row)
  return result


def _describe_paper(row: dict[str, Any]) -> str:
  counts = checkpoints.format_counts(row['params_per_network'])
  text = (f"{row['family']}/cifar10 ({counts}): batch {row['batch_size']}, "
          f"{row['steps_per_second']:.3g} steps/s, {row['examples_per_second']:.3g} examples/s, "
          f"compile {row['compile_seconds']:.1f} s")
  if row.get('gflops'):
    text += f", {row['gflops']:.1f} GFLOP/s ({100 * row.get('peak_fraction', 0):.0f}% of peak)"
  for name, s in row['samplers'].items():
    text += (f"; {name} (NFE {s['nfe']}) skipped" if 'skipped' in s else
             f"; {name} (NFE {s['nfe']}) {s['seconds_per_batch']:.3g} s per batch of "
             f"{row['sample_batch']}")
  return text


def _describe_precision(row: dict[str, Any]) -> str:
  f32, bf16 = row['float32'], row['bfloat16']
  losses = ', '.join(f'{k} {f32["final_losses"][k]:.4g} -> {bf16["final_losses"][k]:.4g}'
                     for k in f32['final_losses'])
  text = (f"{row['case']} float32 -> bfloat16 after {row['steps']} steps: {losses}; "
          f"samples differ by {row['sample_mean_abs_difference']:.3g} "
          f"(mean |x| {row['sample_mean_abs']:.3g}); {f32['steps_per_second']:.1f} -> "
          f"{bf16['steps_per_second']:.1f} steps/s ({row['speedup']:.2f}x)")
  if 'modes' in f32 and f32['modes'] and bf16['modes']:
    text += f"; modes {f32['modes']['modes']} -> {bf16['modes']['modes']}"
  return text


def _describe(row: dict[str, Any]) -> str:
  text = (f"{row['case']}: {row['steps_per_second']:.1f} steps/s, "
          f"{row['examples_per_second']:.0f} examples/s, compile {row['compile_seconds']:.1f} s")
  if row.get('gflops'):
    text += f", {row['gflops']:.1f} GFLOP/s ({100 * row.get('peak_fraction', 0):.0f}% of peak)"
  if 'reference' in row:
    text += (f"; diffusers {row['reference']['examples_per_second']:.0f} examples/s "
             f"({row['speedup_vs_reference']:.2f}x)")
  for name, s in row.get('samplers', {}).items():
    text += f"; {name} {s['samples_per_second']:.0f} samples/s"
  return text
