"""trilemma_jax: VAE, GAN, DDPM and DDGAN in JAX/Flax, measured on the generative learning trilemma."""

__version__ = '0.1.0'
