"""From a ConfigDict to validated, typed building blocks.

`validate_config` runs before anything compiles and names the offending field;
the `build_*` functions turn the config into the prior, the network, the
optimiser, the static `TrainSettings` and the traced `HParams` (one per sweep
point). Jitted code never sees a ConfigDict.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from exon_jax import backend, methods, priors
from exon_jax.analysis import POSTERIOR_KINDS
from exon_jax.losses import LIKELIHOODS
from exon_jax.train import BETA_MODES, OBJECTIVES, HParams, TrainSettings
from exon_jax.errors import ExpectedError

METHODS = tuple(methods.METHODS)
PRIOR_LAYOUTS = ("circle", "two_component", "blocks", "grid", "groups", "file", "custom")
NETWORKS = ("mlp", "conv")
OPTIMIZERS = ("rmsprop", "adam")
SOURCES = ("auto", "files", "tfds")
COMPUTE_DTYPES = ("float32", "bfloat16")
MODEL_AXIS_MODES = ("auto", "vmap", "map")
EPOCH_LOOPS = ("auto", "scan", "python")
SWEEP_MODES = ("product", "zip")
SWEEP_FIELDS = ("lambda1", "lambda2", "epsilon", "distance", "beta", "seed")
# the config field each sweep field sets for its grid point (`build_hparams`, `point_seed`)
SWEEP_TARGETS = {
    "lambda1": "loss.lambda1",
    "lambda2": "loss.lambda2",
    "epsilon": "loss.epsilon",
    "distance": "prior.distance",
    "beta": "model.beta",
    "seed": "seed",
}
# Fields that cannot change what a run trained: they may differ when a run resumes and may
# be overridden on top of the stored config by --mode=evaluate / analyze. A field matches
# when it equals an entry or lies below it ("analysis" covers analysis.grid_size).
RUN_OPTION_FIELDS = (
    "analysis",
    "train.eval_every",
    "train.checkpoint_every",
    "train.max_checkpoints",
    "train.model_axis",
    "train.epoch_loop",
    "train.dense_layout",
    "train.conv_layout",
    "train.keep_best",
    "data.dir",
    "data.path",
    "data.max_test",
)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ConfigError(ExpectedError, ValueError):
    """A config field holds a value the experiment cannot use."""


def _require(condition: bool, field: str, message: str):
    if not condition:
        raise ConfigError(f"config.{field}: {message}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _require_float32(value, field: str, positive: bool = False) -> None:
    """A number that float32 holds: finite, |value| <= float32 max, >= 0 (or > 0)."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    ok = ok and np.isfinite(value) and abs(value) <= _FLOAT32_MAX
    bound = "> 0" if positive else ">= 0"
    _require(
        ok and (value > 0 if positive else value >= 0),
        field,
        f"must be a finite number {bound} that float32 holds (|x| <= {_FLOAT32_MAX:.3g}), "
        f"got {value!r}",
    )


def validate_config(config: ml_collections.ConfigDict, num_classes: int | None = None) -> None:
    """Checks every field the experiment uses; raises ConfigError naming the field.

    Args:
      config: the experiment config.
      num_classes: K of the loaded data set, when known (checks the prior shape).
    """
    method = config.get("method", "exon")
    _require(method in METHODS, "method", f"must be one of {METHODS}")
    for field, problem in methods.METHODS[method].check(config)[:1]:
        _require(False, field, problem)
    _check_data(config)
    _check_prior(config)
    _check_model_and_loss(config)
    _check_training(config)
    _check_analysis(config)
    _check_seeds_and_sweep(config)
    _check_prior_fits_the_model(config)
    if num_classes is not None:
        check_classes(config, num_classes)


def _check_data(config: ml_collections.ConfigDict) -> None:
    """`config.data`."""
    _require(config.data.source in SOURCES, "data.source", f"must be one of {SOURCES}")
    _require(
        isinstance(config.data.name, str) and config.data.name != "",
        "data.name",
        "must name a data set",
    )
    _require(
        _is_int(config.data.labelled_per_class) and config.data.labelled_per_class >= 0,
        "data.labelled_per_class",
        "must be an integer >= 0 (0 = adapt to the data set: `adapted_labelled_per_class`)",
    )
    for name in ("max_unlabelled", "max_test", "validation"):
        value = config.data.get(name, 0)
        _require(
            _is_int(value) and value >= 0,
            f"data.{name}",
            f"must be an integer >= 0 (0 = {'none' if name == 'validation' else 'all'}), "
            f"got {value!r}",
        )
    _require(
        0 < config.data.get("test_fraction", 0.1) < 1, "data.test_fraction", "must lie in (0, 1)"
    )


def _check_prior(config: ml_collections.ConfigDict) -> None:
    """`config.prior`: layout, variances, the file / custom arrays it names."""
    _require(
        config.prior.layout in PRIOR_LAYOUTS, "prior.layout", f"must be one of {PRIOR_LAYOUTS}"
    )
    for name in ("variance", "relevant_variance", "irrelevant_variance"):
        value = config.prior.get(name, 1.0)
        _require_float32(value, f"prior.{name}", positive=True)
        _require(
            value >= priors.MIN_VARIANCE,
            f"prior.{name}",
            f"must be >= {priors.MIN_VARIANCE:g}, got {value!r} (a narrower component's "
            "float32 log-density and gradients overflow)",
        )
    _require(config.prior.radius >= 0, "prior.radius", "must be >= 0 (0 = automatic)")
    _require_float32(config.prior.distance, "prior.distance", positive=True)
    layout = config.prior.layout
    _require(
        not config.prior.get("file") or layout == "file",
        "prior.file",
        f"is set ({config.prior.get('file')}) but prior.layout is {layout!r}: pass "
        "--config.prior.layout=file to train on the file's prior (or drop prior.file)",
    )
    for field in ("means", "variances", "weights"):
        _require(
            config.prior.get(field) is None or layout == "custom",
            f"prior.{field}",
            f"is set but prior.layout is {layout!r}: pass --config.prior.layout=custom "
            f"to train on the inline prior (or drop prior.{field})",
        )
    if config.prior.layout == "file":
        _require(
            bool(config.prior.file),
            "prior.file",
            "must name a .json or .npz file "
            "holding means [K, d], variances and optional weights [K]",
        )
    if config.prior.layout == "custom":
        _require(
            config.prior.means is not None,
            "prior.means",
            "must hold the [K, d] means of the custom prior",
        )
        _require(
            config.prior.variances is not None,
            "prior.variances",
            "must hold the variances of the custom prior ([K, d], [K] or a scalar)",
        )


def _check_model_and_loss(config: ml_collections.ConfigDict) -> None:
    """`config.model` and `config.loss`."""
    _require(config.model.network in NETWORKS, "model.network", f"must be one of {NETWORKS}")
    _require(config.model.latent_dim > 0, "model.latent_dim", "must be positive")
    _require(
        config.model.beta_mode in BETA_MODES, "model.beta_mode", f"must be one of {BETA_MODES}"
    )
    _require_float32(config.model.beta, "model.beta", positive=True)
    _require(
        config.model.compute_dtype in COMPUTE_DTYPES,
        "model.compute_dtype",
        f"must be one of {COMPUTE_DTYPES}",
    )
    _require(config.loss.objective in OBJECTIVES, "loss.objective", f"must be one of {OBJECTIVES}")
    _require(
        config.loss.likelihood in LIKELIHOODS, "loss.likelihood", f"must be one of {LIKELIHOODS}"
    )
    _require_float32(config.loss.lambda1, "loss.lambda1")
    _require_float32(config.loss.lambda2, "loss.lambda2")
    _require_float32(config.loss.epsilon, "loss.epsilon", positive=True)
    _require_float32(config.loss.temperature, "loss.temperature", positive=True)


def _check_training(config: ml_collections.ConfigDict) -> None:
    """`config.optimizer`, `config.pretrain` and `config.train`."""
    _require(config.optimizer.name in OPTIMIZERS, "optimizer.name", f"must be one of {OPTIMIZERS}")
    _require_float32(config.optimizer.learning_rate, "optimizer.learning_rate", positive=True)
    _require_float32(config.pretrain.learning_rate, "pretrain.learning_rate", positive=True)
    for name in (
        "epochs",
        "batch_unlabelled",
        "batch_labelled",
        "checkpoint_every",
        "eval_every",
        "max_checkpoints",
    ):
        value = config.train[name]
        adaptable = name in ("batch_unlabelled", "batch_labelled")
        _require(
            _is_int(value) and (value > 0 or (adaptable and value == 0)),
            f"train.{name}",
            f"must be a positive integer{' (or 0 = adapt to the data set)' if adaptable else ''}"
            f", got {value!r}"
            + (" (checkpoints are how a run resumes)" if name == "max_checkpoints" else ""),
        )
    _require(
        _is_int(config.pretrain.epochs) and config.pretrain.epochs >= 0,
        "pretrain.epochs",
        "must be an integer >= 0",
    )
    _require(
        config.train.model_axis in MODEL_AXIS_MODES,
        "train.model_axis",
        f"must be one of {MODEL_AXIS_MODES}",
    )
    _require(
        config.train.epoch_loop in EPOCH_LOOPS, "train.epoch_loop", f"must be one of {EPOCH_LOOPS}"
    )
    _require(
        config.train.get("dense_layout", "auto") in backend.DENSE_LAYOUTS,
        "train.dense_layout",
        f"must be one of {backend.DENSE_LAYOUTS}",
    )
    _require(
        config.train.get("conv_layout", "auto") in backend.CONV_LAYOUTS,
        "train.conv_layout",
        f"must be one of {backend.CONV_LAYOUTS}",
    )
    keep_best = config.train.get("keep_best", False)
    _require(
        isinstance(keep_best, bool),
        "train.keep_best",
        f"must be True or False, got {keep_best!r}",
    )
    _require(
        not keep_best or bool(config.data.get("validation", 0)),
        "train.keep_best",
        "keeps the checkpoint of the lowest validation error: set data.validation (the "
        "training images held out for it) above 0",
    )


def _check_analysis(config: ml_collections.ConfigDict) -> None:
    """`config.analysis`."""
    _require(
        config.analysis.get("posterior", "mean") in POSTERIOR_KINDS,
        "analysis.posterior",
        f"must be one of {POSTERIOR_KINDS}",
    )
    workers = config.analysis.get("figure_workers", 0)
    _require(
        _is_int(workers) and workers >= 0,
        "analysis.figure_workers",
        "must be an integer >= 0 (0 = one process per CPU core)",
    )
    analysis = config.analysis
    for name, low in (("grid_size", 2), ("label_map_size", 2)):
        value = analysis.get(name, low)
        _require(
            _is_int(value) and value >= low,
            f"analysis.{name}",
            f"must be an integer >= {low}, got {value!r}",
        )
    extent = analysis.get("grid_extent", 0.0)
    _require(
        isinstance(extent, (int, float, np.number))
        and not isinstance(extent, bool)
        and bool(np.isfinite(extent))
        and bool(0 <= extent <= _FLOAT32_MAX),
        "analysis.grid_extent",
        f"must be 0 (auto: every designed centre +- 3 prior sd) or a finite number > 0, "
        f"got {extent!r}",
    )
    pairs = analysis.get("interpolations", ())
    _require(
        isinstance(pairs, (tuple, list))
        and all(
            isinstance(p, (tuple, list))
            and len(p) == 2
            and all(isinstance(c, str) or (_is_int(c) and c >= 0) for c in p)
            for p in pairs
        ),
        "analysis.interpolations",
        f"must be a tuple of (from, to) pairs of label indices or class names, got {pairs!r}",
    )
    _require_float32(analysis.get("activation_threshold", 0.0), "analysis.activation_threshold")
    for name in ("figures", "pdf", "tensorboard_images"):
        value = analysis.get(name, True)
        _require(
            isinstance(value, bool), f"analysis.{name}", f"must be True or False, got {value!r}"
        )
    classes = tuple(config.analysis.get("classes", (0,)))
    _require(
        len(classes) > 0 and all(isinstance(c, (int, str)) for c in classes),
        "analysis.classes",
        f"must be a non-empty tuple of labels or class names, got {classes}",
    )


def _check_seeds_and_sweep(config: ml_collections.ConfigDict) -> None:
    """The seeds and `config.sweep`."""
    _require(config.sweep.mode in SWEEP_MODES, "sweep.mode", f"must be one of {SWEEP_MODES}")
    _require(_is_int(config.seed) and config.seed >= 0, "seed", "must be an integer >= 0")
    _require(
        _is_int(config.data.seed) and config.data.seed >= 0, "data.seed", "must be an integer >= 0"
    )
    for name in SWEEP_FIELDS:
        values = tuple(config.sweep.get(name, ()))
        if name == "seed":
            _require(
                all(_is_int(v) and v >= 0 for v in values),
                "sweep.seed",
                f"values must be integers >= 0, got {values}",
            )
            _require(
                len(set(values)) == len(values), "sweep.seed", f"values must differ, got {values}"
            )
            continue
        for v in values:
            _require_float32(v, f"sweep.{name}", positive=name in ("epsilon", "distance", "beta"))
    if tuple(config.sweep.get("beta", ())):
        _require(
            config.model.beta_mode != "closed_form",
            "sweep.beta",
            "needs model.beta_mode 'fixed' or 'learned' (closed_form computes beta)",
        )
    if tuple(config.sweep.distance):
        _require(
            config.prior.layout == "two_component",
            "sweep.distance",
            "only applies to the two_component prior layout",
        )
    if config.sweep.mode == "zip":
        lengths = {len(tuple(config.sweep[n])) for n in SWEEP_FIELDS if tuple(config.sweep[n])}
        _require(len(lengths) <= 1, "sweep", f"mode 'zip' needs equal-length lists, got {lengths}")


def _check_prior_fits_the_model(config: ml_collections.ConfigDict) -> None:
    """The prior layout against `model.latent_dim`."""
    if config.prior.layout in ("circle", "grid", "groups"):
        _require(
            config.model.latent_dim == 2,
            "model.latent_dim",
            f"the {config.prior.layout} prior is 2-D",
        )
    if config.prior.layout == "two_component":
        _require(config.model.latent_dim == 2, "model.latent_dim", "the two_component prior is 2-D")
    if config.prior.layout == "blocks":
        _require(
            0 < config.prior.relevant_dim <= config.model.latent_dim,
            "prior.relevant_dim",
            "must be in (0, model.latent_dim]",
        )


def check_classes(
    config: ml_collections.ConfigDict,
    num_classes: int,
    class_names: tuple[str, ...] | None = None,
) -> None:
    """The checks that need the data's K (and class names, when given): interpolation
    labels in range and names of this data set, two_component with two classes. Raises
    ConfigError naming the field."""
    pairs = config.analysis.get("interpolations", ())
    bad = [c for p in pairs for c in p if _is_int(c) and c >= num_classes]
    _require(
        not bad,
        "analysis.interpolations",
        f"label {bad[0] if bad else ''} is out of range: the data has {num_classes} classes",
    )
    if class_names is not None:
        unknown = [c for p in pairs for c in p if isinstance(c, str) and c not in class_names]
        _require(
            not unknown,
            "analysis.interpolations",
            f"no class {unknown[0] if unknown else ''!r} in this data set "
            f"(its classes: {', '.join(class_names)})",
        )
    if config.prior.layout == "two_component":
        _require(
            num_classes == 2,
            "prior.layout",
            f"two_component needs 2 classes, the data has {num_classes} (set data.classes)",
        )


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """What the evaluation and the figures need of `config.analysis` (and the run's seed).

    Attributes:
      grid_size, grid_extent: the decoded grid_size x grid_size latent grid on
        [-extent, extent]^2 (paper: 13 x 13 on [-15, 15]^2 for negative SSIM, eq. 19);
        extent 0 = auto: the figures' grid covers every designed centre +- 3 prior sd,
        negative SSIM keeps the paper's 15.
      label_map_size: pixels a side of the label map (Figure 3).
      activation_threshold: delta of the activated subspace (Figures 5, 14).
      posterior: "samples" (z ~ q(z|x), as the paper draws Figures 3-4) or "mean".
      classes: focus classes of Figures 5, 6, 10, 13: label indices or class names.
      figures: draw the run's figures after training.
      figure_workers: processes drawing the figures (0 = one per CPU core, at most 8;
        1 = in-process).
      pdf: a PDF beside each figure's PNG (drawing takes ~1.5x as long; False in configs/mnist.py).
      tensorboard_images: reconstructions and the decoded probe in TensorBoard.
      seed: the run's seed (prior samples and posterior draws of the figures).
      latent_dim: d.
      interpolations: (from, to) pairs of label indices or class names (Figure 8 style
        decoded walks between designed centres).
    """

    grid_size: int
    grid_extent: float
    label_map_size: int
    activation_threshold: float
    posterior: str
    classes: tuple
    figures: bool
    figure_workers: int
    pdf: bool
    tensorboard_images: bool
    seed: int
    latent_dim: int
    interpolations: tuple = ()


def analysis_settings(config: ml_collections.ConfigDict) -> AnalysisSettings:
    """The validated `config.analysis` section as a frozen dataclass."""
    section = config.analysis
    return AnalysisSettings(
        grid_size=int(section.grid_size),
        grid_extent=float(section.grid_extent),
        label_map_size=int(section.label_map_size),
        activation_threshold=float(section.activation_threshold),
        posterior=section.get("posterior", "mean"),
        classes=tuple(section.get("classes", (0,))),
        figures=bool(section.figures),
        figure_workers=int(section.get("figure_workers", 0)),
        pdf=bool(section.get("pdf", True)),
        tensorboard_images=bool(section.get("tensorboard_images", True)),
        seed=int(config.seed),
        latent_dim=int(config.model.latent_dim),
        interpolations=tuple(tuple(p) for p in section.get("interpolations", ())),
    )


def resolve_path(path: str) -> str:
    """A relative path is taken from the working directory, else from the repository root."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(repo_root, path)
    return candidate if os.path.exists(candidate) else path


def build_prior(
    config: ml_collections.ConfigDict, num_classes: int, distance: float | None = None
) -> priors.MixturePrior:
    """The designed prior of `config.prior` for K = num_classes; shapes [K, d].

    Layouts: the paper's `circle` (Sec. 4.1), `two_component` (App. 6.3.2) and `blocks`
    (Sec. 4.2); `grid` and `groups` (classes sharing a region) builders; `file` (a .json or
    .npz with means, variances, optional weights) and `custom` (the same three inline).

    Raises:
      ConfigError: naming the field when the layout does not fit K and model.latent_dim.
    """
    layout = config.prior.layout
    latent_dim = config.model.latent_dim
    if layout in ("file", "custom"):
        if layout == "file":
            path = resolve_path(config.prior.file)
            where = f"config.prior.file ({config.prior.file})"
            try:
                arrays = priors.load_prior_file(path)
            except priors.PriorError as error:
                raise ConfigError(f"config.prior.file: {error}") from None
        else:
            where = "config.prior (custom: means, variances, weights)"
            arrays = {
                "means": config.prior.means,
                "variances": config.prior.variances,
                "weights": config.prior.weights,
            }
        try:
            means, variances, weights = priors.check_prior_arrays(
                arrays["means"],
                arrays["variances"],
                arrays.get("weights"),
                num_classes,
                latent_dim,
                where,
            )
        except priors.PriorError as error:
            raise ConfigError(str(error)) from None
        return priors.make_prior(means, variances, weights)
    if layout == "circle":
        prior = priors.circle_prior(num_classes, config.prior.radius or None, config.prior.variance)
    elif layout == "two_component":
        prior = priors.two_component_prior(
            config.prior.distance if distance is None else distance, config.prior.variance
        )
    elif layout == "grid":
        prior = priors.grid_prior(
            num_classes, config.prior.columns, config.prior.spacing, config.prior.variance
        )
    elif layout == "groups":
        try:
            prior = priors.groups_prior(
                num_classes,
                config.prior.groups,
                config.prior.group_radius,
                config.prior.spacing,
                config.prior.variance,
            )
        except priors.PriorError as error:
            raise ConfigError(f"config.prior.groups: {error}") from None
    else:
        prior = priors.blocks_prior(
            num_classes,
            config.prior.relevant_dim,
            latent_dim - config.prior.relevant_dim,
            config.prior.max_mean,
            config.prior.relevant_variance,
            config.prior.irrelevant_variance,
        )
    expected = (num_classes, latent_dim)
    if prior.means.shape != expected:
        raise ConfigError(
            f"config.prior: layout {layout!r} gives shape {prior.means.shape}, "
            f"expected (K, d) = {expected}"
        )
    return prior


compute_dtype = methods.compute_dtype


def layouts(config: ml_collections.ConfigDict) -> methods.Layouts:
    """`train.dense_layout` and `train.conv_layout` with 'auto' resolved for this backend."""
    return methods.Layouts(
        dense=backend.dense_weight_gradient(config.train.get("dense_layout", "auto")),
        conv=backend.conv_weight_gradient(config.train.get("conv_layout", "auto")),
    )


def build_model(
    config: ml_collections.ConfigDict,
    num_classes: int,
    image_shape: tuple[int, ...],
    layer_layouts: methods.Layouts | None = None,
):
    """The network of `config.method` (`methods.method_of`) for images [H, W, C], with the
    backend's layer paths `layer_layouts` (default: `layouts(config)`)."""
    layer_layouts = layer_layouts or layouts(config)
    try:
        return methods.method_of(config).build_model(
            config, num_classes, tuple(image_shape), layer_layouts
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None


def build_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int = 1
) -> optax.GradientTransformation:
    """The optimiser of `config.method` (`steps_per_epoch` steps an epoch for its schedules)."""
    return methods.method_of(config).build_optimizer(config, steps_per_epoch)


ADAPTED_STEPS_PER_EPOCH = 10
ADAPTED_MAX_BATCH = 2000


def adapted_labelled_per_class(class_counts) -> int:
    """`data.labelled_per_class = 0`: a tenth of the smallest class's training images, at
    least 1 and at most all but one of them (the paper's MNIST: 500 of ~5 400)."""
    smallest = int(min(class_counts))
    return max(1, min(smallest - 1, smallest // 10))


def adapted_batches(
    num_unlabelled: int, num_labelled: int, batch_unlabelled: int = 0
) -> tuple[int, int]:
    """`train.batch_unlabelled / batch_labelled = 0`: about ADAPTED_STEPS_PER_EPOCH steps an
    epoch (at most ADAPTED_MAX_BATCH unlabelled images a step, the paper's 2 000) unless
    `batch_unlabelled` is given, and labelled images in the data's proportion to it (at
    least 1, at most all of them; the paper's MNIST: 179 beside 2 000, for 5 000 and
    55 000 images)."""
    batch_u = batch_unlabelled or max(
        1, min(ADAPTED_MAX_BATCH, -(-num_unlabelled // ADAPTED_STEPS_PER_EPOCH))
    )
    batch_l = max(1, min(num_labelled, round(batch_u * num_labelled / max(num_unlabelled, 1))))
    return batch_u, batch_l


def build_settings(
    config: ml_collections.ConfigDict, num_unlabelled: int, num_labelled: int
) -> TrainSettings:
    """Static settings; refuses batches larger than the data. Batch sizes of 0 adapt to the
    data (`adapted_batches`).

    `num_unlabelled` is the size of the pool the epoch draws from (`methods.Pipeline.pool`).
    """
    pipeline = methods.method_of(config).pipeline(config)
    batch_u, batch_l = adapted_batches(num_unlabelled, num_labelled, config.train.batch_unlabelled)
    batch_l = config.train.batch_labelled or batch_l
    _require(
        batch_u <= num_unlabelled,
        "train.batch_unlabelled",
        f"{batch_u} is larger than the {num_unlabelled} unlabelled examples",
    )
    _require(
        batch_l <= num_labelled,
        "train.batch_labelled",
        f"{batch_l} is larger than the {num_labelled} labelled examples",
    )
    return TrainSettings(
        likelihood=config.loss.likelihood,
        beta_mode=config.model.beta_mode,
        objective=config.loss.objective,
        temperature=float(config.loss.temperature),
        hard=bool(config.loss.hard),
        batch_unlabelled=batch_u,
        batch_labelled=batch_l,
        num_unlabelled=num_unlabelled,
        num_labelled=num_labelled,
        epoch_steps=pipeline.epoch_steps(num_unlabelled, batch_u, batch_l),
        labelled_restart=pipeline.labelled_restart,
    )


def sweep_points(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """The grid points of `config.sweep`: a list of {field: value}; [{}] for one model.

    `product` takes the Cartesian product of the non-empty lists, `zip` pairs them.
    Fields left empty take the base config's value. `seed` is a model seed.
    """
    named = [(n, tuple(config.sweep[n])) for n in SWEEP_FIELDS if tuple(config.sweep[n])]
    if not named:
        return [{}]
    names = [n for n, _ in named]
    values = [v for _, v in named]
    rows = zip(*values) if config.sweep.mode == "zip" else itertools.product(*values)
    return [dict(zip(names, row)) for row in rows]


def build_hparams(
    config: ml_collections.ConfigDict,
    num_classes: int,
    point: dict[str, Any] | None = None,
    prior: priors.MixturePrior | None = None,
) -> HParams:
    """Traced hyper-parameters of one sweep point (base config values where unset), with
    `prior` (default: the config's, `build_prior`)."""
    point = point or {}
    value = lambda name, default: jax.device_put(np.float32(point.get(name, default)))
    return HParams(
        lambda1=value("lambda1", config.loss.lambda1),
        lambda2=value("lambda2", config.loss.lambda2),
        epsilon=value("epsilon", config.loss.epsilon),
        beta=value("beta", config.model.beta),  # a swept beta is the fixed / initial beta
        prior=prior
        if prior is not None
        else build_prior(config, num_classes, point.get("distance")),
    )


def _stack_on_host(trees):
    """`train.stack_trees` through NumPy: the same values, and no program compiled."""
    return jax.tree.map(
        lambda *leaves: jax.device_put(np.stack([np.asarray(x) for x in leaves])), *trees
    )


def point_seed(config: ml_collections.ConfigDict, point: dict[str, Any]) -> int:
    """The model seed of a sweep point (config.seed unless the sweep sets one)."""
    return int(point.get("seed", config.seed))


def point_name(point: dict[str, Any]) -> str:
    """A short, file-name-safe label such as 'lambda1=10_lambda2=1.1'."""
    if not point:
        return "model"
    return "_".join(f"{k}={v:g}" for k, v in point.items())


# --- the resolved run ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataSelection:
    """`config.data`: which data set, and which of its images a run uses.

    Attributes:
      name, source, dir, path, test_fraction: where the data set is read from (`dir` and
        `path` as given; `resolve_path` applies when reading).
      classes: a subset of labels, relabelled 0..n-1; () = all.
      validation: training images held out for model selection (0 = none).
      labelled_per_class: labels a class (0 = `adapted_labelled_per_class`).
      seed: the labelled split, the subsampling and the batch order.
      max_unlabelled, max_test: 0 = all.
      pool: the images an epoch draws ('unlabelled' or 'all': `methods.Pipeline.pool`).
    """

    name: str
    source: str
    dir: str
    path: str
    test_fraction: float
    classes: tuple
    validation: int
    labelled_per_class: int
    seed: int
    max_unlabelled: int
    max_test: int
    pool: str


def data_selection(config: ml_collections.ConfigDict) -> DataSelection:
    """The `config.data` section (and the method's epoch pool) as a frozen dataclass."""
    data = config.data
    return DataSelection(
        name=data.name,
        source=data.source,
        dir=data.dir,
        path=data.get("path", ""),
        test_fraction=float(data.get("test_fraction", 0.1)),
        classes=tuple(data.classes),
        validation=int(data.get("validation", 0)),
        labelled_per_class=int(data.labelled_per_class),
        seed=int(data.seed),
        max_unlabelled=int(data.max_unlabelled),
        max_test=int(data.max_test),
        pool=methods.method_of(config).pipeline(config).pool,
    )


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What resolving a run needs to know of its data, after the selection and the split.

    Attributes:
      name: the data set's name.
      class_names: K names.
      image_shape: (H, W, C).
      num_labelled, num_unlabelled: sizes of the labelled split and of the pool an epoch
        draws from (`DataSelection.pool`).
    """

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
    num_labelled: int
    num_unlabelled: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run proceeds (`config.train` and `config.pretrain`), 'auto' resolved.

    Attributes:
      epochs: epochs to train in all.
      eval_every, checkpoint_every: epochs between test evaluations / checkpoints (the
        last epoch is always evaluated and saved).
      max_checkpoints: checkpoints kept.
      keep_best: keep each model's lowest-validation-error state (best_checkpoints/).
      epoch_loop: 'scan' or 'python' (`backend.epoch_loop`).
      model_axis: 'vmap' or 'map' (`backend.model_axis`).
      pretrain_epochs, pretrain_learning_rate, pretrain_batch_size: the classifier's
        pre-training (Sec. 4.2; conv network only, 0 epochs = none).
    """

    epochs: int
    eval_every: int
    checkpoint_every: int
    max_checkpoints: int
    keep_best: bool
    epoch_loop: str
    model_axis: str
    pretrain_epochs: int
    pretrain_learning_rate: float
    pretrain_batch_size: int


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run, resolved: everything below `resolve` reads this, never the ConfigDict.

    A run is a grid of G >= 1 models (`points`); a plain run is the one-point grid.

    Attributes:
      config: the config as the user wrote it, kept only as the run's record (config.json,
        record.json, the TensorBoard hparams); nothing reads settings from it.
      method: the training method (`methods.METHODS`).
      data: the data selection.
      dataset: what the run knows of its data (class names, image shape, split sizes).
      layouts: the backend's layer paths, resolved.
      settings: the static settings the train step is compiled with.
      options: epochs, evaluation and checkpoint cadence, loops, pre-training.
      analysis: the evaluation's and the figures' settings.
      points: the G grid points ({} for a plain run).
      hparams: the traced hyper-parameters, leading model axis [G]; their priors are the
        stored ones when the run is restored.
      seed: the base model seed (`point_seeds` gives each model's).
      model, optimizer: the network (flax module) and the optax transformation.
      train_step: `(state, hparams, batch) -> (state, metrics)` of one model.
    """

    config: ml_collections.ConfigDict
    method: methods.Method
    data: DataSelection
    dataset: DatasetInfo
    layouts: methods.Layouts
    settings: TrainSettings
    options: RunOptions
    analysis: AnalysisSettings
    points: tuple[dict[str, Any], ...]
    hparams: HParams
    seed: int
    model: Any
    optimizer: optax.GradientTransformation
    train_step: Callable

    @property
    def num_models(self) -> int:
        return len(self.points)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.dataset.image_shape

    @property
    def point_seeds(self) -> tuple[int, ...]:
        """The model seed of each grid point (`seed` unless the sweep sets one)."""
        return tuple(int(p.get("seed", self.seed)) for p in self.points)

    @property
    def point_names(self) -> list[str]:
        return [point_name(p) for p in self.points]


def with_stored_priors(hparams: HParams, stored_priors: list[dict]) -> HParams:
    """`hparams` [G] with the G priors a trained run recorded (`priors.prior_to_arrays`,
    in record.json and each checkpoint's meta): the exact ones it trained with."""
    return hparams.replace(
        prior=_stack_on_host([priors.prior_from_arrays(p) for p in stored_priors])
    )


def resolve(
    config: ml_collections.ConfigDict,
    dataset: DatasetInfo,
    stored_priors: list[dict] | None = None,
) -> RunSpec:
    """The run `config` describes on `dataset`, resolved once.

    Args:
      config: a config that passed `validate_config` (the checks needing K run here).
      dataset: the data after selection and split (`experiment.split_data(...).info`,
        or a trained run's record).
      stored_priors: the G priors a trained run recorded (`priors.prior_to_arrays`),
        used instead of building them from the config.

    Raises:
      ConfigError: naming the field when the config does not fit the data.
    """
    check_classes(config, dataset.num_classes, dataset.class_names)
    method = methods.method_of(config)
    network = method.network_kind(config)
    settings = build_settings(config, dataset.num_unlabelled, dataset.num_labelled)
    points = tuple(sweep_points(config))
    stored: list[priors.MixturePrior | None] = [None] * len(points)
    if stored_priors is not None:  # the recorded priors, not the config's (its file may be gone)
        stored = [priors.prior_from_arrays(p) for p in stored_priors]
    hparams = _stack_on_host(
        [build_hparams(config, dataset.num_classes, p, s) for p, s in zip(points, stored)]
    )
    layer_layouts = layouts(config)
    model = build_model(config, dataset.num_classes, dataset.image_shape, layer_layouts)
    optimizer = build_optimizer(config, settings.steps_per_epoch)
    train = config.train
    return RunSpec(
        config=config,
        method=method,
        data=data_selection(config),
        dataset=dataset,
        layouts=layer_layouts,
        settings=settings,
        options=RunOptions(
            epochs=int(train.epochs),
            eval_every=int(train.eval_every),
            checkpoint_every=int(train.checkpoint_every),
            max_checkpoints=int(train.max_checkpoints),
            keep_best=bool(train.get("keep_best", False)),
            epoch_loop=backend.epoch_loop(train.epoch_loop, network),
            model_axis=backend.model_axis(train.model_axis, network),
            pretrain_epochs=int(config.pretrain.epochs),
            pretrain_learning_rate=float(config.pretrain.learning_rate),
            pretrain_batch_size=int(config.pretrain.batch_size),
        ),
        analysis=analysis_settings(config),
        points=points,
        hparams=hparams,
        seed=int(config.seed),
        model=model,
        optimizer=optimizer,
        train_step=method.make_train_step(config, model, optimizer, settings),
    )
