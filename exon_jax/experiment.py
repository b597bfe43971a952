"""Host-side orchestration: config -> data on device -> scanned epochs -> checkpoints -> results.

A run is always a grid of G >= 1 models: a plain run is the one-point grid.
Its train state and hyper-parameters carry a leading model axis, and one
jitted, vmapped epoch trains all G models on the same batches. The host only
runs between epochs (logging, evaluation, checkpoints). Evaluation lives in
`evaluation`, the run's record (config, data identity, priors) in `run_record`;
figures are drawn by `analyze`, after training, never inside it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from exon_jax import backend, checkpoints, configuration, evaluation, parallel, priors, run_record, train
from exon_jax import data as data_lib
from exon_jax.workdir_lock import WorkdirLock
from exon_jax.writers import MetricWriter

RECORD_FILE = "record.json"   # data set identity, grid points and exact priors of a run


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became non-finite."""


class DataMismatch(ValueError):
    """The data set found now is not the one the run was trained on."""


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
    hparams: train.HParams          # leading model axis [G]
    mesh: jax.sharding.Mesh
    fingerprint: dict[str, Any]     # identity of the data set as loaded (before class selection)
    analysis: configuration.AnalysisSettings
    validation: data_lib.ImageSplit | None = None   # held-out training images (data.validation)

    @property
    def num_models(self) -> int:
        return len(self.points)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.train.images.shape[1:])


def load_data(config: ml_collections.ConfigDict) -> data_lib.ImageDataset:
    """The data set of `config.data` as stored (no class selection or subsampling yet)."""
    return data_lib.load_dataset(
        config.data.name, config.data.source, configuration.resolve_path(config.data.dir),
        path=configuration.resolve_path(config.data.get("path", "")),
        test_fraction=config.data.get("test_fraction", 0.1), seed=config.data.seed)


def select_data(config: ml_collections.ConfigDict, dataset: data_lib.ImageDataset
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
            dataset.train, config.data.validation, config.data.seed)
        dataset = dataclasses.replace(dataset, train=train_split)
    if config.data.max_test:
        test = data_lib.ImageSplit(dataset.test.images[:config.data.max_test],
                                   dataset.test.labels[:config.data.max_test])
        dataset = dataclasses.replace(dataset, test=test)
    return dataset, validation


def build_experiment(config: ml_collections.ConfigDict,
                     dataset: data_lib.ImageDataset | None = None,
                     devices=None, stored_priors: list[dict] | None = None) -> Experiment:
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
    labelled_idx, unlabelled_idx = data_lib.labelled_split(
        dataset.train.labels, config.data.labelled_per_class, config.data.seed,
        dataset.num_classes)
    if config.data.max_unlabelled:
        rng = np.random.default_rng(config.data.seed)
        keep = min(config.data.max_unlabelled, unlabelled_idx.size)
        unlabelled_idx = np.sort(rng.choice(unlabelled_idx, keep, replace=False)).astype(np.int32)
    settings = configuration.build_settings(config, unlabelled_idx.size, labelled_idx.size)
    points = configuration.sweep_points(config)
    hparams = train.stack_trees(
        [configuration.build_hparams(config, dataset.num_classes, p) for p in points])
    if stored_priors is not None:
        hparams = hparams.replace(prior=train.stack_trees(
            [priors.prior_from_arrays(p) for p in stored_priors]))
    image_shape = tuple(dataset.train.images.shape[1:])
    return Experiment(
        config=config, dataset=dataset, labelled_idx=labelled_idx,
        unlabelled_idx=unlabelled_idx,
        model=configuration.build_model(config, dataset.num_classes, image_shape),
        optimizer=configuration.build_optimizer(config, settings.steps_per_epoch),
        settings=settings, points=points,
        hparams=hparams, mesh=parallel.make_mesh(len(points), devices),
        fingerprint=fingerprint, analysis=configuration.analysis_settings(config),
        validation=validation)


def run_record_of(exp: Experiment) -> dict[str, Any]:
    """What a checkpoint and record.json keep: config, data identity, points, exact priors."""
    return {"config": run_record.config_as_dict(exp.config), "dataset": exp.fingerprint,
            "points": exp.points,
            "priors": [priors.prior_to_arrays(train.unstack_tree(exp.hparams.prior, i))
                       for i in range(exp.num_models)]}


def device_data(exp: Experiment) -> train.DeviceData:
    """The training arrays, replicated on every device of the mesh."""
    arrays = {"images": exp.dataset.train.images,
              "labels": exp.dataset.train.labels.astype(np.int32),
              "labelled_idx": exp.labelled_idx, "unlabelled_idx": exp.unlabelled_idx}
    return train.DeviceData(**parallel.global_tree(arrays, parallel.replicated(exp.mesh)))


def model_keys(exp: Experiment) -> jax.Array:
    """One PRNG key per model, from its seed (a sweep may vary the seed)."""
    return jnp.stack([jax.random.fold_in(jax.random.key(configuration.point_seed(exp.config, p)), 0)
                      for p in exp.points])


def data_key(config: ml_collections.ConfigDict) -> jax.Array:
    """The key of the batch order, shared by every model of a run (from `data.seed`)."""
    return jax.random.fold_in(jax.random.key(config.data.seed), 1)


def init_states(exp: Experiment) -> train.TrainState:
    """Fresh states for all G models, model axis sharded over the mesh."""
    create = train.over_models(lambda key, hp: train.create_train_state(
        key, exp.model, exp.optimizer, hp, exp.settings, exp.image_shape),
        exp.num_models, model_axis_mode(exp))
    sharding = parallel.model_sharded(exp.mesh)
    keys, hparams = parallel.global_tree((model_keys(exp), exp.hparams), sharding)
    return jax.jit(create, out_shardings=sharding)(keys, hparams)


def abstract_states(exp: Experiment):
    """Shapes, dtypes and shardings of `init_states` without computing it (restore target)."""
    create = jax.vmap(lambda key, hp: train.create_train_state(
        key, exp.model, exp.optimizer, hp, exp.settings, exp.image_shape))
    return parallel.with_sharding(jax.eval_shape(create, model_keys(exp), exp.hparams),
                                  parallel.model_sharded(exp.mesh))


def epoch_key(config: ml_collections.ConfigDict, epoch: int, mesh) -> jax.Array:
    """The batch-order key of `epoch` (0-based), replicated on the mesh."""
    return parallel.global_array(jax.random.fold_in(data_key(config), epoch),
                                 parallel.replicated(mesh))


def compile_epoch(exp: Experiment):
    """The G-model epoch `(states, hparams, data, epoch_key) -> (states, metrics)`.

    One jitted `lax.scan` over the epoch's steps, or (`epoch_loop`) one jitted step
    per Python call; either way the states are donated and batches gathered on device.
    """
    lift = functools.partial(train.over_models, num_models=exp.num_models,
                             mode=model_axis_mode(exp))
    sharding = parallel.batch_sharded(exp.mesh)
    extra: tuple[Any, ...] = (sharding,)
    make_epoch: Callable[..., Callable] = train.make_train_epoch
    make_step: Callable[..., Callable] = train.make_indexed_step
    if exp.config.get("method", "exon") == "revision":
        from exon_jax.revision import step as revision_step
        extra = (revision_step.revision_settings(exp.config), sharding)
        make_epoch = revision_step.make_revision_train_epoch
        make_step = revision_step.make_revision_indexed_step
    if epoch_loop(exp) == "scan":
        epoch = make_epoch(exp.model, exp.optimizer, exp.settings, *extra)
        return jax.jit(lift(epoch), donate_argnums=0)
    step = make_step(exp.model, exp.optimizer, exp.settings, *extra)
    return train.make_stepwise_epoch(jax.jit(lift(step), donate_argnums=0), exp.settings)


def _network_kind(config: ml_collections.ConfigDict) -> str:
    """'conv' for networks with convolutions (the revision's classifier has them)."""
    return "conv" if config.get("method", "exon") == "revision" else config.model.network


def epoch_loop(exp: Experiment) -> str:
    """'scan' or 'python' (`config.train.epoch_loop`, 'auto' resolved by `backend`)."""
    return backend.epoch_loop(exp.config.train.epoch_loop, _network_kind(exp.config))


def model_axis_mode(exp: Experiment) -> str:
    """'vmap' or 'map' (`config.train.model_axis`, 'auto' resolved by `backend`)."""
    return backend.model_axis(exp.config.train.model_axis, _network_kind(exp.config))


def make_evaluate(exp: Experiment):
    """The jitted G-model evaluation of `exp` (see `evaluation.make_evaluate`)."""
    return evaluation.make_evaluate(
        exp.model, exp.analysis.latent_dim, exp.analysis.grid_extent, exp.analysis.grid_size,
        exp.num_models, model_axis_mode(exp))



def _meta(exp: Experiment, epoch: int, elapsed: float) -> dict[str, Any]:
    return {"epoch": int(epoch), "train_seconds": float(elapsed), **run_record_of(exp)}


@jax.jit
def _finite_models(params) -> jax.Array:
    """[G] bool: models whose floating parameters are all finite (one compiled reduction)."""
    leaves = [x for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
                              for x in leaves]), axis=0)


def _nonfinite_models(states) -> np.ndarray:
    """[G] bool on the host: models with a non-finite parameter."""
    return ~parallel.to_host(_finite_models(states.params))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       dataset: data_lib.ImageDataset | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Trains the config's G models (resuming from `workdir`), evaluates, writes results.

    Writes into workdir: config.json (once, by the first run), record.json, metrics.jsonl,
    tensorboard/<point>/, checkpoints/, results.json (per model; for a grid also
    sweep_results.json/.csv). A restart whose config changes a training field, or whose
    data differ from the recorded ones, is refused before anything is written. Figures are
    drawn by `analyze`.

    Returns:
      The results dict written to results.json.
    """
    configuration.validate_config(config)
    stored = run_record.read_config(workdir)
    changes = run_record.check_resume(stored, config) if stored is not None else []
    exp = build_experiment(config, dataset)
    os.makedirs(workdir, exist_ok=True)
    lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:
        return _train_locked(exp, workdir, stored is not None, changes, progress)


def _train_locked(exp: Experiment, workdir: str, resuming: bool, changes, progress: bool):
    config = exp.config
    manager = checkpoints.make_manager(os.path.join(workdir, "checkpoints"),
                                       config.train.max_checkpoints)
    writer, bar = None, None
    try:
        start_epoch, elapsed, states = 0, 0.0, None
        if checkpoints.latest_epoch(manager) is not None:
            states, meta, start_epoch, skipped = checkpoints.restore_latest(
                manager, abstract_states(exp))
            for epoch, reason in skipped:
                _log(progress, f"skipped checkpoint {epoch}: {reason}")
            _check_same_data(meta, exp)
            if start_epoch > config.train.epochs:
                raise configuration.ConfigError(
                    f"config.train.epochs: {config.train.epochs} is below the {start_epoch} "
                    f"epochs already trained in {workdir}")
            elapsed = meta["train_seconds"]
            _log(progress, f"resumed from epoch {start_epoch} in {workdir}")
        if jax.process_index() == 0:
            run_record.write_config_once(workdir, config)
            if not os.path.exists(os.path.join(workdir, RECORD_FILE)):
                with open(os.path.join(workdir, RECORD_FILE), "w") as f:
                    json.dump(run_record_of(exp), f)
            if resuming:
                run_record.record_resume(workdir, start_epoch, changes)

        data = device_data(exp)
        hparams = sharded_hparams(exp)
        epoch_fn = compile_epoch(exp)
        evaluate_fn = make_evaluate(exp)
        test_images, test_labels = device_test_set(exp)
        if states is None:
            states = init_states(exp)
            if config.pretrain.epochs > 0 and exp.model.classifier is not None:
                states = pretrain_classifier(exp, states, data, workdir, progress)

        memory = parallel.compiled_memory_gib(epoch_fn, states, hparams, data,
                                              epoch_key(config, 0, exp.mesh))
        limit = parallel.device_memory_limit_gib()
        _log(progress, f"{exp.num_models} model(s) on {parallel.describe(exp.mesh)}; "
             f"{exp.settings.steps_per_epoch} steps/epoch; "
             f"compiled epoch needs {memory.get('gib_per_device', float('nan')):.2f} GiB per device"
             + (f" of {limit:.1f}" if limit else ""))
        if limit and memory and memory["gib_per_device"] > 0.9 * limit:
            raise MemoryError(
                f"the {exp.num_models}-model grid needs about {memory['gib_per_device']:.1f} GiB "
                f"per device, more than 90% of the {limit:.1f} GiB available: use fewer grid "
                "points, more devices, or smaller batches")

        names = [configuration.point_name(p) for p in exp.points]
        writer = MetricWriter(workdir, names, start_epoch)
        writer.write_hparams(config.to_dict())
        epochs = config.train.epochs
        bar = _progress_bar(progress, start_epoch, epochs)
        last_good = checkpoints.latest_epoch(manager) if start_epoch else None
        for epoch in range(start_epoch, epochs):
            tick = time.perf_counter()
            states, train_metrics = epoch_fn(states, hparams, data,
                                             epoch_key(config, epoch, exp.mesh))
            train_metrics = parallel.to_host(train_metrics)
            elapsed += time.perf_counter() - tick
            bad_loss = ~np.isfinite(np.asarray(train_metrics["max_loss"]))
            bad = np.flatnonzero(bad_loss | _nonfinite_models(states))
            if bad.size:
                where = (f"the last good checkpoint is epoch {last_good} in "
                         f"{os.path.join(workdir, 'checkpoints')}" if last_good is not None
                         else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"non-finite loss or parameters in epoch {epoch + 1} for model(s) "
                    f"{[names[i] for i in bad]}; {where}")
            done = epoch + 1
            evaluated = None
            if done % config.train.eval_every == 0 or done == epochs:
                evaluated = parallel.to_host(evaluate_fn(states, hparams, test_images,
                                                         test_labels))
            for i in range(exp.num_models):
                row = {f"train/{k}": v for k, v in evaluation.scalar_row(train_metrics, i).items()}
                if evaluated is not None:
                    row.update({f"eval/{k}": v
                                for k, v in evaluation.scalar_row(evaluated, i).items()})
                    if exp.analysis.tensorboard_images:
                        writer.write_images(done, "reconstructions",
                                            evaluated["reconstructions"][i], i)
                        writer.write_images(done, "decoded_probe", evaluated["decoded_probe"][i], i)
                writer.write_scalars(done, row, i)
            writer.flush()
            if done % config.train.checkpoint_every == 0 or done == epochs:
                checkpoints.save(manager, done, states, _meta(exp, done, elapsed),
                                 last_good=last_good)
                last_good = done
            _update_bar(bar, train_metrics, evaluated)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        manager.close()

    evaluated = parallel.to_host(evaluate_fn(states, hparams, test_images, test_labels))
    results = summarise(exp, states, evaluated, elapsed)
    evaluation.write_results(workdir, results)
    return results


def _check_same_data(meta: dict[str, Any], exp: Experiment) -> None:
    """Refuses data whose content hash differs from the one the checkpoint recorded."""
    recorded = meta.get("dataset")
    if not recorded:
        return
    if recorded.get("sha256") != exp.fingerprint.get("sha256"):
        raise DataMismatch(
            f"the data set differs from the one this run was trained on: recorded "
            f"{recorded.get('name')!r} sha256 {str(recorded.get('sha256'))[:12]}…, found "
            f"{exp.fingerprint.get('name')!r} sha256 {str(exp.fingerprint.get('sha256'))[:12]}…")



def pretrain_classifier(exp: Experiment, states, data, workdir: str, progress: bool = True):
    """Pre-trains every model's classifier on the labelled set (paper Section 4.2).

    The finished stage is checkpointed in workdir/pretrain_checkpoints and restored,
    not repeated, when the run starts again before its first main checkpoint.
    """
    config = exp.config
    manager = checkpoints.make_manager(os.path.join(workdir, "pretrain_checkpoints"), 1)
    if checkpoints.latest_epoch(manager) == config.pretrain.epochs:
        states, _ = checkpoints.restore(manager, abstract_states(exp))
        manager.close()
        _log(progress, f"classifier pre-training restored from {manager.directory}")
        return states
    optimizer = optax.adam(config.pretrain.learning_rate, eps=1e-7)
    pretrain_epoch = train.make_classifier_pretrain_epoch(
        exp.model, optimizer, config.pretrain.batch_size, exp.labelled_idx.size)
    epoch_fn = jax.jit(train.over_models(pretrain_epoch, exp.num_models, model_axis_mode(exp)),
                       donate_argnums=(0, 1))
    opt_state = jax.jit(jax.vmap(lambda s: optimizer.init(s.params["model"]["classifier"])))(states)
    key = jax.random.fold_in(data_key(config), 2)
    for epoch in range(config.pretrain.epochs):
        pretrain_key = parallel.global_array(jax.random.fold_in(key, epoch),
                                             parallel.replicated(exp.mesh))
        states, opt_state, metrics = epoch_fn(states, opt_state, data, pretrain_key)
        metrics = parallel.to_host(metrics)
        _log(progress, f"classifier pre-training epoch {epoch + 1}/{config.pretrain.epochs}: "
             f"loss {np.mean(metrics['loss']):.4f}, accuracy {np.mean(metrics['accuracy']):.4f}")
    checkpoints.save(manager, config.pretrain.epochs, states,
                     {"epoch": config.pretrain.epochs, "stage": "classifier_pretraining"})
    manager.close()
    return states


def summarise(exp: Experiment, states, evaluated, train_seconds: float,
              validated: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Per-model results of `exp` (see `evaluation.summarise`)."""
    if validated is None and exp.validation is not None:
        validated = evaluate_states(exp, states, exp.validation)
    return evaluation.summarise(
        exp.points, parallel.to_host(states.beta), evaluated, validated, dataset_name=exp.dataset.name,
        epochs=exp.config.train.epochs, train_seconds=train_seconds,
        devices=parallel.describe(exp.mesh))


def read_record(workdir: str) -> dict[str, Any]:
    """record.json of a trained run (data set identity, points, priors)."""
    path = os.path.join(workdir, RECORD_FILE)
    if not os.path.exists(path):
        raise checkpoints.CheckpointError(
            f"{path} not found: is {workdir} a training run (of this version of exon_jax)?")
    with open(path) as f:
        return json.load(f)


def stored_config(workdir: str, overrides: dict[str, Any] | None = None
                  ) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was trained with, plus run-option `overrides`."""
    stored = run_record.read_config(workdir)
    if stored is None:
        raise checkpoints.CheckpointError(
            f"{os.path.join(workdir, run_record.CONFIG_FILE)} not found: is {workdir} a "
            "training run?")
    return run_record.apply_overrides(stored, overrides or {})


def restore_run(workdir: str, overrides: dict[str, Any] | None = None,
                dataset: data_lib.ImageDataset | None = None):
    """Rebuilds a run from its workdir and restores the newest checkpoint that restores.

    The config, grid points and priors are the ones the run recorded; `overrides` may set
    run options only (`configuration.RUN_OPTION_FIELDS`, e.g. {"analysis.grid_size": 9}).

    Args:
      workdir: a training run's directory (holds config.json, record.json, checkpoints/).
      overrides: run-option fields to change on top of the stored config.
      dataset: the arrays the run was trained on, when they are not where its config says
        (e.g. a data set passed from Python); checked against the recorded content hash.

    Returns:
      (experiment, states with a leading model axis [G], meta dict).
    """
    config = stored_config(workdir, overrides)
    record = read_record(workdir)
    if dataset is None:
        try:
            dataset = load_data(config)
        except data_lib.DataError as error:
            raise DataMismatch(
                f"the run was trained on data set {record['dataset'].get('name')!r}, which "
                f"cannot be loaded now ({error}); pass the same arrays as dataset=") from None
    exp = build_experiment(config, dataset, stored_priors=record["priors"])
    _check_same_data(record, exp)
    manager = checkpoints.make_manager(os.path.join(workdir, "checkpoints"))
    try:
        states, meta, _, _ = checkpoints.restore_latest(manager, abstract_states(exp))
    finally:
        manager.close()
    if "priors" in meta:
        exp.hparams = exp.hparams.replace(prior=train.stack_trees(
            [priors.prior_from_arrays(p) for p in meta["priors"]]))
    return exp, states, meta


def device_test_set(exp: Experiment, split: data_lib.ImageSplit | None = None):
    """Test images and labels (or those of `split`), replicated on the mesh."""
    split = exp.dataset.test if split is None else split
    return parallel.global_tree((split.images, split.labels.astype(np.int32)),
                                parallel.replicated(exp.mesh))


def sharded_hparams(exp: Experiment) -> train.HParams:
    """The [G] hyper-parameters with their model axis split like the states'."""
    return parallel.global_tree(exp.hparams, parallel.model_sharded(exp.mesh))


def evaluate_states(exp: Experiment, states,
                    split: data_lib.ImageSplit | None = None) -> dict[str, np.ndarray]:
    """Test (or `split`) metrics and posterior codes of all G models, on the host."""
    return parallel.to_host(make_evaluate(exp)(states, sharded_hparams(exp),
                                               *device_test_set(exp, split)))


def evaluate(workdir: str, overrides: dict[str, Any] | None = None,
             dataset: data_lib.ImageDataset | None = None) -> dict[str, Any]:
    """Restores the newest good checkpoint and rewrites results.json (no training)."""
    exp, states, meta = restore_run(workdir, overrides, dataset)
    evaluated = evaluate_states(exp, states)
    results = summarise(exp, states, evaluated, meta["train_seconds"])
    evaluation.write_results(workdir, results)
    return results


def analyze(workdir: str, overrides: dict[str, Any] | None = None,
            dataset: data_lib.ImageDataset | None = None) -> list[str]:
    """Restores the newest good checkpoint and rewrites all figures in workdir/figures."""
    from exon_jax import figures
    exp, states, _ = restore_run(workdir, overrides, dataset)
    evaluated = evaluate_states(exp, states)
    states = parallel.to_host(states)           # every process takes part in the gather
    if jax.process_index() != 0:
        return []
    return figures.write_run_figures(exp, states, evaluated, os.path.join(workdir, "figures"))



def _log(progress: bool, message: str) -> None:
    if progress and jax.process_index() == 0:
        print(message, flush=True)


def _progress_bar(progress: bool, start: int, total: int):
    if not progress or jax.process_index() != 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, unit="epoch", dynamic_ncols=True)


def _update_bar(bar, train_metrics, evaluated) -> None:
    if bar is None:
        return
    postfix = {"loss": f"{float(np.mean(train_metrics['loss'])):.4g}",
               "beta": f"{float(np.mean(train_metrics['beta'])):.3g}"}
    if evaluated is not None:
        postfix["test_err"] = f"{float(np.mean(evaluated['classification_error'])):.4f}"
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)
