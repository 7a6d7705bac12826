"""The denoising diffusion family (see :mod:`trilemma_jax.families.ddpm.family`)."""

from trilemma_jax.families import FamilyDef
from trilemma_jax.families.ddpm import config, family

FAMILY = FamilyDef(name='ddpm', get_config=config.get_config, validate=config.validate,
                   build=family.build_family, marker='^',
                   step_schedules=config.step_schedules)
