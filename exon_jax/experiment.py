"""Host-side orchestration: config -> data on device -> scanned epochs -> checkpoints -> results.

A run is always a grid of G >= 1 models: a plain run is the one-point grid.
Its train state and hyper-parameters carry a leading model axis, and one
jitted, vmapped epoch trains all G models on the same batches. The host only
runs between epochs (logging, evaluation, checkpoints).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from exon_jax import checkpoints, configuration, metrics, parallel, train
from exon_jax import data as data_lib
from exon_jax import analysis
from exon_jax.writers import MetricWriter


class TrainingDiverged(RuntimeError):
    """The loss became non-finite."""


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

    @property
    def num_models(self) -> int:
        return len(self.points)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.train.images.shape[1:])


def load_data(config: ml_collections.ConfigDict) -> data_lib.ImageDataset:
    """The data set of `config.data`, restricted to `classes` and subsampled as configured."""
    dataset = data_lib.load_dataset(config.data.name, config.data.source,
                                    resolve_data_dir(config.data.dir))
    if tuple(config.data.classes):
        dataset = data_lib.select_classes(dataset, tuple(config.data.classes))
    if config.data.max_test:
        test = data_lib.ImageSplit(dataset.test.images[:config.data.max_test],
                                   dataset.test.labels[:config.data.max_test])
        dataset = dataclasses.replace(dataset, test=test)
    return dataset


def resolve_data_dir(directory: str) -> str:
    """A relative data dir is taken from the working directory, else from the repository root."""
    if os.path.isabs(directory) or os.path.exists(directory):
        return directory
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(repo_root, directory)
    return candidate if os.path.exists(candidate) else directory


def build_experiment(config: ml_collections.ConfigDict,
                     dataset: data_lib.ImageDataset | None = None,
                     devices=None) -> Experiment:
    """Validates the config and builds data, network, optimiser, settings and hparams.

    Args:
      config: the experiment config.
      dataset: arrays to use instead of loading `config.data`.
      devices: the devices of the mesh (default: all).
    """
    configuration.validate_config(config)
    dataset = dataset if dataset is not None else load_data(config)
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
    image_shape = tuple(dataset.train.images.shape[1:])
    return Experiment(
        config=config, dataset=dataset, labelled_idx=labelled_idx,
        unlabelled_idx=unlabelled_idx,
        model=configuration.build_model(config, dataset.num_classes, image_shape),
        optimizer=configuration.build_optimizer(config), settings=settings, points=points,
        hparams=hparams, mesh=parallel.make_mesh(len(points), devices))


def device_data(exp: Experiment) -> train.DeviceData:
    """The training arrays, replicated on every device of the mesh."""
    arrays = train.DeviceData(
        images=exp.dataset.train.images, labels=exp.dataset.train.labels.astype(np.int32),
        labelled_idx=exp.labelled_idx, unlabelled_idx=exp.unlabelled_idx)
    return jax.device_put(arrays, parallel.replicated(exp.mesh))


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
    keys, hparams = jax.device_put((model_keys(exp), exp.hparams), sharding)
    return jax.jit(create, out_shardings=sharding)(keys, hparams)


def abstract_states(exp: Experiment):
    """Shapes and dtypes of `init_states` without computing it."""
    create = jax.vmap(lambda key, hp: train.create_train_state(
        key, exp.model, exp.optimizer, hp, exp.settings, exp.image_shape))
    return jax.eval_shape(create, model_keys(exp), exp.hparams)


def compile_epoch(exp: Experiment):
    """The G-model epoch `(states, hparams, data, epoch_key) -> (states, metrics)`.

    One jitted `lax.scan` over the epoch's steps, or (`epoch_loop`) one jitted step
    per Python call; either way the states are donated and batches gathered on device.
    """
    lift = functools.partial(train.over_models, num_models=exp.num_models,
                             mode=model_axis_mode(exp))
    sharding = parallel.batch_sharded(exp.mesh)
    if epoch_loop(exp) == "scan":
        epoch = train.make_train_epoch(exp.model, exp.optimizer, exp.settings, sharding)
        return jax.jit(lift(epoch), donate_argnums=0)
    step = train.make_indexed_step(exp.model, exp.optimizer, exp.settings, sharding)
    return train.make_stepwise_epoch(jax.jit(lift(step), donate_argnums=0), exp.settings)


def epoch_loop(exp: Experiment) -> str:
    """`config.train.epoch_loop`; "auto" scans, except convolutional networks on CPU,
    which XLA:CPU runs ~10x slower inside a loop (25.7 s vs 1.9 s per CIFAR step)."""
    loop = exp.config.train.epoch_loop
    if loop == "auto":
        conv_on_cpu = exp.config.model.network == "conv" and jax.default_backend() == "cpu"
        return "python" if conv_on_cpu else "scan"
    return loop


def model_axis_mode(exp: Experiment) -> str:
    """How a grid's models run: `config.train.model_axis`, or for "auto" vmap except
    convolutional networks on CPU (lax.map: XLA:CPU runs vmapped convs as slow grouped convs)."""
    mode = exp.config.train.model_axis
    if mode == "auto":
        conv_on_cpu = exp.config.model.network == "conv" and jax.default_backend() == "cpu"
        return "map" if conv_on_cpu else "vmap"
    return mode


def make_evaluate(exp: Experiment):
    """The jitted G-model test evaluation `(states, hparams, images, labels) -> dict`.

    Per model: classification error (eq. 20), mean KL bound (eq. 18), negative
    SSIM (eq. 19) of the decoded 13 x 13 latent grid (2-D latents) or of the
    reconstructions of the first 169 test images (higher-dimensional latents),
    design fidelity of the posterior codes, and the codes themselves.
    """
    encode = train.make_eval_forward(exp.model)
    grid = analysis.latent_grid(exp.config.analysis.grid_extent, exp.config.analysis.grid_size)
    latent_dim = exp.config.model.latent_dim

    def evaluate_one(state, hparams, images, labels):
        logits, mean, logvar = encode(state, images)
        codes = metrics.posterior_mean_code(logits, mean)
        variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
        probe = grid if latent_dim == 2 else codes[:grid.shape[0]]
        decoded = exp.model.apply(variables, probe, train=False, method=exp.model.decode)
        fidelity = metrics.design_fidelity(codes, labels, hparams.prior)
        return {
            "classification_error": metrics.classification_error(logits, labels),
            "kl": metrics.mean_kl(logits, mean, logvar, hparams.prior),
            "negative_ssim": metrics.negative_ssim(decoded),
            "max_centre_distance": fidelity["max_centre_distance"],
            "mean_inside_95": fidelity["mean_inside_95"],
            "centre_distance": fidelity["centre_distance"],
            "inside_95": fidelity["inside_95"],
            "codes": codes,
        }

    return jax.jit(train.over_models(evaluate_one, exp.num_models, model_axis_mode(exp)))


def estimate_memory(exp: Experiment, epoch_fn, states, data, hparams) -> dict[str, float]:
    """XLA's own memory analysis of the compiled epoch, in GiB per device ({} if unknown)."""
    if not hasattr(epoch_fn, "lower"):
        return {}
    compiled = epoch_fn.lower(states, hparams, data, data_key(exp.config)).compile()
    analysis_ = compiled.memory_analysis()
    if analysis_ is None:
        return {}
    total = (analysis_.argument_size_in_bytes + analysis_.output_size_in_bytes
             + analysis_.temp_size_in_bytes - analysis_.alias_size_in_bytes)
    return {"gib_per_device": total / 2**30, "temp_gib": analysis_.temp_size_in_bytes / 2**30}


def device_memory_limit_gib() -> float | None:
    """Memory of one device in GiB: the accelerator's limit, or the host's RAM on CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] / 2**30
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


def _row(values: dict[str, Any], index: int) -> dict[str, float]:
    return {k: float(np.asarray(v)[index]) for k, v in values.items() if np.ndim(v) == 1}


def _meta(exp, epoch, elapsed):
    return {"epoch": int(epoch), "train_seconds": float(elapsed), "points": exp.points}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       dataset: data_lib.ImageDataset | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Trains the config's G models (resuming from `workdir`), evaluates, writes results.

    Writes into workdir: config.json, metrics.jsonl, tensorboard/, checkpoints/,
    results.json (per model; for a grid also sweep_results.json/.csv).

    Returns:
      The results dict written to results.json.
    """
    exp = build_experiment(config, dataset)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    data = device_data(exp)
    hparams = sharded_hparams(exp)
    epoch_fn = compile_epoch(exp)
    evaluate_fn = make_evaluate(exp)
    test_images, test_labels = device_test_set(exp)

    manager = checkpoints.make_manager(os.path.join(workdir, "checkpoints"),
                                       config.train.max_checkpoints)
    start_epoch, elapsed = 0, 0.0
    if checkpoints.latest_epoch(manager) is not None:
        states, meta = checkpoints.restore(manager, abstract_states(exp))
        states = jax.device_put(states, parallel.model_sharded(exp.mesh))
        start_epoch, elapsed = meta["epoch"], meta["train_seconds"]
        _log(progress, f"resumed from epoch {start_epoch} in {workdir}")
    else:
        states = init_states(exp)
        if config.pretrain.epochs > 0 and exp.model.classifier is not None:
            states = pretrain_classifier(exp, states, data, workdir, progress)

    memory = estimate_memory(exp, epoch_fn, states, data, hparams)
    limit = device_memory_limit_gib()
    _log(progress, f"{exp.num_models} model(s) on {parallel.describe(exp.mesh)}; "
         f"{exp.settings.steps_per_epoch} steps/epoch; "
         f"compiled epoch needs {memory.get('gib_per_device', float('nan')):.2f} GiB per device"
         + (f" of {limit:.1f}" if limit else ""))
    if limit and memory and memory["gib_per_device"] > 0.9 * limit:
        raise MemoryError(
            f"the {exp.num_models}-model grid needs about {memory['gib_per_device']:.1f} GiB per "
            f"device, more than 90% of the {limit:.1f} GiB available: use fewer grid points, more "
            "devices, or smaller batches")

    writer = MetricWriter(workdir)
    writer.write_hparams(config.to_dict())
    key = data_key(config)
    epochs = config.train.epochs
    bar = _progress_bar(progress, start_epoch, epochs)
    last_good = checkpoints.latest_epoch(manager)
    for epoch in range(start_epoch, epochs):
        tick = time.perf_counter()
        states, train_metrics = epoch_fn(states, hparams, data, jax.random.fold_in(key, epoch))
        train_metrics = jax.device_get(train_metrics)
        elapsed += time.perf_counter() - tick
        bad = [i for i in range(exp.num_models) if not np.isfinite(train_metrics["max_loss"][i])]
        if bad:
            writer.close()
            where = (f"the last good checkpoint is epoch {last_good} in "
                     f"{os.path.join(workdir, 'checkpoints')}" if last_good is not None
                     else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"non-finite loss in epoch {epoch + 1} for model(s) "
                f"{[configuration.point_name(exp.points[i]) for i in bad]}; {where}")
        done = epoch + 1
        evaluated = None
        if done % config.train.eval_every == 0 or done == epochs:
            evaluated = jax.device_get(evaluate_fn(states, hparams, test_images, test_labels))
        for i in range(exp.num_models):
            row = {f"train/{k}": v for k, v in _row(train_metrics, i).items()}
            if evaluated is not None:
                row.update({f"eval/{k}": v for k, v in _row(evaluated, i).items()})
            row["model"] = i
            writer.write_scalars(done, row)
        writer.flush()
        if done % config.train.checkpoint_every == 0 or done == epochs:
            checkpoints.save(manager, done, states, _meta(exp, done, elapsed))
            last_good = done
        _update_bar(bar, train_metrics, evaluated)
    if bar is not None:
        bar.close()
    writer.close()
    manager.close()

    evaluated = jax.device_get(evaluate_fn(states, hparams, test_images, test_labels))
    results = summarise(exp, states, evaluated, elapsed)
    write_results(workdir, results)
    if config.analysis.figures:
        from exon_jax import figures
        figures.write_run_figures(exp, states, evaluated, os.path.join(workdir, "figures"))
    return results


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
        return jax.device_put(states, parallel.model_sharded(exp.mesh))
    optimizer = optax.adam(config.pretrain.learning_rate, eps=1e-7)
    pretrain_epoch = train.make_classifier_pretrain_epoch(
        exp.model, optimizer, config.pretrain.batch_size, exp.labelled_idx.size)
    epoch_fn = jax.jit(train.over_models(pretrain_epoch, exp.num_models, model_axis_mode(exp)),
                       donate_argnums=(0, 1))
    opt_state = jax.jit(jax.vmap(lambda s: optimizer.init(s.params["model"]["classifier"])))(states)
    key = jax.random.fold_in(data_key(config), 2)
    for epoch in range(config.pretrain.epochs):
        states, opt_state, metrics = epoch_fn(states, opt_state, data, jax.random.fold_in(key, epoch))
        metrics = jax.device_get(metrics)
        _log(progress, f"classifier pre-training epoch {epoch + 1}/{config.pretrain.epochs}: "
             f"loss {np.mean(metrics['loss']):.4f}, accuracy {np.mean(metrics['accuracy']):.4f}")
    checkpoints.save(manager, config.pretrain.epochs, states,
                     {"epoch": config.pretrain.epochs, "stage": "classifier_pretraining"})
    manager.close()
    return states


def summarise(exp: Experiment, states, evaluated, train_seconds: float) -> dict[str, Any]:
    """Per-model results: the paper's three metrics, design fidelity, final beta."""
    models = []
    for i, point in enumerate(exp.points):
        models.append({
            "name": configuration.point_name(point),
            "point": point,
            "classification_error": float(evaluated["classification_error"][i]),
            "kl": float(evaluated["kl"][i]),
            "negative_ssim": float(evaluated["negative_ssim"][i]),
            "max_centre_distance_sd": float(evaluated["max_centre_distance"][i]),
            "centre_distance_sd": [float(v) for v in evaluated["centre_distance"][i]],
            "mean_inside_95": float(evaluated["mean_inside_95"][i]),
            "beta": float(np.asarray(states.beta)[i]),
        })
    return {"dataset": exp.dataset.name, "num_models": exp.num_models,
            "epochs": int(exp.config.train.epochs), "train_seconds": train_seconds,
            "devices": parallel.describe(exp.mesh), "models": models}


def write_results(workdir: str, results: dict[str, Any]) -> None:
    """results.json; for grids also sweep_results.json and sweep_results.csv (one row a model)."""
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if results["num_models"] > 1:
        with open(os.path.join(workdir, "sweep_results.json"), "w") as f:
            json.dump(results["models"], f, indent=2)
        fields = sorted({k for m in results["models"] for k in m["point"]})
        scalars = ["classification_error", "kl", "negative_ssim", "max_centre_distance_sd",
                   "mean_inside_95", "beta"]
        with open(os.path.join(workdir, "sweep_results.csv"), "w") as f:
            f.write(",".join(["name", *fields, *scalars]) + "\n")
            for m in results["models"]:
                f.write(",".join([m["name"], *[str(m["point"].get(k, "")) for k in fields],
                                  *[f"{m[s]:.6g}" for s in scalars]]) + "\n")


def restore_run(workdir: str, config: ml_collections.ConfigDict | None = None,
                dataset: data_lib.ImageDataset | None = None):
    """Rebuilds a run from its workdir and restores the latest checkpoint.

    Args:
      workdir: a training run's directory (holds config.json and checkpoints/).
      config: override the saved config (default: workdir/config.json).
      dataset: use these arrays instead of loading the config's data set.

    Returns:
      (experiment, states with a leading model axis [G], meta dict).
    """
    if config is None:
        path = os.path.join(workdir, "config.json")
        if not os.path.exists(path):
            raise checkpoints.CheckpointError(f"{path} not found: is {workdir} a training run?")
        with open(path) as f:
            config = ml_collections.ConfigDict(json.load(f))
    exp = build_experiment(config, dataset)
    manager = checkpoints.make_manager(os.path.join(workdir, "checkpoints"))
    states, meta = checkpoints.restore(manager, abstract_states(exp))
    manager.close()
    return exp, jax.device_put(states, parallel.model_sharded(exp.mesh)), meta


def device_test_set(exp: Experiment):
    """Test images and labels, replicated on the mesh."""
    return jax.device_put((exp.dataset.test.images, exp.dataset.test.labels.astype(np.int32)),
                          parallel.replicated(exp.mesh))


def sharded_hparams(exp: Experiment) -> train.HParams:
    """The [G] hyper-parameters with their model axis split like the states'."""
    return jax.device_put(exp.hparams, parallel.model_sharded(exp.mesh))


def evaluate_states(exp: Experiment, states) -> dict[str, np.ndarray]:
    """Test metrics and posterior codes of all G models, on the host."""
    return jax.device_get(make_evaluate(exp)(states, sharded_hparams(exp), *device_test_set(exp)))


def evaluate(config: ml_collections.ConfigDict | None, workdir: str,
             dataset: data_lib.ImageDataset | None = None) -> dict[str, Any]:
    """Restores the latest checkpoint and rewrites results.json (no training)."""
    exp, states, meta = restore_run(workdir, config, dataset)
    evaluated = evaluate_states(exp, states)
    results = summarise(exp, states, evaluated, meta["train_seconds"])
    write_results(workdir, results)
    return results


def analyze(config: ml_collections.ConfigDict | None, workdir: str,
            dataset: data_lib.ImageDataset | None = None) -> None:
    """Restores the latest checkpoint and rewrites all figures in workdir/figures."""
    from exon_jax import figures
    exp, states, _ = restore_run(workdir, config, dataset)
    evaluated = evaluate_states(exp, states)
    figures.write_run_figures(exp, states, evaluated, os.path.join(workdir, "figures"))


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
