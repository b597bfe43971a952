"""exon_jax: EXoN, a semi-supervised VAE whose latent space is designed in advance."""


def load_run(workdir: str, point=None):
    """A trained run from its workdir (see `exon_jax.api.load_run`)."""
    from exon_jax.api import load_run as _load_run

    return _load_run(workdir, point)
