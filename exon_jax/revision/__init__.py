"""The authors' revised EXoN (an-seunghwan/EXoN_official; Pattern Recognition Letters 2023,
"Customization of latent space in semi-supervised variational autoencoder") as pieces the
host loop plugs in when `config.method == "revision"`: networks (`networks`), mix-up and
straight-through Gumbel-max (`mixup`), on-device augmentation (`augment`), epoch schedules
(`schedules`), and the settings, optimiser and train step (`step`). See docs/revision.md.
"""

from exon_jax.revision.networks import RevisionModel, cifar_revision_model, mnist_revision_model
from exon_jax.revision.step import (
    RevisionSettings,
    build_revision_model,
    build_revision_optimizer,
    make_revision_train_step,
    revision_settings,
)

__all__ = [
    "RevisionModel",
    "RevisionSettings",
    "build_revision_model",
    "build_revision_optimizer",
    "cifar_revision_model",
    "make_revision_train_step",
    "mnist_revision_model",
    "revision_settings",
]
