"""An experiment built from a config: data, network, optimiser, hyper-parameters, mesh,
and the compiled functions and device arrays a run needs.

A run is always a grid of G >= 1 models: a plain run is the one-point grid. Its train
state and hyper-parameters carry a leading model axis, and one jitted, vmapped epoch
trains all G models on the same batches. The flow: `build_experiment` (config -> host
arrays) -> `device_data` / `init_states` (device arrays) -> `compile_epoch` (compiled
training) -> `training` (the host loop, checkpoints) -> `evaluation` / `saved_run`
(results, figures).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exon_jax import (
    backend,
    configuration,
    evaluation,
    methods,
    parallel,
    priors,
    run_record,
    train,
)
from exon_jax import data as data_lib


@dataclasses.dataclass
class Experiment:
    """Everything built from a config, before any training."""

    config: ml_collections.ConfigDict
    dataset: data_lib.ImageDataset
    labelled_idx: np.ndarray
    unlabelled_idx: np.ndarray
    model: Any
    optimizer: Any
    settings: train.TrainSettings
    points: list[dict[str, Any]]
    hparams: train.HParams  # leading model axis [G]
    mesh: jax.sharding.Mesh
    fingerprint: dict[str, Any]  # identity of the data set as loaded (before class selection)
    analysis: configuration.AnalysisSettings
    method: methods.Method = methods.EXON
    validation: data_lib.ImageSplit | None = None  # held-out training images (data.validation)

    @property
    def num_models(self) -> int:
        return len(self.points)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.train.images.shape[1:])


def load_data(config: ml_collections.ConfigDict) -> data_lib.ImageDataset:
    """The data set of `config.data` as stored (no class selection or subsampling yet)."""
    return data_lib.load_dataset(
        config.data.name,
        config.data.source,
        configuration.resolve_path(config.data.dir),
        path=configuration.resolve_path(config.data.get("path", "")),
        test_fraction=config.data.get("test_fraction", 0.1),
        seed=config.data.seed,
    )


def select_data(
    config: ml_collections.ConfigDict, dataset: data_lib.ImageDataset
) -> tuple[data_lib.ImageDataset, data_lib.ImageSplit | None]:
    """`data.classes`, the validation hold-out (`data.validation`) and `data.max_test` applied.

    Returns:
      (the data set to train and test on, the validation split or None).
    """
    if tuple(config.data.classes):
        dataset = data_lib.select_classes(dataset, tuple(config.data.classes))
    validation = None
    if config.data.get("validation", 0):
        train_split, validation = data_lib.split_validation(
            dataset.train, config.data.validation, config.data.seed
        )
        dataset = dataclasses.replace(dataset, train=train_split)
    if config.data.max_test:
        test = data_lib.ImageSplit(
            dataset.test.images[: config.data.max_test], dataset.test.labels[: config.data.max_test]
        )
        dataset = dataclasses.replace(dataset, test=test)
    return dataset, validation


def build_experiment(
    config: ml_collections.ConfigDict,
    dataset: data_lib.ImageDataset | None = None,
    devices=None,
    stored_priors: list[dict] | None = None,
) -> Experiment:
    """Validates the config and builds data, network, optimiser, settings and hparams.

    Args:
      config: the experiment config.
      dataset: arrays to use instead of loading `config.data`.
      devices: the devices of the mesh (default: all).
      stored_priors: the G priors a trained run recorded (`priors.prior_to_arrays`);
        used instead of building them from the config.
    """
    configuration.validate_config(config)
    dataset = dataset if dataset is not None else load_data(config)
    fingerprint = data_lib.dataset_fingerprint(dataset)
    dataset, validation = select_data(config, dataset)
    configuration.validate_config(config, dataset.num_classes)
    per_class = config.data.labelled_per_class or configuration.adapted_labelled_per_class(
        np.bincount(dataset.train.labels, minlength=dataset.num_classes)
    )
    labelled_idx, unlabelled_idx = data_lib.labelled_split(
        dataset.train.labels, per_class, config.data.seed, dataset.num_classes
    )
    if config.data.max_unlabelled:
        rng = np.random.default_rng(config.data.seed)
        keep = min(config.data.max_unlabelled, unlabelled_idx.size)
        unlabelled_idx = np.sort(rng.choice(unlabelled_idx, keep, replace=False)).astype(np.int32)
    method = methods.method_of(config)
    if method.pipeline(config).pool == "all":  # every training image, validation included
        dataset, unlabelled_idx = _pool_all_images(dataset, validation)
    settings = configuration.build_settings(config, unlabelled_idx.size, labelled_idx.size)
    points = configuration.sweep_points(config)
    hparams = train.stack_trees(
        [configuration.build_hparams(config, dataset.num_classes, p) for p in points]
    )
    if stored_priors is not None:
        hparams = hparams.replace(
            prior=train.stack_trees([priors.prior_from_arrays(p) for p in stored_priors])
        )
    image_shape = tuple(dataset.train.images.shape[1:])
    return Experiment(
        config=config,
        dataset=dataset,
        labelled_idx=labelled_idx,
        unlabelled_idx=unlabelled_idx,
        model=configuration.build_model(config, dataset.num_classes, image_shape),
        method=method,
        optimizer=configuration.build_optimizer(config, settings.steps_per_epoch),
        settings=settings,
        points=points,
        hparams=hparams,
        mesh=parallel.make_mesh(len(points), devices),
        fingerprint=fingerprint,
        analysis=configuration.analysis_settings(config),
        validation=validation,
    )


def _pool_all_images(
    dataset: data_lib.ImageDataset, validation: data_lib.ImageSplit | None
) -> tuple[data_lib.ImageDataset, np.ndarray]:
    """The training split followed by the validation images, and every index of it as the
    unlabelled pool (`methods.Pipeline.pool == 'all'`); labelled indices stay valid."""
    train_split = dataset.train
    if validation is not None:
        train_split = data_lib.ImageSplit(
            np.concatenate([train_split.images, validation.images]),
            np.concatenate([train_split.labels, validation.labels]),
        )
    pool = np.arange(train_split.labels.shape[0], dtype=np.int32)
    return dataclasses.replace(dataset, train=train_split), pool


def run_record_of(exp: Experiment) -> dict[str, Any]:
    """What a checkpoint and record.json keep: config, data identity, points, exact priors."""
    return {
        "config": run_record.config_as_dict(exp.config),
        "dataset": exp.fingerprint,
        "points": exp.points,
        "priors": [
            priors.prior_to_arrays(train.unstack_tree(exp.hparams.prior, i))
            for i in range(exp.num_models)
        ],
    }


def device_data(exp: Experiment) -> train.DeviceData:
    """The training arrays, replicated on every device of the mesh."""
    arrays = {
        "images": exp.dataset.train.images,
        "labels": exp.dataset.train.labels.astype(np.int32),
        "labelled_idx": exp.labelled_idx,
        "unlabelled_idx": exp.unlabelled_idx,
    }
    return train.DeviceData(**parallel.global_tree(arrays, parallel.replicated(exp.mesh)))


def model_keys(exp: Experiment) -> jax.Array:
    """One PRNG key per model, from its seed (a sweep may vary the seed)."""
    return jnp.stack(
        [
            jax.random.fold_in(jax.random.key(configuration.point_seed(exp.config, p)), 0)
            for p in exp.points
        ]
    )


def data_key(config: ml_collections.ConfigDict) -> jax.Array:
    """The key of the batch order, shared by every model of a run (from `data.seed`)."""
    return jax.random.fold_in(jax.random.key(config.data.seed), 1)


def init_states(exp: Experiment) -> train.TrainState:
    """Fresh states for all G models, model axis sharded over the mesh."""
    create = train.over_models(
        lambda key, hp: train.create_train_state(
            key, exp.model, exp.optimizer, hp, exp.settings, exp.image_shape
        ),
        exp.num_models,
        model_axis_mode(exp),
    )
    sharding = parallel.model_sharded(exp.mesh)
    keys, hparams = parallel.global_tree((model_keys(exp), exp.hparams), sharding)
    return jax.jit(create, out_shardings=sharding)(keys, hparams)


def abstract_states(exp: Experiment):
    """Shapes, dtypes and shardings of `init_states` without computing it (restore target)."""
    create = jax.vmap(
        lambda key, hp: train.create_train_state(
            key, exp.model, exp.optimizer, hp, exp.settings, exp.image_shape
        )
    )
    return parallel.with_sharding(
        jax.eval_shape(create, model_keys(exp), exp.hparams), parallel.model_sharded(exp.mesh)
    )


def epoch_key(config: ml_collections.ConfigDict, epoch: int, mesh) -> jax.Array:
    """The batch-order key of `epoch` (0-based), replicated on the mesh."""
    return parallel.global_array(
        jax.random.fold_in(data_key(config), epoch), parallel.replicated(mesh)
    )


def compile_epoch(exp: Experiment, progress=None):
    """The G-model epoch `(states, hparams, data, epoch_key) -> (states, metrics)`.

    One jitted `lax.scan` over the epoch's steps, or (`epoch_loop`) one jitted step
    per Python call; either way the states are donated and batches gathered on device.
    `progress(i, metrics)` is called after each step's dispatch of a stepwise epoch
    (`train.make_stepwise_epoch`); a scanned epoch ignores it.
    """
    lift = functools.partial(
        train.over_models, num_models=exp.num_models, mode=model_axis_mode(exp)
    )
    step = exp.method.make_train_step(exp.config, exp.model, exp.optimizer, exp.settings)
    indexed_step = train.make_indexed_step(step, parallel.batch_sharded(exp.mesh))
    if epoch_loop(exp) == "scan":
        return jax.jit(lift(train.make_train_epoch(indexed_step, exp.settings)), donate_argnums=0)
    return train.make_stepwise_epoch(
        jax.jit(lift(indexed_step), donate_argnums=0), exp.settings, progress
    )


def epoch_loop(exp: Experiment) -> str:
    """'scan' or 'python' (`config.train.epoch_loop`, 'auto' resolved by `backend`)."""
    return backend.epoch_loop(exp.config.train.epoch_loop, exp.method.network_kind(exp.config))


def model_axis_mode(exp: Experiment) -> str:
    """'vmap' or 'map' (`config.train.model_axis`, 'auto' resolved by `backend`)."""
    return backend.model_axis(exp.config.train.model_axis, exp.method.network_kind(exp.config))


def make_evaluate(exp: Experiment):
    """The jitted G-model evaluation of `exp` (see `evaluation.make_evaluate`)."""
    return evaluation.make_evaluate(
        exp.model,
        exp.analysis.latent_dim,
        exp.analysis.grid_extent,
        exp.analysis.grid_size,
        exp.num_models,
        model_axis_mode(exp),
    )


def summarise(
    exp: Experiment,
    states,
    evaluated,
    train_seconds: float,
    validated: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per-model results of `exp` (see `evaluation.summarise`)."""
    if validated is None and exp.validation is not None:
        validated = evaluate_states(exp, states, exp.validation)
    return evaluation.summarise(
        exp.points,
        parallel.to_host(states.beta),
        evaluated,
        validated,
        dataset_name=exp.dataset.name,
        epochs=exp.config.train.epochs,
        train_seconds=train_seconds,
        devices=parallel.describe(exp.mesh),
    )


def device_test_set(exp: Experiment, split: data_lib.ImageSplit | None = None):
    """Test images and labels (or those of `split`), replicated on the mesh."""
    split = exp.dataset.test if split is None else split
    return parallel.global_tree(
        (split.images, split.labels.astype(np.int32)), parallel.replicated(exp.mesh)
    )


def sharded_hparams(exp: Experiment) -> train.HParams:
    """The [G] hyper-parameters with their model axis split like the states'."""
    return parallel.global_tree(exp.hparams, parallel.model_sharded(exp.mesh))


def evaluate_states(
    exp: Experiment, states, split: data_lib.ImageSplit | None = None
) -> dict[str, np.ndarray]:
    """Test (or `split`) metrics and posterior codes of all G models, on the host."""
    return parallel.to_host(
        make_evaluate(exp)(states, sharded_hparams(exp), *device_test_set(exp, split))
    )
