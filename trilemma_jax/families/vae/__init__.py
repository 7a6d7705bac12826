"""The variational auto-encoder family (see :mod:`trilemma_jax.families.vae.family`)."""

from trilemma_jax.families import FamilyDef
from trilemma_jax.families.vae import config, family

FAMILY = FamilyDef(name='vae', get_config=config.get_config, validate=config.validate,
                   build=family.build_family, marker='o')
