"""The toy family's profile entry: a small job beside a built-in family."""

from trilemma_jax.profiles import Profile

SMOKE = Profile(
    datasets=('grid25',),
    families=('toy_family', 'vae'),
    seeds=(0, 1),
    overrides={('toy_family', 'grid25'): {'train.steps': 40, 'train.log_every': 20},
               ('vae', 'grid25'): {'train.steps': 40, 'train.log_every': 20}},
    num_samples=300,
    speed_repeats=1,
    description='a family from outside the library, trained and reported beside the VAE',
)
