"""The GAN family (see :mod:`trilemma_jax.families.gan.family`)."""

from trilemma_jax.families import FamilyDef
from trilemma_jax.families.gan import config, family

FAMILY = FamilyDef(name='gan', get_config=config.get_config, validate=config.validate,
                   build=family.build_family, marker='s')
