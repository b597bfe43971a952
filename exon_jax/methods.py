"""Training methods behind one small interface: `method_of(config)` gives the network, the
optimiser, the train step and the batch pipeline of `config.method`.

- "exon": the paper's EXoN (Sec. 3; `exon_jax.train.make_train_step`).
- "revision": the authors' revised code (`exon_jax.revision`, docs/revision.md).

A new method is one more `Method` in `METHODS`; the host loop, checkpoints and evaluation
take whatever it builds (a flax module with `encode`/`decode`/`classify`, an optax
transformation, a pure `(state, hparams, batch) -> (state, metrics)` step).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from exon_jax import backend, models, train
from exon_jax.revision import step as revision_step


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Which images an epoch draws and how many steps it takes.

    Attributes:
      pool: 'unlabelled' (the unlabelled split) or 'all' (every training image, labelled
        and validation ones included: the authors' revision).
      steps: 'pass' (one pass over the pool, ceil(N / Bu) steps) or 'whole_batch'
        (N // (Bu + Bl) steps, as their `total_length // batch_size`).
      labelled_restart: labelled batches one pass over the labelled set with a short
        last batch, restarted when exhausted (`batching.labelled_batch_sizes`).
    """

    pool: str = "unlabelled"
    steps: str = "pass"
    labelled_restart: bool = False

    def epoch_steps(self, pool_size: int, batch_unlabelled: int, batch_labelled: int) -> int:
        """Steps per epoch (0 means one pass, `TrainSettings`' default)."""
        if self.steps == "pass":
            return 0
        return max(1, pool_size // (batch_unlabelled + batch_labelled))


@dataclasses.dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
      name: `config.method`.
      network_kind: config -> 'mlp' | 'conv' (picks the backend's workarounds).
      build_model: (config, num_classes, image_shape [H, W, C], `Layouts`) -> flax module;
        raises ValueError for a network the images cannot use.
      build_optimizer: (config, steps_per_epoch) -> optax transformation.
      make_train_step: (config, model, optimizer, settings) ->
        `(state, hparams, batch) -> (state, metrics)`.
      pipeline: config -> `Pipeline`.
      check: config -> [(field, problem)]: what this method needs of the config beyond the
        fields every method shares (`configuration.validate_config` reports the first).
    """

    name: str
    network_kind: Callable[[ml_collections.ConfigDict], str]
    build_model: Callable[..., nn.Module]
    build_optimizer: Callable[[ml_collections.ConfigDict, int], optax.GradientTransformation]
    make_train_step: Callable[..., Callable]
    pipeline: Callable[[ml_collections.ConfigDict], Pipeline]
    check: Callable[[ml_collections.ConfigDict], list[tuple[str, str]]] = lambda config: []


@dataclasses.dataclass(frozen=True)
class Layouts:
    """The backend's layer paths, resolved (`backend.dense_weight_gradient`,
    `backend.conv_weight_gradient`): no 'auto' left."""

    dense: str
    conv: str


def compute_dtype(config: ml_collections.ConfigDict):
    """The dtype of the networks' matmul/convolution operands (`config.model.compute_dtype`)."""
    return jnp.bfloat16 if config.model.compute_dtype == "bfloat16" else jnp.float32


def _exon_model(
    config: ml_collections.ConfigDict, num_classes: int, image_shape, layouts: Layouts
) -> nn.Module:
    dtype = compute_dtype(config)
    layout = layouts.dense
    if config.model.network == "mlp":
        return models.EXoNModel(
            encoder=models.MLPEncoder(
                num_classes=num_classes,
                latent_dim=config.model.latent_dim,
                hidden=tuple(config.model.hidden),
                compute_dtype=dtype,
                dense_layout=layout,
            ),
            decoder=models.MLPDecoder(
                output_shape=tuple(image_shape),
                hidden=tuple(config.model.hidden),
                compute_dtype=dtype,
                dense_layout=layout,
            ),
            classifier=None,
        )
    if tuple(image_shape) != (32, 32, 3):
        raise ValueError(
            f"config.model.network: 'conv' is the paper's CIFAR-10 network for "
            f"32x32x3 images, the data has {tuple(image_shape)}"
        )
    return models.EXoNModel(
        encoder=models.ConvEncoder(
            num_classes=num_classes,
            latent_dim=config.model.latent_dim,
            compute_dtype=dtype,
            dense_layout=layout,
        ),
        decoder=models.ConvDecoder(
            compute_dtype=dtype,
            transposed_conv=backend.transposed_conv_path(),
            dense_layout=layout,
        ),
        classifier=models.Classifier(
            num_classes=num_classes, compute_dtype=dtype, dense_layout=layout
        ),
    )


def _exon_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int = 1):
    """RMSprop (rho 0.9, eps 1e-7 inside the root, as Keras) or Adam (eps 1e-7, as Keras)."""
    del steps_per_epoch  # constant learning rate
    if config.optimizer.name == "rmsprop":
        return optax.rmsprop(config.optimizer.learning_rate, decay=0.9, eps=1e-7)
    return optax.adam(config.optimizer.learning_rate, eps=1e-7)


EXON = Method(
    name="exon",
    network_kind=lambda config: config.model.network,
    build_model=_exon_model,
    build_optimizer=_exon_optimizer,
    make_train_step=lambda config, model, optimizer, settings: train.make_train_step(
        model, optimizer, settings
    ),
    pipeline=lambda config: Pipeline(),
)


def _revision_pipeline(config: ml_collections.ConfigDict) -> Pipeline:
    if revision_step.revision_settings(config).pipeline == "official":
        return Pipeline(pool="all", steps="whole_batch", labelled_restart=True)
    return Pipeline()


def _revision_check(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
    if "revision" not in config:
        return [
            (
                "revision",
                "method 'revision' needs a config.revision section (configs/mnist100_revision.py)",
            )
        ]
    if config.model.beta_mode != "fixed":
        return [
            ("model.beta_mode", "the revision uses a fixed observation noise beta: set 'fixed'")
        ]
    return []


def _revision_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int = 1):
    return revision_step.build_revision_optimizer(
        revision_step.revision_settings(config), steps_per_epoch
    )


REVISION = Method(
    name="revision",
    network_kind=lambda config: "conv",  # its classifier is a CNN
    build_model=lambda config, num_classes, image_shape, layouts: (
        revision_step.build_revision_model(
            revision_step.revision_settings(config),
            num_classes,
            image_shape,
            layouts.conv,
            backend.transposed_conv_path(),
        )
    ),
    build_optimizer=_revision_optimizer,
    make_train_step=lambda config, model, optimizer, settings: (
        revision_step.make_revision_train_step(
            model, optimizer, settings, revision_step.revision_settings(config)
        )
    ),
    pipeline=_revision_pipeline,
    check=_revision_check,
)

METHODS = {method.name: method for method in (EXON, REVISION)}


def method_of(config: ml_collections.ConfigDict) -> Method:
    """The `Method` of `config.method` (default 'exon'); KeyError names the unknown one."""
    name = config.get("method", "exon")
    if name not in METHODS:
        raise KeyError(f"config.method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]
