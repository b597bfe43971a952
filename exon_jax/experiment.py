"""An experiment built from a config: data, network, optimiser, hyper-parameters, mesh,
and the compiled functions and device arrays a run needs.

A run is always a grid of G >= 1 models: a plain run is the one-point grid. Its train
state and hyper-parameters carry a leading model axis, and one jitted, vmapped epoch
trains all G models on the same batches. The flow: `build_experiment` (validate the
config once, load and split the data, `configuration.resolve` -> a frozen `Experiment`:
RunSpec, host arrays, mesh) -> `place` (device arrays, states, compiled epoch and
evaluations: a frozen `Placed`) -> `training` (the host loop, checkpoints) ->
`evaluation` / `saved_run` (results, figures).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exon_jax import configuration, evaluation, parallel, priors, train
from exon_jax.ops import run_record
from exon_jax import data as data_lib


@dataclasses.dataclass(frozen=True)
class SplitData:
    """A run's host arrays: the selected data set and its split.

    Attributes:
      dataset: the images to train and test on (`DataSelection.pool` 'all': the training
        split followed by the validation images).
      labelled_idx: int32 [L] indices of the labelled training images.
      unlabelled_idx: int32 [U] indices of the pool an epoch draws from.
      validation: held-out training images (`data.validation`), or None.
      fingerprint: identity of the data set as loaded (before class selection).
    """

    dataset: data_lib.ImageDataset
    labelled_idx: np.ndarray
    unlabelled_idx: np.ndarray
    validation: data_lib.ImageSplit | None
    fingerprint: dict[str, Any]

    @property
    def info(self) -> configuration.DatasetInfo:
        """What `configuration.resolve` needs of these arrays."""
        return configuration.DatasetInfo(
            name=self.dataset.name,
            class_names=tuple(self.dataset.class_names),
            image_shape=tuple(self.dataset.train.images.shape[1:]),
            num_labelled=int(self.labelled_idx.size),
            num_unlabelled=int(self.unlabelled_idx.size),
        )


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A resolved run, its host arrays and its mesh: everything before any training."""

    spec: configuration.RunSpec
    data: SplitData
    mesh: jax.sharding.Mesh

    # the spec's and the data's parts, by the names the rest of the code uses
    config = property(lambda self: self.spec.config)  # the record of what the user wrote
    method = property(lambda self: self.spec.method)
    model = property(lambda self: self.spec.model)
    optimizer = property(lambda self: self.spec.optimizer)
    settings = property(lambda self: self.spec.settings)
    points = property(lambda self: list(self.spec.points))
    hparams = property(lambda self: self.spec.hparams)  # leading model axis [G]
    analysis = property(lambda self: self.spec.analysis)
    num_models = property(lambda self: self.spec.num_models)
    image_shape = property(lambda self: self.spec.image_shape)
    dataset = property(lambda self: self.data.dataset)
    labelled_idx = property(lambda self: self.data.labelled_idx)
    unlabelled_idx = property(lambda self: self.data.unlabelled_idx)
    validation = property(lambda self: self.data.validation)
    fingerprint = property(lambda self: self.data.fingerprint)


def load_data(selection: configuration.DataSelection) -> data_lib.ImageDataset:
    """The data set of `selection` as stored (no class selection or subsampling yet)."""
    return data_lib.load_dataset(
        selection.name,
        selection.source,
        configuration.resolve_path(selection.dir),
        path=configuration.resolve_path(selection.path),
        test_fraction=selection.test_fraction,
        seed=selection.seed,
    )


def select_data(
    selection: configuration.DataSelection, dataset: data_lib.ImageDataset
) -> tuple[data_lib.ImageDataset, data_lib.ImageSplit | None]:
    """`data.classes`, the validation hold-out (`data.validation`) and `data.max_test` applied.

    Returns:
      (the data set to train and test on, the validation split or None).
    """
    if selection.classes:
        dataset = data_lib.select_classes(dataset, selection.classes)
    validation = None
    if selection.validation:
        train_split, validation = data_lib.split_validation(
            dataset.train, selection.validation, selection.seed
        )
        dataset = dataclasses.replace(dataset, train=train_split)
    if selection.max_test:
        test = data_lib.ImageSplit(
            dataset.test.images[: selection.max_test], dataset.test.labels[: selection.max_test]
        )
        dataset = dataclasses.replace(dataset, test=test)
    return dataset, validation


def split_data(selection: configuration.DataSelection, dataset: data_lib.ImageDataset) -> SplitData:
    """The selection applied to a loaded data set: classes, hold-outs, the labelled split,
    the unlabelled subsample and the epoch's pool."""
    fingerprint = data_lib.dataset_fingerprint(dataset)
    dataset, validation = select_data(selection, dataset)
    per_class = selection.labelled_per_class or configuration.adapted_labelled_per_class(
        np.bincount(dataset.train.labels, minlength=dataset.num_classes)
    )
    labelled_idx, unlabelled_idx = data_lib.labelled_split(
        dataset.train.labels, per_class, selection.seed, dataset.num_classes
    )
    if selection.max_unlabelled:
        rng = np.random.default_rng(selection.seed)
        keep = min(selection.max_unlabelled, unlabelled_idx.size)
        unlabelled_idx = np.sort(rng.choice(unlabelled_idx, keep, replace=False)).astype(np.int32)
    if selection.pool == "all":  # every training image, validation included
        dataset, unlabelled_idx = _pool_all_images(dataset, validation)
    return SplitData(dataset, labelled_idx, unlabelled_idx, validation, fingerprint)


def build_experiment(
    config: ml_collections.ConfigDict,
    dataset: data_lib.ImageDataset | None = None,
    devices=None,
    stored_priors: list[dict] | None = None,
) -> Experiment:
    """Validates the config (once), loads and splits the data, resolves the run
    (`configuration.resolve`) and makes its mesh.

    Args:
      config: the experiment config.
      dataset: arrays to use instead of loading `config.data`.
      devices: the devices of the mesh (default: all).
      stored_priors: the G priors a trained run recorded (`priors.prior_to_arrays`);
        used instead of building them from the config.
    """
    configuration.validate_config(config)
    return build_validated(config, dataset, devices, stored_priors)


def build_validated(
    config: ml_collections.ConfigDict,
    dataset: data_lib.ImageDataset | None = None,
    devices=None,
    stored_priors: list[dict] | None = None,
) -> Experiment:
    """`build_experiment` of a config that already passed `configuration.validate_config`."""
    selection = configuration.data_selection(config)
    split = split_data(selection, dataset if dataset is not None else load_data(selection))
    spec = configuration.resolve(config, split.info, stored_priors)
    return Experiment(spec, split, parallel.make_mesh(spec.num_models, devices))


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
    """What a checkpoint and record.json keep: config, data identity, split sizes, points,
    exact priors (`saved_run.restore` rebuilds the run from it without its data)."""
    return {
        "config": run_record.config_as_dict(exp.config),
        "dataset": exp.fingerprint,
        "split": {
            "num_labelled": exp.spec.dataset.num_labelled,
            "num_unlabelled": exp.spec.dataset.num_unlabelled,
        },
        "points": exp.points,
        "priors": [
            priors.prior_to_arrays(
                jax.tree.map(lambda leaf: np.asarray(leaf)[i], exp.hparams.prior)
            )
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


def model_keys(spec: configuration.RunSpec) -> jax.Array:
    """One PRNG key per model, from its seed (a sweep may vary the seed)."""
    return _model_keys(tuple(spec.point_seeds))


@functools.partial(jax.jit, static_argnums=0)  # one program, not one per jax.random call
def _model_keys(seeds: tuple[int, ...]) -> jax.Array:
    return jnp.stack([jax.random.fold_in(jax.random.key(seed), 0) for seed in seeds])


def data_key(data_seed: int) -> jax.Array:
    """The key of the batch order, shared by every model of a run (from `data.seed`)."""
    return jax.random.fold_in(jax.random.key(data_seed), 1)


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
    keys, hparams = parallel.global_tree((model_keys(exp.spec), exp.hparams), sharding)
    return jax.jit(create, out_shardings=sharding)(keys, hparams)


def abstract_states(exp: Experiment):
    """Shapes, dtypes and shardings of `init_states` without computing it (restore target)."""
    return abstract_states_of(exp.spec, exp.mesh)


def abstract_states_of(spec: configuration.RunSpec, mesh: jax.sharding.Mesh):
    """`abstract_states` of a resolved run on `mesh`: needs no data, only the spec."""
    create = jax.vmap(
        lambda key, hp: train.create_train_state(
            key, spec.model, spec.optimizer, hp, spec.settings, spec.image_shape
        )
    )
    return parallel.with_sharding(  # keys made inside eval_shape: nothing is computed
        jax.eval_shape(lambda hp: create(model_keys(spec), hp), spec.hparams),
        parallel.model_sharded(mesh),
    )


def epoch_key(data_seed: int, epoch: int, mesh) -> jax.Array:
    """The batch-order key of `epoch` (0-based) of a run with `data.seed` = data_seed,
    replicated on the mesh."""
    return parallel.global_array(
        jax.random.fold_in(data_key(data_seed), epoch), parallel.replicated(mesh)
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
    indexed_step = train.make_indexed_step(exp.spec.train_step, parallel.batch_sharded(exp.mesh))
    if epoch_loop(exp) == "scan":
        return jax.jit(lift(train.make_train_epoch(indexed_step, exp.settings)), donate_argnums=0)
    return train.make_stepwise_epoch(
        jax.jit(lift(indexed_step), donate_argnums=0), exp.settings, progress
    )


def epoch_loop(exp: Experiment) -> str:
    """'scan' or 'python' (`config.train.epoch_loop`, 'auto' resolved by `backend`)."""
    return exp.spec.options.epoch_loop


def model_axis_mode(exp: Experiment) -> str:
    """'vmap' or 'map' (`config.train.model_axis`, 'auto' resolved by `backend`)."""
    return exp.spec.options.model_axis


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
        epochs=exp.spec.options.epochs,
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


@dataclasses.dataclass(frozen=True)
class Placed:
    """An experiment put on its devices, its programs compiled: what the host loop runs.

    Attributes:
      states: the G initial (fresh, pre-trained or restored) states [G, ...], model axis
        sharded.
      hparams: the [G] hyper-parameters, sharded like the states.
      data: the training arrays, replicated.
      test_set: (images, labels) of the test split, replicated.
      validation_set: the same of the validation hold-out, or None.
      epoch_fn: the compiled epoch `(states, hparams, data, epoch_key) -> (states, metrics)`
        (`compile_epoch`; the states are donated).
      evaluate_fn: the compiled evaluation `(states, hparams, images, labels) -> outputs`
        of the test set; validate_fn: of the validation set, or None.
      memory: the compiled epoch's memory estimate (`parallel.compile_ahead`).
      mesh: the mesh everything lies on.
    """

    states: Any
    hparams: train.HParams
    data: train.DeviceData
    test_set: tuple[jax.Array, jax.Array]
    validation_set: tuple[jax.Array, jax.Array] | None
    epoch_fn: Any
    evaluate_fn: Any
    validate_fn: Any
    memory: dict[str, float]
    mesh: jax.sharding.Mesh


def place(
    exp: Experiment,
    states=None,
    progress=None,
    stopwatch=None,
    prepare=None,
    check_memory=None,
) -> Placed:
    """Puts `exp` on its mesh and compiles its epoch and evaluations ahead of time.

    Args:
      states: restored states (`abstract_states`' shapes), or None for fresh ones.
      progress: the stepwise epoch's per-step callback (`compile_epoch`).
      stopwatch: times the placing as "setup" and the compilation as "compile".
      prepare: `(fresh states, device data) -> states`, run on fresh states before
        compiling (the classifier's pre-training).
      check_memory: called with the compiled epoch's memory estimate before anything else
        compiles (may raise MemoryError).
    """
    phase = stopwatch.phase if stopwatch is not None else lambda name: contextlib.nullcontext()
    with phase("setup"):
        data = device_data(exp)
        hparams = sharded_hparams(exp)
        test_set = device_test_set(exp)
        if states is None:
            states = init_states(exp)
            if prepare is not None:
                states = prepare(states, data)
    with phase("compile"):
        epoch_fn, memory = parallel.compile_ahead(
            compile_epoch(exp, progress),
            states,
            hparams,
            data,
            epoch_key(exp.spec.data.seed, 0, exp.mesh),
        )
        if check_memory is not None:
            check_memory(memory)
        evaluate_fn, _ = parallel.compile_ahead(make_evaluate(exp), states, hparams, *test_set)
        validation_set, validate_fn = None, None
        if exp.validation is not None:
            validation_set = device_test_set(exp, exp.validation)
            validate_fn, _ = parallel.compile_ahead(
                make_evaluate(exp), states, hparams, *validation_set
            )
    return Placed(
        states=states,
        hparams=hparams,
        data=data,
        test_set=test_set,
        validation_set=validation_set,
        epoch_fn=epoch_fn,
        evaluate_fn=evaluate_fn,
        validate_fn=validate_fn,
        memory=memory,
        mesh=exp.mesh,
    )
