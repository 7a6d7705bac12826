"""Profiles of the trilemma job (:mod:`trilemma_jax.harness`, ``experiments/trilemma.py``).

A profile names the datasets, families and seeds, and per (family, dataset) the
overrides of the family's config that set the budget. Families on the same
dataset get comparable budgets: the same data and training times of the same
order on the profile's target machine. How the budgets of the ``default``
profile were sized is in ``docs/budgets.md``.

A profile outside this module (say, one that adds a family of a user's) is named
by ``'<import path of a module>:<attribute>'``, e.g. ``my_project.profiles:SMALL``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from trilemma_jax.families import BUILTIN as BUILTIN_FAMILIES


@dataclasses.dataclass(frozen=True)
class Profile:
  """What the main job trains and how it scores it.

  Attributes:
    datasets: dataset names (see :func:`trilemma_jax.data.load_info`).
    families: families trained on every dataset (built-in names or import paths).
    seeds: seeds of every (family, dataset); rows report mean ± std over them.
    overrides: ``{(family, dataset): {'train.steps': 2000, ...}}`` applied to
      the family's config for that dataset; ``(family, '*')`` applies to every
      dataset (then the dataset-specific entry on top).
    num_samples: generated images scored for FD/KID/PRDC (2-D data always use
      2,500; stacked digits 26,000 for the mode count).
    speed_repeats: timed sampler calls at batch 100 after the warm-up.
    description: one line for the report.
    variants: ``{entry: (family, overrides)}``: entries of ``families`` that
      are a family under other settings, e.g. ``'ddgan_T2': ('ddgan',
      {'ddgan.num_steps': 2})``. A variant trains in its own run directory;
      it gets its family's overrides, then its own, then ``overrides`` keyed
      by the entry. Its rows carry the family's name and are told apart by
      their sampler (``ddgan2``) or, where the sampler is the same, by
      ``variant``.
  """

  datasets: tuple[str, ...]
  families: tuple[str, ...] = BUILTIN_FAMILIES
  seeds: tuple[int, ...] = (0, 1, 2)
  overrides: Mapping[tuple[str, str], Mapping[str, Any]] = dataclasses.field(
      default_factory=dict)
  num_samples: int = 2000
  speed_repeats: int = 5
  description: str = ''
  variants: Mapping[str, tuple[str, Mapping[str, Any]]] = dataclasses.field(
      default_factory=dict)

  def family_of(self, entry: str) -> str:
    """The family an entry of ``families`` trains (itself unless it is a variant)."""
    return self.variants[entry][0] if entry in self.variants else entry

  def overrides_for(self, entry: str, dataset: str) -> dict[str, Any]:
    family = self.family_of(entry)
    out = dict(self.overrides.get((family, '*'), {}))
    out.update(self.overrides.get((family, dataset), {}))
    if entry in self.variants:
      out.update(self.variants[entry][1])
      out.update(self.overrides.get((entry, '*'), {}))
      out.update(self.overrides.get((entry, dataset), {}))
    return out


_TINY = {'train.steps': 60, 'train.log_every': 20, 'train.checkpoint_every': 60}

# VAE, GAN and DDPM get shorter runs than their configs' defaults to keep the
# main job short on 2 CPU cores; DDGAN keeps its configs' budgets, which it needs
# to show what it is (docs/budgets.md).
_DEFAULT = {
    ('vae', 'grid25'): {'train.steps': 4000},
    ('gan', 'grid25'): {'train.steps': 6000},
    ('ddpm', 'grid25'): {'train.steps': 3000, 'eval.num_examples': 500},
    ('ddgan', 'grid25'): {},  # its config's 3,000 steps
    ('vae', 'digits'): {'train.steps': 1500},
    ('gan', 'digits'): {'train.steps': 1500},
    ('ddpm', 'digits'): {'train.steps': 1000, 'ddpm.timesteps': 100, 'ddpm.vb_terms': 0},
    ('ddgan', 'digits'): {},  # its config's 1,800 steps
}

# The coverage profile's budgets: ring8 gets the grid25 budgets of the default
# profile and stacked digits its digits budgets (the same steps; the configs'
# nets, and batch sizes but for the DDGAN's, 32 on digits and 64 on stacked
# digits), so the three datasets' rows compare like with like. DDGAN keeps its
# configs' budgets there too: 6,000 steps on ring8 (the GAN's budget), 1,200 on
# stacked digits.
_COVERAGE = {
    **{(f, 'ring8'): o for (f, d), o in _DEFAULT.items() if d == 'grid25'},
    **{(f, 'stacked_digits'): o for (f, d), o in _DEFAULT.items() if d == 'digits'},
}
# Each sampler's modes are counted on 26,000 samples. On 2 cores the DDPM's
# 100-call ancestral sampler takes 8-10 minutes per seed for them, DDIM-50
# about 4: on stacked digits the DDPM is sampled with DDIM-50 and DDIM-4 only,
# which keeps the profile within its hour (docs/coverage.md).
_COVERAGE['ddpm', 'stacked_digits'] = {**_COVERAGE['ddpm', 'stacked_digits'],
                                       'ddpm.ancestral': False, 'ddpm.ddim_steps': (50, 4)}

# Grid25's DDGAN recipe (T = 4) runs an energy score on the time grid p = 1.5. Each
# other T runs grid25 as it was measured (docs/ddgan_steps.md, sections 1, 26 and
# 31): T = 8 on the official grid (p = 1) with the score; T = 1 and 2 on it
# without, since on that grid the score blurs the grid's modes at T <= 4 (section 21).
_STEPS = {
    **_DEFAULT,
    **{(f'ddgan_T{t}', 'grid25'): {'ddgan.energy_weight': 0.0, 'ddgan.time_power': 1.0}
       for t in (1, 2)},
    ('ddgan_T8', 'grid25'): {'ddgan.time_power': 1.0},
}

# Stacked digits' DDGAN given sixteen times the coverage profile's steps, on the
# recipe that did best at eight times: R1 0.02 every 15 D updates, the official
# time grid and the cosine decay of the learning rates (where the 1,200-step
# default has none, p = 1.5 and constant rates), with the default's energy score
# and noise maps. At 9,600 steps it was the first recipe with KL to uniform near
# 0.1 (docs/ddgan_steps.md, section 35; the short default was worse there,
# section 33); 14,400 steps lowered the mean KL over five seeds from 0.105 to
# 0.089, lower on four (sections 36-37), and 19,200 steps to 0.076, lower on all
# five and every seed under issue 11's 0.1 (sections 38-40).
_STACKED_LONG = {'train.steps': 19200, 'ddgan.r1_gamma': 0.02, 'ddgan.time_power': 1.0,
                 'optim.cosine_decay': True}

PROFILES: dict[str, Profile] = {
    'quick': Profile(
        datasets=('grid25', 'digits'),
        seeds=(0,),
        overrides={
            ('vae', '*'): _TINY,
            ('gan', '*'): _TINY,
            ('ddpm', '*'): {**_TINY, 'optim.warmup_steps': 10, 'ddpm.timesteps': 20,
                            'ddpm.vb_terms': 5, 'ddpm.ddim_steps': (10, 4)},
            # One D update per step: the digits config's three, unrolled, triple the compile.
            ('ddgan', '*'): {**_TINY, 'ddgan.n_critic': 1},
        },
        num_samples=300,
        speed_repeats=2,
        description='every family, tiny budgets, one seed: a smoke test of the whole job (CI runs it)',
    ),
    # One seed: three do not fit the main job's 20 minutes on a slow 2-core machine at
    # these budgets (docs/budgets.md, session 21); --seeds 0,1,2 gives the spread.
    'default': Profile(
        datasets=('grid25', 'digits'),
        seeds=(0,),
        overrides=_DEFAULT,
        num_samples=1000,
        speed_repeats=3,
        description=('the README main job: grid25 and digits, four families, one seed '
                     '(--seeds 0,1,2 for mean ± std over three)'),
    ),
    'ddgan_steps': Profile(
        datasets=('grid25', 'digits'),
        families=('ddgan_T1', 'ddgan_T2', 'ddgan_T4', 'ddgan_T8', 'ddpm'),
        seeds=(0, 1, 2),
        overrides=_STEPS,
        variants={f'ddgan_T{t}': ('ddgan', {'ddgan.num_steps': t}) for t in (1, 2, 4, 8)},
        num_samples=1000,
        speed_repeats=3,
        description=('the DDGAN with T = 1, 2, 4 and 8 denoising steps beside the DDPM, '
                     "default budgets: quality, coverage and samples/s per T (Xiao et al.'s "
                     'ablation)'),
    ),
    'coverage': Profile(
        datasets=('ring8', 'stacked_digits'),
        seeds=(0, 1, 2),
        overrides=_COVERAGE,
        num_samples=1000,
        speed_repeats=3,
        description=('mode coverage: ring8 (8 modes, std 0.01) and stacked digits (1000 modes '
                     'counted on 26,000 samples), four families, three seeds, default budgets; '
                     'the stacked-digits DDGAN at 1,200 steps, its long run is profile '
                     'stacked_long'),
    ),
    'stacked_long': Profile(
        datasets=('stacked_digits',),
        families=('ddgan',),
        seeds=(0, 1, 2),
        overrides={('ddgan', 'stacked_digits'): _STACKED_LONG},
        num_samples=1000,
        speed_repeats=3,
        description=('stacked digits DDGAN at 19,200 steps (the long-run recipe: R1, official '
                     'time grid, cosine decay, energy score, noise maps), three seeds'),
    ),
    'fashion': Profile(
        datasets=('fashion_mnist',),
        seeds=(0, 1, 2),
        num_samples=5000,
        description='Fashion-MNIST 28x28: hours on CPU',
    ),
    'cifar10': Profile(
        datasets=('tfds:cifar10',),
        seeds=(0, 1, 2),
        num_samples=10000,
        description='CIFAR-10 (prepared TFDS) with paper-sized models: for accelerators',
    ),
}


def get_profile(spec: str) -> Profile:
  """A profile of :data:`PROFILES` by name, or ``'<module>:<attribute>'`` from anywhere."""
  if spec in PROFILES:
    return PROFILES[spec]
  module_name, _, attribute = spec.partition(':')
  if not attribute:
    raise ValueError(f'Unknown profile {spec!r}; expected one of {sorted(PROFILES)} or '
                     "'<module>:<attribute>' naming a Profile.")
  try:
    profile = getattr(importlib.import_module(module_name), attribute)
  except (ImportError, AttributeError) as e:
    raise ValueError(f'Profile {spec!r} cannot be loaded: {e}.') from None
  if not isinstance(profile, Profile):
    raise ValueError(f'{spec} is a {type(profile).__name__}, not a trilemma_jax Profile.')
  return profile
