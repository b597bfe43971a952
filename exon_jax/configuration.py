"""From a ConfigDict to validated, typed building blocks.

`validate_config` runs before anything compiles and names the offending field;
the `build_*` functions turn the config into the prior, the network, the
optimiser, the static `TrainSettings` and the traced `HParams` (one per sweep
point). Jitted code never sees a ConfigDict.
"""
from __future__ import annotations

import itertools
from typing import Any

import jax.numpy as jnp
import ml_collections
import optax

from exon_jax import models, priors
from exon_jax.losses import LIKELIHOODS
from exon_jax.train import BETA_MODES, OBJECTIVES, HParams, TrainSettings

KNOWN_DATASETS = ("mnist", "fashion_mnist", "cifar10")
PRIOR_LAYOUTS = ("circle", "two_component", "blocks")
NETWORKS = ("mlp", "conv")
OPTIMIZERS = ("rmsprop", "adam")
SOURCES = ("auto", "files", "tfds")
SWEEP_FIELDS = ("lambda1", "lambda2", "epsilon", "distance", "seed")


class ConfigError(ValueError):
    """A config field holds a value the experiment cannot use."""


def _require(condition: bool, field: str, message: str):
    if not condition:
        raise ConfigError(f"config.{field}: {message}")


def validate_config(config: ml_collections.ConfigDict, num_classes: int | None = None) -> None:
    """Checks every field the experiment uses; raises ConfigError naming the field.

    Args:
      config: the experiment config.
      num_classes: K of the loaded data set, when known (checks the prior shape).
    """
    _require(config.data.source in SOURCES, "data.source", f"must be one of {SOURCES}")
    _require(isinstance(config.data.name, str) and config.data.name != "", "data.name",
             "must name a data set")
    if config.data.source == "files":
        _require(config.data.name in KNOWN_DATASETS, "data.name",
                 f"unknown data set {config.data.name!r} for source 'files'; known: {KNOWN_DATASETS}")
    _require(config.data.labelled_per_class > 0, "data.labelled_per_class", "must be positive")
    _require(config.prior.layout in PRIOR_LAYOUTS, "prior.layout", f"must be one of {PRIOR_LAYOUTS}")
    _require(config.prior.variance > 0, "prior.variance", "must be > 0")
    _require(config.prior.radius >= 0, "prior.radius", "must be >= 0 (0 = automatic)")
    _require(config.prior.distance > 0, "prior.distance", "must be > 0")
    _require(config.model.network in NETWORKS, "model.network", f"must be one of {NETWORKS}")
    _require(config.model.latent_dim > 0, "model.latent_dim", "must be positive")
    _require(config.model.beta_mode in BETA_MODES, "model.beta_mode", f"must be one of {BETA_MODES}")
    _require(config.model.beta > 0, "model.beta", "must be > 0")
    _require(config.model.compute_dtype in ("float32", "bfloat16"), "model.compute_dtype",
             "must be 'float32' or 'bfloat16'")
    _require(config.loss.objective in OBJECTIVES, "loss.objective", f"must be one of {OBJECTIVES}")
    _require(config.loss.likelihood in LIKELIHOODS, "loss.likelihood", f"must be one of {LIKELIHOODS}")
    _require(config.loss.lambda1 >= 0, "loss.lambda1", "must be >= 0")
    _require(config.loss.lambda2 >= 0, "loss.lambda2", "must be >= 0")
    _require(config.loss.epsilon > 0, "loss.epsilon", "must be > 0")
    _require(config.loss.temperature > 0, "loss.temperature", "must be > 0")
    _require(config.optimizer.name in OPTIMIZERS, "optimizer.name", f"must be one of {OPTIMIZERS}")
    _require(config.optimizer.learning_rate > 0, "optimizer.learning_rate", "must be > 0")
    _require(config.train.epochs > 0, "train.epochs", "must be positive")
    _require(config.train.batch_unlabelled > 0, "train.batch_unlabelled", "must be positive")
    _require(config.train.batch_labelled > 0, "train.batch_labelled", "must be positive")
    _require(config.train.checkpoint_every > 0, "train.checkpoint_every", "must be positive")
    _require(config.train.eval_every > 0, "train.eval_every", "must be positive")
    _require(config.train.model_axis in ("auto", "vmap", "map"), "train.model_axis",
             "must be 'auto', 'vmap' or 'map'")
    _require(config.train.epoch_loop in ("auto", "scan", "python"), "train.epoch_loop",
             "must be 'auto', 'scan' or 'python'")
    _require(config.sweep.mode in ("product", "zip"), "sweep.mode", "must be 'product' or 'zip'")
    for name in SWEEP_FIELDS:
        values = tuple(config.sweep[name])
        if name in ("lambda1", "lambda2"):
            _require(all(v >= 0 for v in values), f"sweep.{name}", "values must be >= 0")
        if name in ("epsilon", "distance"):
            _require(all(v > 0 for v in values), f"sweep.{name}", "values must be > 0")
    if tuple(config.sweep.distance):
        _require(config.prior.layout == "two_component", "sweep.distance",
                 "only applies to the two_component prior layout")
    if config.sweep.mode == "zip":
        lengths = {len(tuple(config.sweep[n])) for n in SWEEP_FIELDS if tuple(config.sweep[n])}
        _require(len(lengths) <= 1, "sweep", f"mode 'zip' needs equal-length lists, got {lengths}")
    if config.prior.layout == "circle":
        _require(config.model.latent_dim == 2, "model.latent_dim", "the circle prior is 2-D")
    if config.prior.layout == "two_component":
        _require(config.model.latent_dim == 2, "model.latent_dim", "the two_component prior is 2-D")
        if num_classes is not None:
            _require(num_classes == 2, "prior.layout",
                     f"two_component needs 2 classes, the data has {num_classes} (set data.classes)")
    if config.prior.layout == "blocks":
        _require(0 < config.prior.relevant_dim <= config.model.latent_dim, "prior.relevant_dim",
                 "must be in (0, model.latent_dim]")


def build_prior(config: ml_collections.ConfigDict, num_classes: int,
                distance: float | None = None) -> priors.MixturePrior:
    """The designed prior of `config.prior` for K = num_classes; shapes [K, d]."""
    layout = config.prior.layout
    if layout == "circle":
        prior = priors.circle_prior(num_classes, config.prior.radius or None, config.prior.variance)
    elif layout == "two_component":
        prior = priors.two_component_prior(
            config.prior.distance if distance is None else distance, config.prior.variance)
    else:
        prior = priors.blocks_prior(
            num_classes, config.prior.relevant_dim,
            config.model.latent_dim - config.prior.relevant_dim, config.prior.max_mean,
            config.prior.relevant_variance, config.prior.irrelevant_variance)
    expected = (num_classes, config.model.latent_dim)
    if prior.means.shape != expected:
        raise ConfigError(f"config.prior: layout {layout!r} gives shape {prior.means.shape}, "
                          f"expected (K, d) = {expected}")
    return prior


def compute_dtype(config: ml_collections.ConfigDict):
    return jnp.bfloat16 if config.model.compute_dtype == "bfloat16" else jnp.float32


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                image_shape: tuple[int, ...]) -> models.EXoNModel:
    """The EXoN network of `config.model` for images of `image_shape` [H, W, C]."""
    dtype = compute_dtype(config)
    if config.model.network == "mlp":
        return models.EXoNModel(
            encoder=models.MLPEncoder(num_classes=num_classes, latent_dim=config.model.latent_dim,
                                      hidden=tuple(config.model.hidden), compute_dtype=dtype),
            decoder=models.MLPDecoder(output_shape=tuple(image_shape),
                                      hidden=tuple(config.model.hidden),
                                      compute_dtype=dtype),
            classifier=None)
    if tuple(image_shape) != (32, 32, 3):
        raise ConfigError(f"config.model.network: 'conv' is the paper's CIFAR-10 network for "
                          f"32x32x3 images, the data has {tuple(image_shape)}")
    return models.EXoNModel(
        encoder=models.ConvEncoder(num_classes=num_classes, latent_dim=config.model.latent_dim,
                                   compute_dtype=dtype),
        decoder=models.ConvDecoder(compute_dtype=dtype),
        classifier=models.Classifier(num_classes=num_classes, compute_dtype=dtype))


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """RMSprop (rho 0.9, eps 1e-7 inside the root, as Keras) or Adam (eps 1e-7, as Keras)."""
    if config.optimizer.name == "rmsprop":
        return optax.rmsprop(config.optimizer.learning_rate, decay=0.9, eps=1e-7)
    return optax.adam(config.optimizer.learning_rate, eps=1e-7)


def build_settings(config: ml_collections.ConfigDict, num_unlabelled: int,
                   num_labelled: int) -> TrainSettings:
    """Static settings; refuses batches larger than the data."""
    _require(config.train.batch_unlabelled <= num_unlabelled, "train.batch_unlabelled",
             f"{config.train.batch_unlabelled} is larger than the {num_unlabelled} unlabelled examples")
    _require(config.train.batch_labelled <= num_labelled, "train.batch_labelled",
             f"{config.train.batch_labelled} is larger than the {num_labelled} labelled examples")
    return TrainSettings(
        likelihood=config.loss.likelihood, beta_mode=config.model.beta_mode,
        objective=config.loss.objective, temperature=float(config.loss.temperature),
        hard=bool(config.loss.hard), batch_unlabelled=config.train.batch_unlabelled,
        batch_labelled=config.train.batch_labelled, num_unlabelled=num_unlabelled,
        num_labelled=num_labelled)


def sweep_points(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """The grid points of `config.sweep`: a list of {field: value}; [{}] for one model.

    `product` takes the Cartesian product of the non-empty lists, `zip` pairs them.
    Fields left empty take the base config's value. `seed` is a model seed.
    """
    named = [(n, tuple(config.sweep[n])) for n in SWEEP_FIELDS if tuple(config.sweep[n])]
    if not named:
        return [{}]
    names = [n for n, _ in named]
    if config.sweep.mode == "zip":
        rows = zip(*[v for _, v in named])
    else:
        rows = itertools.product(*[v for _, v in named])
    return [dict(zip(names, row)) for row in rows]


def build_hparams(config: ml_collections.ConfigDict, num_classes: int,
                  point: dict[str, Any] | None = None) -> HParams:
    """Traced hyper-parameters of one sweep point (base config values where unset)."""
    point = point or {}
    value = lambda name, default: jnp.asarray(point.get(name, default), jnp.float32)
    return HParams(
        lambda1=value("lambda1", config.loss.lambda1),
        lambda2=value("lambda2", config.loss.lambda2),
        epsilon=value("epsilon", config.loss.epsilon),
        beta=value("beta", config.model.beta),
        prior=build_prior(config, num_classes, point.get("distance")))


def point_seed(config: ml_collections.ConfigDict, point: dict[str, Any]) -> int:
    """The model seed of a sweep point (config.seed unless the sweep sets one)."""
    return int(point.get("seed", config.seed))


def point_name(point: dict[str, Any]) -> str:
    """A short, file-name-safe label such as 'lambda1=10_lambda2=1.1'."""
    if not point:
        return "model"
    return "_".join(f"{k}={v:g}" for k, v in point.items())

