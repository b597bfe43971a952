"""exon_jax: EXoN, a semi-supervised VAE with a pre-designed Gaussian-mixture latent space."""
