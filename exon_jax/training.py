"""The host training loop: restore or start, compile once, run epochs, log, checkpoint.

A run is a grid of G >= 1 models trained by one compiled epoch (`experiment.compile_epoch`);
the host only runs between epochs. Each phase's wall-clock time is summed in a
`timing.Stopwatch` (setup, compile, train, evaluate, logging, checkpoints), which
`main.py` writes to timings.json.

Between epochs the host also checks the run: before training, that every process holds
the same config, data and code (`parallel.check_processes_agree`); after each epoch, that
no model diverged (non-finite, or parameters above `evaluation.MAX_PARAMETER`), and
whether any process was asked to stop (`preemption`: then the epoch is saved and
`preemption.Preempted` raised). A stepwise epoch also checks after each of its steps: a
stop there saves a partial epoch in workdir/partial_epoch, from which the next run
resumes at the next step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import shutil
import sys
import threading
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from exon_jax import backend, configuration, evaluation, experiment, parallel, saved_run, train
from exon_jax.ops import checkpoints, preemption, run_record
from exon_jax import data as data_lib
from exon_jax.ops.timing import Stopwatch
from exon_jax.ops.workdir_lock import WorkdirLock
from exon_jax.ops.writers import MetricWriter
from exon_jax.errors import ExpectedError


class TrainingDiverged(ExpectedError, RuntimeError):
    """The loss or the parameters became non-finite."""


@dataclasses.dataclass
class TrainedRun:
    """A finished training run, still in memory.

    Attributes:
      exp: the experiment it was built from.
      states: the G trained states (leading model axis, on device).
      evaluated: the final evaluation (`evaluation.make_evaluate` outputs) on the host.
      results: the dict written to results.json.
    """

    exp: experiment.Experiment
    states: Any
    evaluated: dict[str, np.ndarray]
    results: dict[str, Any]


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: data_lib.ImageDataset | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains the config's G models (resuming from `workdir`), evaluates, writes results.

    Writes into workdir: config.json (once, by the first run), record.json, metrics.jsonl,
    tensorboard/<point>/, checkpoints/, best_checkpoints/ (train.keep_best), results.json
    (per model; for a grid also sweep_results.json/.csv). A restart whose config changes a
    training field, or whose data differ from the recorded ones, is refused before anything
    is written. Figures are drawn by `saved_run.write_figures`.

    Returns:
      The results dict written to results.json.
    """
    return run(config, workdir, dataset, progress).results


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: data_lib.ImageDataset | None = None,
    progress: bool = True,
    stopwatch: Stopwatch | None = None,
) -> TrainedRun:
    """`train_and_evaluate`, returning the trained run itself (states and evaluation too).

    Args:
      stopwatch: sums each phase's seconds (a fresh one when None).

    Raises:
      preemption.Preempted: SIGTERM or SIGINT reached a process (in the main thread):
        the epoch it was in (the step, in a stepwise epoch) was finished and saved with
        every process; running the same call again resumes from it. A second signal ends
        the process at once.
    """
    stopwatch = stopwatch or Stopwatch()
    with preemption.StopRequests() as stop:
        return _run(config, workdir, dataset, progress, stopwatch, stop)


def _run(config, workdir, dataset, progress, stopwatch, stop) -> TrainedRun:
    """`run` with signals caught: checks (config against the run's record, processes
    against each other) before anything is written, then trains under the workdir lock."""
    with stopwatch.phase("setup"):
        configuration.validate_config(config)
        if jax.process_index() == 0:
            backend.warn_bf16(config.model.compute_dtype)
        identity = run_record.run_identity(workdir)  # rebuilt from a checkpoint if need be
        if jax.process_index() == 0:
            for note in identity.notes:
                print(f"note: {note}", file=sys.stderr, flush=True)
        stored = identity.config
        changes = run_record.check_resume(stored, config) if stored is not None else []
        exp = experiment.build_validated(config, dataset)
        parallel.check_processes_agree(saved_run.process_identity(exp))
        _stop_before_training(stop, workdir, exp.spec.options.epochs, None)
        os.makedirs(workdir, exist_ok=True)
        lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:
        if jax.process_index() == 0:
            run_record.write_rebuilt(workdir, identity)
        return _train_locked(exp, workdir, stored is not None, changes, progress, stopwatch, stop)


@dataclasses.dataclass
class _Start:
    states: Any  # restored states, or None for a fresh start
    epoch: int  # epochs already trained
    train_seconds: float  # training time already spent
    last_good: int | None  # newest checkpoint known to restore
    step: int = 0  # steps of epoch + 1 already trained (a partial epoch's)
    earlier: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)  # their metrics


def _restore(exp: experiment.Experiment, manager, workdir: str, progress: bool) -> _Start:
    """The newest checkpoint that restores, checked against this run's data and epochs."""
    if checkpoints.latest_epoch(manager) is None:
        return _Start(None, 0, 0.0, None)
    states, meta, epoch, skipped = checkpoints.restore_latest(
        manager, experiment.abstract_states(exp)
    )
    for bad, reason in skipped:
        _log(progress, f"skipped checkpoint {bad}: {reason}")
    run_record.check_same_data(meta, exp.fingerprint)
    if epoch > exp.spec.options.epochs:
        raise configuration.ConfigError(
            f"config.train.epochs: {exp.spec.options.epochs} is below the {epoch} "
            f"epochs already trained in {workdir}"
        )
    _log(progress, f"resumed from epoch {epoch} in {workdir}")
    return _Start(states, epoch, meta["train_seconds"], checkpoints.latest_epoch(manager))


PARTIAL_DIR = "partial_epoch"  # a stepwise epoch stopped by a signal between two steps


def _partial_number(exp: experiment.Experiment, epochs_done: int, steps: int) -> int:
    """The partial checkpoint's step number: steps trained since the start."""
    return epochs_done * exp.settings.steps_per_epoch + steps


def _save_partial(
    exp: experiment.Experiment, workdir: str, epochs_done: int, stopped, states, elapsed, last_good
) -> str:
    """Saves the states `stopped.steps` steps into epoch `epochs_done + 1` with those steps'
    metrics (`train.StoppedEpoch`), in workdir/partial_epoch (one checkpoint kept); every
    process. Returns the directory."""
    directory = os.path.join(workdir, PARTIAL_DIR)
    per_step = parallel.to_host(stopped.per_step)
    meta = {
        "epoch": epochs_done,
        "step": stopped.steps,
        "steps_per_epoch": exp.settings.steps_per_epoch,
        "train_seconds": float(elapsed),
        "per_step": {  # JSON floats hold float32 values exactly
            name: {
                "dtype": str(value.dtype),
                "values": np.stack([r[name] for r in per_step]).tolist(),
            }
            for name, value in per_step[0].items()
        },
        **experiment.run_record_of(exp),
    }
    manager = checkpoints.make_manager(directory, 1)
    try:
        checkpoints.save(
            manager, _partial_number(exp, epochs_done, stopped.steps), states, meta, last_good
        )
    finally:
        manager.close()
    return directory


def _restore_partial(
    exp: experiment.Experiment, workdir: str, start: _Start, progress: bool
) -> _Start:
    """The partial epoch of workdir/partial_epoch when it continues from `start` (the newest
    epoch checkpoint that restored, or a fresh start): its epoch is at or past start's and
    before the run's last, its steps per epoch are this run's, and the epoch is stepwise.
    Otherwise `start`."""
    directory = os.path.join(workdir, PARTIAL_DIR)
    found = checkpoints.newest_meta(directory)
    if found is None or experiment.epoch_loop(exp) != "python":
        return start
    _, meta = found
    if (
        not start.epoch <= meta["epoch"] < exp.spec.options.epochs
        or meta["steps_per_epoch"] != exp.settings.steps_per_epoch
    ):
        return start
    try:
        states, meta, _, skipped = checkpoints.restore_latest(
            directory, experiment.abstract_states(exp)
        )
    except checkpoints.CheckpointError as error:
        _log(progress, f"the partial epoch is not used: {error}")
        return start
    for bad, reason in skipped:
        _log(progress, f"skipped partial checkpoint {bad}: {reason}")
    run_record.check_same_data(meta, exp.fingerprint)
    earlier = [
        {name: np.asarray(m["values"][i], m["dtype"]) for name, m in meta["per_step"].items()}
        for i in range(meta["step"])
    ]
    _log(
        progress,
        f"resumed from step {meta['step']} of {meta['steps_per_epoch']} in epoch "
        f"{meta['epoch'] + 1} in {directory}",
    )
    return _Start(
        states, meta["epoch"], meta["train_seconds"], start.last_good, meta["step"], earlier
    )


def _drop_partial(workdir: str) -> None:
    """Removes workdir/partial_epoch (process 0) once an epoch checkpoint is saved: a
    partial epoch is saved only as a run stops, so any there is older than that epoch."""
    directory = os.path.join(workdir, PARTIAL_DIR)
    if jax.process_index() == 0 and os.path.isdir(directory):
        shutil.rmtree(directory, ignore_errors=True)


def _write_run_files(
    exp: experiment.Experiment, workdir: str, resuming: bool, start_epoch: int, changes
) -> None:
    """config.json and record.json (first run only; with the code that ran:
    `run_record.code_identity`), resumes.jsonl (restarts, with theirs); process 0."""
    if jax.process_index() != 0:
        return
    run_record.write_config_once(workdir, exp.config)
    run_record.write_record_once(
        workdir, {**experiment.run_record_of(exp), "code": run_record.code_identity()}
    )
    if resuming:
        run_record.record_resume(workdir, start_epoch, changes)


def _check_memory(exp: experiment.Experiment, memory: dict[str, float], progress: bool) -> None:
    """Logs the compiled epoch's memory (unknown for a stepwise epoch: `memory` is {});
    refuses a grid that would not fit the device."""
    limit = parallel.device_memory_limit_gib()
    of_limit = f" of {limit:.1f}" if limit else ""
    needs = (  # a stepwise epoch is not compiled ahead: its memory is not known
        f"compiled epoch needs {memory['gib_per_device']:.2f} GiB per device{of_limit}"
        if "gib_per_device" in memory
        else "memory per device unknown"
    )
    _log(
        progress,
        f"{exp.num_models} model(s) on {parallel.describe(exp.mesh)}; "
        f"{exp.settings.steps_per_epoch} steps/epoch; {needs}",
    )
    if limit and memory and memory["gib_per_device"] > 0.9 * limit:
        raise MemoryError(
            f"the {exp.num_models}-model grid needs about {memory['gib_per_device']:.1f} GiB "
            f"per device, more than 90% of the {limit:.1f} GiB available: use fewer grid "
            "points, more devices, or smaller batches"
        )


def _check_finite(
    health: tuple[np.ndarray, np.ndarray],
    train_metrics,
    evaluated,
    epoch: int,
    names: list[str],
    last_good: int | None,
    workdir: str,
) -> None:
    """Raises TrainingDiverged naming the models whose loss or parameters are non-finite,
    whose parameters exceed `evaluation.MAX_PARAMETER`, or whose evaluation (when
    `evaluated`) is not finite: such a state is never saved as a good checkpoint.

    Args:
      health: `evaluation.parameter_health` of the states after `epoch`, on the host.
      evaluated: this epoch's test evaluation on the host, or None.
    """
    finite, largest = (np.asarray(a) for a in health)
    finite = finite & np.isfinite(np.asarray(train_metrics["max_loss"]))
    reasons = {
        reason.replace("non-finite parameters", "non-finite loss or parameters"): models
        for reason, models in evaluation.unsound_models(finite, largest, evaluated).items()
    }
    if reasons:
        where = (
            f"the last good checkpoint is epoch {last_good} in "
            f"{os.path.join(workdir, 'checkpoints')}"
            if last_good is not None
            else "no checkpoint was written yet"
        )
        raise TrainingDiverged(
            "; ".join(
                f"{reason} in epoch {epoch} for model(s) {[names[i] for i in models]}"
                for reason, models in reasons.items()
            )
            + f"; {where}"
        )


def _log_epoch(
    writer: MetricWriter,
    exp: experiment.Experiment,
    epoch: int,
    train_metrics,
    evaluated,
    validated=None,
) -> None:
    """One metrics row per model (train, and eval when evaluated: the test metrics, and
    eval/validation_error and eval/validation_kl when validated), images to TensorBoard."""
    for i in range(exp.num_models):
        row = {f"train/{k}": v for k, v in evaluation.scalar_row(train_metrics, i).items()}
        if evaluated is not None:
            row.update({f"eval/{k}": v for k, v in evaluation.scalar_row(evaluated, i).items()})
        if validated is not None:
            row["eval/validation_error"] = float(validated["classification_error"][i])
            row["eval/validation_kl"] = float(validated["kl"][i])
        if evaluated is not None:
            if exp.analysis.tensorboard_images:
                writer.write_images(epoch, "reconstructions", evaluated["reconstructions"][i], i)
                writer.write_images(epoch, "decoded_probe", evaluated["decoded_probe"][i], i)
        writer.write_scalars(epoch, row, i)
    writer.flush()


_HPARAM_METRICS = (
    "eval/classification_error",
    "eval/validation_error",
    "eval/kl",
    "eval/negative_ssim",
    "eval/max_centre_distance",
    "train/loss",
)


def _point_hparams(exp: experiment.Experiment) -> list[dict[str, Any]]:
    """Each model's flat config ("loss.lambda1": 10.0, ...) with its grid point's values in
    the fields they set (`configuration.SWEEP_TARGETS`); the sweep lists left out."""
    base = {
        k: v
        for k, v in run_record.flatten(run_record.config_as_dict(exp.config)).items()
        if not k.startswith("sweep.")
    }
    return [
        {**base, **{configuration.SWEEP_TARGETS[k]: v for k, v in point.items()}}
        for point in exp.points
    ]


def _train_locked(
    exp: experiment.Experiment,
    workdir: str,
    resuming: bool,
    changes,
    progress: bool,
    stopwatch: Stopwatch,
    stop: preemption.StopRequests,
) -> TrainedRun:
    options = exp.spec.options
    epochs = options.epochs
    data_seed = exp.spec.data.seed
    names = exp.spec.point_names
    with stopwatch.phase("checkpoints"):
        manager = checkpoints.make_manager(
            os.path.join(workdir, "checkpoints"), options.max_checkpoints
        )
    writer, evaluated, validated = None, None, None
    bar = _ProgressBar(progress, exp)
    validation = _Validation(exp)
    try:
        with stopwatch.phase("setup"):
            start = _restore_partial(
                exp, workdir, _restore(exp, manager, workdir, progress), progress
            )
            _write_run_files(exp, workdir, resuming, start.epoch, changes)
        pretrain = None
        if options.pretrain_epochs > 0 and exp.model.classifier is not None:
            pretrain = lambda states, data: pretrain_classifier(  # noqa: E731
                exp, states, data, workdir, progress
            )
        placed = experiment.place(
            exp,
            start.states,
            bar.step,
            stopwatch,
            prepare=pretrain,
            check_memory=lambda memory: _check_memory(exp, memory, progress),
        )
        states, hparams, data = placed.states, placed.hparams, placed.data
        test_images, test_labels = placed.test_set
        epoch_fn, evaluate_fn = placed.epoch_fn, placed.evaluate_fn
        validation.use(placed)
        del placed  # the loop owns the states from here (each epoch donates them)
        with stopwatch.phase("checkpoints"):
            validation.open_best(workdir, start.epoch, progress)

        _stop_before_training(stop, workdir, epochs, start.epoch)
        with stopwatch.phase("logging"):
            writer = MetricWriter(workdir, names, start.epoch)
            writer.write_hparams(
                _point_hparams(exp),
                [m for m in _HPARAM_METRICS if exp.validation is not None or "valid" not in m],
            )
        bar.open(start.epoch, epochs, start.step)
        elapsed, last_good = start.train_seconds, start.last_good
        stepwise = experiment.epoch_loop(exp) == "python"
        for epoch in range(start.epoch, epochs):
            done = epoch + 1
            between_steps: dict[str, Any] = {}  # a stepwise epoch resumes, stops between steps
            if stepwise:
                between_steps["stop"] = lambda: preemption.agreed(stop.requested)
                if epoch == start.epoch and start.step:
                    between_steps["start"] = start.step
                    between_steps["earlier"] = [
                        parallel.global_tree(row, parallel.model_sharded(exp.mesh))
                        for row in start.earlier
                    ]
            with stopwatch.phase("train"):  # the epoch, and its metrics and checks on the host
                states, train_metrics = epoch_fn(
                    states,
                    hparams,
                    data,
                    experiment.epoch_key(data_seed, epoch, exp.mesh),
                    **between_steps,
                )
                if not isinstance(train_metrics, train.StoppedEpoch):
                    train_metrics, health = parallel.to_host(
                        (train_metrics, evaluation.parameter_health(states.params))
                    )
            elapsed = start.train_seconds + stopwatch.seconds["train"]
            if isinstance(train_metrics, train.StoppedEpoch):
                with stopwatch.phase("checkpoints"):
                    directory = _save_partial(
                        exp, workdir, epoch, train_metrics, states, elapsed, last_good
                    )
                raise preemption.Preempted(
                    stop.signal_name or "a signal to another process",
                    done,
                    epochs,
                    directory,
                    step=train_metrics.steps,
                    steps_per_epoch=exp.settings.steps_per_epoch,
                )
            _check_finite(health, train_metrics, None, done, names, last_good, workdir)
            evaluated, validated = None, None
            if done % options.eval_every == 0 or done == epochs:
                with stopwatch.phase("evaluate"):
                    evaluated = parallel.to_host(
                        evaluate_fn(states, hparams, test_images, test_labels)
                    )
                    validated = validation.evaluate(states, hparams)
                _check_finite(health, train_metrics, evaluated, done, names, last_good, workdir)
                if validated is not None:
                    with stopwatch.phase("checkpoints"):
                        validation.keep_best(done, states, validated, elapsed)
            with stopwatch.phase("logging"):
                _log_epoch(writer, exp, done, train_metrics, evaluated, validated)
                bar.epoch_done(done, train_metrics, evaluated)
            saved = done % options.checkpoint_every == 0 or done == epochs
            if saved:
                with stopwatch.phase("checkpoints"):
                    _save(manager, exp, done, states, elapsed, last_good)
                    _drop_partial(workdir)
                last_good = done
            if done < epochs and preemption.agreed(stop.requested):  # every process agrees
                if not saved:
                    with stopwatch.phase("checkpoints"):
                        _save(manager, exp, done, states, elapsed, last_good)
                        _drop_partial(workdir)
                raise preemption.Preempted(
                    stop.signal_name or "a signal to another process",
                    done,
                    epochs,
                    os.path.join(workdir, "checkpoints"),
                )
    finally:
        with stopwatch.phase("logging"):
            bar.close()
            if writer is not None:
                writer.close()
        with stopwatch.phase("checkpoints"):
            manager.close()
            validation.close()

    with stopwatch.phase("evaluate"):
        if evaluated is None:  # nothing trained now: the restored run's last epoch
            evaluated = parallel.to_host(evaluate_fn(states, hparams, test_images, test_labels))
        results = experiment.summarise(
            exp, states, evaluated, start.train_seconds + stopwatch.seconds["train"], validated
        )
        saved_run.describe_results(results, exp, {})
        evaluation.write_results(workdir, results)
    return TrainedRun(exp, states, evaluated, results)


def _stop_before_training(
    stop: preemption.StopRequests, workdir: str, epochs: int, done: int | None
) -> None:
    """A safe point of the setup: raises Preempted (nothing saved) when any process was
    signalled (a collective: every process calls it at the same point)."""
    if preemption.agreed(stop.requested):
        raise preemption.Preempted(
            stop.signal_name or "a signal to another process",
            done,
            epochs,
            os.path.join(workdir, "checkpoints"),
            saved=False,
        )


def _save(manager, exp: experiment.Experiment, epoch: int, states, elapsed: float, last_good):
    """Checkpoint `epoch`: the states and the run's record (config, data, priors)."""
    checkpoints.save(
        manager,
        epoch,
        states,
        {"epoch": epoch, "train_seconds": float(elapsed), **experiment.run_record_of(exp)},
        last_good=last_good,
    )


def pretrain_classifier(
    exp: experiment.Experiment, states, data, workdir: str, progress: bool = True
):
    """Pre-trains every model's classifier on the labelled set (paper Section 4.2).

    The finished stage is checkpointed in workdir/pretrain_checkpoints and restored,
    not repeated, when the run starts again before its first main checkpoint.
    """
    options = exp.spec.options
    manager = checkpoints.make_manager(os.path.join(workdir, "pretrain_checkpoints"), 1)
    try:
        if checkpoints.latest_epoch(manager) == options.pretrain_epochs:
            states, _ = checkpoints.restore(manager, experiment.abstract_states(exp))
            _log(progress, f"classifier pre-training restored from {manager.directory}")
            return states
        optimizer = optax.adam(options.pretrain_learning_rate, eps=1e-7)
        pretrain_epoch = train.make_classifier_pretrain_epoch(
            exp.model, optimizer, options.pretrain_batch_size, exp.labelled_idx.size
        )
        epoch_fn = jax.jit(
            train.over_models(pretrain_epoch, exp.num_models, experiment.model_axis_mode(exp)),
            donate_argnums=(0, 1),
        )
        opt_state = jax.jit(jax.vmap(lambda s: optimizer.init(s.params["model"]["classifier"])))(
            states
        )
        key = jax.random.fold_in(experiment.data_key(exp.spec.data.seed), 2)
        for epoch in range(options.pretrain_epochs):
            pretrain_key = parallel.global_array(
                jax.random.fold_in(key, epoch), parallel.replicated(exp.mesh)
            )
            states, opt_state, metrics = epoch_fn(states, opt_state, data, pretrain_key)
            metrics = parallel.to_host(metrics)
            _log(
                progress,
                f"classifier pre-training epoch {epoch + 1}/{options.pretrain_epochs}: "
                f"loss {np.mean(metrics['loss']):.4f}, accuracy {np.mean(metrics['accuracy']):.4f}",
            )
        checkpoints.save(
            manager,
            options.pretrain_epochs,
            states,
            {"epoch": options.pretrain_epochs, "stage": "classifier_pretraining"},
        )
        return states
    finally:
        manager.close()


def _log(progress: bool, message: str) -> None:
    if progress and jax.process_index() == 0:
        print(message, flush=True)


BEST_DIR = "best_checkpoints"  # train.keep_best: each model's lowest validation error


@jax.jit
def _select_models(improved: jax.Array, states, best):
    """`states` for the models where `improved` [G], `best` for the others (new buffers)."""

    def pick(new, old):
        mask = improved.reshape(improved.shape + (1,) * (new.ndim - 1))
        return jax.lax.select(jnp.broadcast_to(mask, new.shape), new, old)

    return jax.tree.map(pick, states, best)


class _Validation:
    """The validation hold-out (`data.validation` > 0) evaluated at every evaluation and,
    with `train.keep_best`, the best-on-validation checkpoint: each model's state of its
    lowest validation error so far (the first of equals), kept on device beside the
    training states and saved to workdir/best_checkpoints whenever one model improves."""

    def __init__(self, exp: experiment.Experiment):
        self._exp = exp
        self._fn: Any = None
        self._split: Any = None
        self._manager: Any = None
        self._best: Any = None
        self._errors = np.full(exp.num_models, np.inf)
        self._epochs = np.zeros(exp.num_models, np.int64)
        self._saves = 0

    def use(self, placed: experiment.Placed) -> None:
        """The validation set and its compiled evaluation (None without a hold-out)."""
        self._split, self._fn = placed.validation_set, placed.validate_fn

    def open_best(self, workdir: str, start_epoch: int, progress: bool) -> None:
        """The best checkpoint of a resumed run, unless it is of a later epoch than the
        one resumed (then the tracking starts again)."""
        if self._fn is None or not self._exp.spec.options.keep_best:
            return
        self._manager = checkpoints.make_manager(os.path.join(workdir, BEST_DIR), 1)
        self._saves = checkpoints.latest_epoch(self._manager) or 0
        if not self._saves:
            return
        try:
            best, meta, _, _ = checkpoints.restore_latest(
                self._manager, experiment.abstract_states(self._exp)
            )
        except checkpoints.CheckpointError as error:
            _log(progress, f"the best checkpoint is not used ({error}); tracking starts again")
            return
        if meta["epoch"] > start_epoch:
            _log(
                progress,
                f"the best checkpoint (epoch {meta['epoch']}) is newer than the resumed epoch "
                f"{start_epoch}; tracking the best starts again",
            )
            return
        self._best = best
        self._errors = np.asarray(meta["validation_error"], np.float64)
        self._epochs = np.asarray(meta["best_epochs"], np.int64)

    def evaluate(self, states, hparams) -> dict[str, np.ndarray] | None:
        if self._fn is None:
            return None
        return parallel.to_host(self._fn(states, hparams, *self._split))

    def keep_best(self, epoch: int, states, validated, train_seconds: float) -> None:
        if self._manager is None:
            return
        errors = np.asarray(validated["classification_error"], np.float64)
        improved = errors < self._errors
        if not improved.any():
            return
        mask = parallel.global_array(improved, parallel.replicated(self._exp.mesh))
        self._best = _select_models(mask, states, states if self._best is None else self._best)
        self._errors = np.where(improved, errors, self._errors)
        self._epochs = np.where(improved, epoch, self._epochs)
        self._saves += 1
        checkpoints.save(
            self._manager,
            self._saves,  # a count of saves: the best of each model may be of other epochs
            self._best,
            {
                "epoch": epoch,
                "best_epochs": self._epochs.tolist(),
                "validation_error": self._errors.tolist(),
                "train_seconds": float(train_seconds),
                **experiment.run_record_of(self._exp),
            },
        )

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


class _ProgressBar:
    """The training bar, on process 0 only. A stepwise epoch (`experiment.epoch_loop`
    'python') counts steps, each when the device has finished it (a background thread
    waits on the dispatched steps' metrics; the training loop never does), so a long
    epoch shows its progress and ETA; a scanned epoch counts epochs (its rate is the
    epoch's time, the ETA of the next one)."""

    def __init__(self, progress: bool, exp: experiment.Experiment):
        self._show = progress and jax.process_index() == 0
        stepwise = experiment.epoch_loop(exp) == "python"
        self._per_epoch = exp.settings.steps_per_epoch if stepwise else 1
        self._unit = "step" if stepwise else "epoch"
        self._bar: Any = None
        self._steps: queue.Queue = queue.Queue()
        self._watcher: threading.Thread | None = None

    def open(self, start: int, total: int, steps: int = 0) -> None:
        """From `start` epochs and `steps` steps of the next one done, of `total` epochs."""
        if not self._show:
            return
        from tqdm import tqdm

        self._total = total
        stepwise = self._per_epoch > 1
        self._bar = tqdm(
            total=total * self._per_epoch,
            initial=start * self._per_epoch + steps,
            unit=self._unit,
            dynamic_ncols=True,
            desc=f"epoch {min(start + 1, total)}/{total}" if stepwise else None,
        )
        if stepwise:
            self._watcher = threading.Thread(target=self._watch, name="progress", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while (metrics := self._steps.get()) is not None:
            try:
                jax.block_until_ready(metrics)
                self._bar.update(1)
            except Exception:  # noqa: BLE001 - a failed step is reported by the loop
                pass
            finally:
                self._steps.task_done()
        self._steps.task_done()

    def step(self, i: int, metrics) -> None:
        """`train.make_stepwise_epoch`'s progress callback: step i was dispatched."""
        if self._watcher is not None:
            self._steps.put(metrics)

    def epoch_done(self, done: int, train_metrics, evaluated) -> None:
        if self._bar is None:
            return
        self._steps.join()  # the epoch's metrics are on the host: every step has finished
        postfix = {
            "loss": f"{float(np.mean(train_metrics['loss'])):.4g}",
            "beta": f"{float(np.mean(train_metrics['beta'])):.3g}",
        }
        if evaluated is not None:
            postfix["test_err"] = f"{float(np.mean(evaluated['classification_error'])):.4f}"
        self._bar.set_postfix(postfix, refresh=False)
        if self._per_epoch > 1 and done < self._total:
            self._bar.set_description(f"epoch {done + 1}/{self._total}", refresh=False)
        self._bar.update(done * self._per_epoch - self._bar.n)

    def close(self) -> None:
        if self._watcher is not None:
            self._steps.put(None)
            self._watcher.join()
            self._watcher = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
