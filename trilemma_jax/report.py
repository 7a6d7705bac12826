"""The trilemma report: rows aggregated over seeds, the Markdown table and the picture."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

# Figures of a row that vary over seeds; each gets a ``<name>_std`` companion.
FIGURES = ('samples_per_second', 'compile_seconds', 'fd', 'kid', 'precision', 'recall',
           'density', 'coverage', 'modes', 'hq_fraction', 'reverse_kl', 'kl_channels',
           'kl_dependence', 'nll_bits_per_dim', 'train_seconds', 'train_steps_per_second')
# Keys that identify a row and are the same for every seed.
IDENTITY = ('family', 'variant', 'sampler', 'dataset', 'nfe', 'max_modes', 'train_steps',
            'device')


def _finite(values: Sequence[Any]) -> list[float]:
  return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def aggregate(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """One row from the rows of several seeds of the same (family, sampler, dataset).

  Each figure becomes its mean over the seeds where it is defined, with the
  population std (ddof=0) in ``<name>_std``; ``None`` where no seed has it. A
  NaN (e.g. reverse KL with no high-quality sample) counts as undefined for
  that seed, and ``<name>_undefined_seeds`` records how many such seeds there were.
  """
  if not per_seed:
    raise ValueError('aggregate needs at least one row.')
  row: dict[str, Any] = {k: per_seed[0].get(k) for k in IDENTITY}
  for key in IDENTITY:
    values = {json.dumps(r.get(key)) for r in per_seed}
    if len(values) > 1 and key != 'device':
      raise ValueError(f'Rows disagree on {key}: {sorted(values)}; they are not one setting.')
  for name in FIGURES:
    present = [r.get(name) for r in per_seed if r.get(name) is not None]
    values = _finite(present)
    row[name] = float(np.mean(values)) if values else None
    row[f'{name}_std'] = float(np.std(values)) if values else None
    if len(values) < len(present):
      row[f'{name}_undefined_seeds'] = len(present) - len(values)
  row['seeds'] = sorted(int(r['seed']) for r in per_seed)
  # Seeds whose samples held NaN/inf have no quality figures: say so, do not hide them.
  diverged = sorted(int(r['seed']) for r in per_seed if r.get('diverged'))
  if diverged:
    row['diverged_seeds'] = diverged
  skipped = sorted({r['quality_skipped'] for r in per_seed if r.get('quality_skipped')})
  if skipped:
    row['quality_skipped'] = skipped[0]
  return row


def _fmt(value, std=None, digits=3) -> str:
  if value is None:
    return '–'
  if isinstance(value, float) and abs(value) >= 1000:
    text = f'{value:,.0f}'
  else:
    text = f'{value:.{digits}g}'
  if std is not None and std > 0:
    text += f' ± {std:.2g}'
  return text


def markdown_table(rows: Iterable[dict[str, Any]]) -> str:
  """The report table: one line per (dataset, family, sampler), mean ± std over seeds."""
  header = ('| dataset | family | sampler | NFE | samples/s | FD ↓ | precision | recall | density '
            '| coverage | modes | %HQ | rev. KL ↓ | NLL bits/dim | train s | seeds |')
  lines = [header, '|' + '---|' * (header.count('|') - 1)]
  for r in rows:
    modes = None if r.get('modes') is None else (
        f"{_fmt(r['modes'], r.get('modes_std'))} / {r['max_modes']}")
    hq = None if r.get('hq_fraction') is None else _fmt(
        100 * r['hq_fraction'], 100 * (r.get('hq_fraction_std') or 0))
    lines.append('| ' + ' | '.join([
        r['dataset'], r.get('variant') or r['family'], r['sampler'], str(r['nfe']),
        _fmt(r.get('samples_per_second'), r.get('samples_per_second_std')),
        _fmt(r.get('fd'), r.get('fd_std')),
        _fmt(r.get('precision'), r.get('precision_std')),
        _fmt(r.get('recall'), r.get('recall_std')),
        _fmt(r.get('density'), r.get('density_std')),
        _fmt(r.get('coverage'), r.get('coverage_std')),
        modes or '–', hq or '–',
        _fmt(r.get('reverse_kl'), r.get('reverse_kl_std')),
        _fmt(r.get('nll_bits_per_dim'), r.get('nll_bits_per_dim_std')),
        _fmt(r.get('train_seconds'), r.get('train_seconds_std')),
        str(len(r.get('seeds') or [])) + (
            f" ({len(r['diverged_seeds'])} diverged)" if r.get('diverged_seeds') else ''),
    ]) + ' |')
  notes = sorted({r['quality_skipped'] for r in rows if r.get('quality_skipped')})
  split = [r for r in rows if r.get('kl_dependence') is not None]
  if split:
    notes.append('rev. KL of per-channel labels = the channels\' own imbalance + their '
                 'dependence: ' + '; '.join(
                     f"{r['dataset']} {r.get('variant') or r['family']} {r['sampler']} "
                     f"{_fmt(r.get('kl_channels'))} + {_fmt(r['kl_dependence'])}" for r in split))
  if notes:
    lines += [''] + [f'* {note}' for note in notes]
  return '\n'.join(lines) + '\n'


# Published figures on the benchmarks this project reproduces, shown beside its
# own rows (docs/references.md). The 2-D mixtures are PacGAN's (Lin et al. 2018;
# 2,500 samples, HQ = within 3 std of a mean, the metrics of metrics/modes.py).
# StackedMNIST is the DDGAN paper's (Xiao et al. 2022): 28x28 MNIST digits
# stacked, 26,000 samples; stacked digits here stacks scikit-learn's 8x8 digits
# instead, so the figure is a reference point, not the same benchmark.
PUBLISHED: dict[str, tuple[dict[str, Any], ...]] = {
    'grid25': (
        {'method': 'GAN', 'modes': 17.3, 'max_modes': 25, 'hq_fraction': 0.948,
         'reverse_kl': 0.70, 'source': 'Lin et al. 2018 (PacGAN)'},
        {'method': 'PacGAN4', 'modes': 24.8, 'max_modes': 25, 'hq_fraction': 0.936,
         'reverse_kl': 0.04, 'source': 'Lin et al. 2018 (PacGAN)'},
        {'method': 'VEEGAN', 'modes': 24.6, 'max_modes': 25, 'hq_fraction': 0.40,
         'reverse_kl': None, 'source': 'Lin et al. 2018 (PacGAN)'},
    ),
    'ring8': (
        {'method': 'GAN', 'modes': 6.3, 'max_modes': 8, 'hq_fraction': 0.982,
         'reverse_kl': 0.45, 'source': 'Lin et al. 2018 (PacGAN)'},
        {'method': 'PacGAN2', 'modes': 7.9, 'max_modes': 8, 'hq_fraction': 0.956,
         'reverse_kl': 0.07, 'source': 'Lin et al. 2018 (PacGAN)'},
    ),
    'stacked_digits': (
        {'method': 'DDGAN (StackedMNIST, 28x28)', 'modes': 1000, 'max_modes': 1000,
         'hq_fraction': None, 'reverse_kl': 0.071, 'source': 'Xiao et al. 2022 (DDGAN)'},
    ),
}


def published_rows(datasets: Iterable[str]) -> list[dict[str, Any]]:
  """The :data:`PUBLISHED` figures of ``datasets``, each with its ``dataset``."""
  return [{'dataset': d, **row} for d in datasets for row in PUBLISHED.get(d, ())]


def published_table(datasets: Iterable[str]) -> str:
  """Markdown of the published figures on ``datasets``; '' when none has any."""
  rows = published_rows(datasets)
  if not rows:
    return ''
  lines = ['| dataset | method | modes | %HQ | rev. KL ↓ | source |', '|---|---|---|---|---|---|']
  for r in rows:
    hq = None if r['hq_fraction'] is None else 100 * r['hq_fraction']
    lines.append(f"| {r['dataset']} | {r['method']} | {r['modes']:g} / {r['max_modes']} "
                 f"| {_fmt(hq)} | {_fmt(r['reverse_kl'])} | {r['source']} |")
  return '\n'.join(lines) + '\n'


def _quality_and_coverage(rows: list[dict[str, Any]]):
  """Per-dataset axes: images use FD (lower is better) and recall; points %HQ and modes."""
  if all(r.get('fd') is not None for r in rows) and any(r.get('max_modes') is None for r in rows):
    return ('fd', 'FD in classifier features (better ↑)', True, 'recall', 'recall')
  return ('hq_fraction', 'high-quality fraction (better ↑)', False,
          'modes_fraction', 'modes captured / all')


def corner_keys(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, str]]:
  """Per dataset, the figure that measures each corner (the axes of :func:`trilemma_figure`).

  Quality is ``'fd'`` (lower is better) on image data and ``'hq_fraction'`` on
  mixtures; coverage ``'recall'`` on image data and ``'modes'`` on mixtures;
  speed ``'samples_per_second'``.

  Returns:
    ``{dataset: {'quality' | 'coverage' | 'speed': row key}}``.
  """
  out = {}
  for dataset in sorted({r['dataset'] for r in rows}):
    q_key, _, _, c_key, _ = _quality_and_coverage([r for r in rows if r['dataset'] == dataset])
    out[dataset] = {'quality': q_key, 'coverage': 'modes' if c_key == 'modes_fraction' else c_key,
                    'speed': 'samples_per_second'}
  return out


def corner_leaders(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """Per dataset, the row that leads each corner of the trilemma.

  The corners are measured by :func:`corner_keys`; on mixtures the lower
  reverse KL breaks a tie in modes. Rows without a finite figure for a corner
  are left out of it, and a corner no row has is absent.

  Returns:
    ``{dataset: {'quality' | 'coverage' | 'speed': row}}``.
  """
  out: dict[str, dict[str, dict[str, Any]]] = {}
  for dataset in sorted({r['dataset'] for r in rows}):
    sub = [r for r in rows if r['dataset'] == dataset]
    axes = _quality_and_coverage(sub)
    out[dataset] = {}
    for corner in ('quality', 'coverage', 'speed'):
      scored = [(score, i) for i, r in enumerate(sub)
                if (score := _corner_score(r, corner, axes)) is not None]
      if scored:
        out[dataset][corner] = sub[max(scored)[1]]
  return out


def _corner_score(row: dict[str, Any], corner: str, axes) -> tuple[float, ...] | None:
  """A tuple that is larger for a better row, or None without a finite figure."""
  q_key, _, lower_better, c_key, _ = axes
  finite = lambda v: v is not None and math.isfinite(v)
  if corner == 'quality':
    v = row.get(q_key)
    return ((-v if lower_better else v),) if finite(v) else None
  if corner == 'speed':
    v = row.get('samples_per_second')
    return (v,) if finite(v) else None
  if c_key == 'modes_fraction':
    modes, max_modes, kl = row.get('modes'), row.get('max_modes'), row.get('reverse_kl')
    if not finite(modes) or not max_modes:
      return None
    return (modes / max_modes, -kl if finite(kl) else -math.inf)
  v = row.get(c_key)
  return (v,) if finite(v) else None


def _marker(family: str) -> str:
  """The family's marker (:class:`~trilemma_jax.families.FamilyDef`); 'o' if it cannot be loaded."""
  from trilemma_jax import families
  try:
    return families.get(family).marker
  except (ValueError, ImportError):
    return 'o'


def trilemma_figure(rows: Sequence[dict[str, Any]], path: str | None = None):
  """Quality against samples/s (log axis), coverage as colour, one panel per dataset.

  Drawn on a standalone ``matplotlib.figure.Figure``: pyplot's backend and state
  are left alone, so a notebook's inline plots keep working.

  Returns:
    The figure; it is also written to ``path`` when one is given.
  """
  import matplotlib
  from matplotlib import cm, colors, lines
  from matplotlib.figure import Figure

  datasets = sorted({r['dataset'] for r in rows})
  fig = Figure(figsize=(6.0 * len(datasets) + 1.0, 4.8), dpi=120, layout='constrained')
  axes = fig.subplots(1, len(datasets), squeeze=False)
  cmap = matplotlib.colormaps['viridis']
  markers = {f: _marker(f) for f in dict.fromkeys(r['family'] for r in rows)}
  for ax, dataset in zip(axes[0], datasets):
    sub = [dict(r) for r in rows if r['dataset'] == dataset]
    for r in sub:
      if r.get('modes') is not None and r.get('max_modes'):
        r['modes_fraction'] = r['modes'] / r['max_modes']
    q_key, q_label, lower_better, c_key, c_label = _quality_and_coverage(sub)
    for r in sub:
      x, y = r.get('samples_per_second'), r.get(q_key)
      if x is None or y is None:
        continue
      c = r.get(c_key)
      colour = cmap(c) if c is not None else 'grey'
      ax.errorbar(x, y, xerr=r.get('samples_per_second_std') or 0, yerr=r.get(f'{q_key}_std') or 0,
                  fmt=markers[r['family']], color=colour, ms=11, mec='black',
                  ecolor='0.5', capsize=2)
      label = f"{r.get('variant') or r['family']} {r['sampler']} (NFE {r['nfe']})"
      ax.annotate(label, (x, y), fontsize=7, xytext=(6, 4), textcoords='offset points')
    ax.set_xscale('log')
    if lower_better:
      ax.invert_yaxis()
    ax.set_xlabel('samples/s at batch 100 (log; faster →)')
    ax.set_ylabel(q_label)
    ax.margins(x=0.25, y=0.12)
    ax.set_title(f'{dataset}: colour = {c_label} (yellow = full coverage)', fontsize=9)
    ax.grid(True, which='both', alpha=0.3)
  sm = cm.ScalarMappable(cmap=cmap, norm=colors.Normalize(0, 1))
  fig.colorbar(sm, ax=axes[0].tolist(), shrink=0.8, label='coverage')
  handles = [lines.Line2D([], [], marker=m, ls='', color='0.6', mec='black', ms=9, label=f)
             for f, m in markers.items()]
  fig.legend(handles=handles, loc='outside lower center', ncols=len(handles), frameon=False)
  fig.suptitle('The generative learning trilemma: quality vs speed, coverage as colour',
               fontsize=11)
  if path:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.savefig(path, bbox_inches='tight')
  return fig
