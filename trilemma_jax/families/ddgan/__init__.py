"""The denoising diffusion GAN family (see :mod:`trilemma_jax.families.ddgan.family`)."""

from trilemma_jax.families import FamilyDef
from trilemma_jax.families.ddgan import config, family

FAMILY = FamilyDef(name='ddgan', get_config=config.get_config, validate=config.validate,
                   build=family.build_family, marker='*',
                   step_schedules=config.step_schedules)
