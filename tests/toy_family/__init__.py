"""A family that lives outside the library: a diagonal Gaussian fitted by maximum likelihood.

It shows what adding a family takes: this folder (the family, its config, its
registration below) and a profile entry (``profile.py``). Nothing in
``trilemma_jax`` names it; runs find it by its import path, ``toy_family``.
"""

from trilemma_jax.families import FamilyDef
from toy_family import config, family

FAMILY = FamilyDef(name='toy_family', get_config=config.get_config, validate=config.validate,
                   build=family.build_family, marker='D')
