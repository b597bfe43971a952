"""A trained run read back from its workdir: restore, evaluate, draw its figures.

Everything is rebuilt from the run's own record (config.json, record.json, the checkpoint's
meta): its config, grid points and exact priors, checked against the data found now.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import TYPE_CHECKING, Any

import jax

from exon_jax import configuration, evaluation, experiment, parallel
from exon_jax.ops import checkpoints, run_record
from exon_jax import data as data_lib

if TYPE_CHECKING:  # drawing (Matplotlib) is imported only when figures are drawn
    from exon_jax.ops import figure_workers


_PER_HOST_FIELDS = ("data.dir", "data.path", "prior.file")  # paths; their contents compared


def process_identity(exp: experiment.Experiment) -> dict[str, dict[str, Any]]:
    """What every process of a run must share: config (paths aside), data, priors, code
    (`parallel.check_processes_agree` groups)."""
    record = experiment.run_record_of(exp)
    config = {
        f"config.{k}": v
        for k, v in run_record.flatten(record["config"]).items()
        if k not in _PER_HOST_FIELDS
    }
    code = run_record.code_identity()
    return {
        "config": config,
        "data": {"the data set (sha256 of its arrays)": exp.fingerprint["sha256"]},
        "priors": {"the priors": record["priors"], "the grid points": record["points"]},
        "code": {
            "the exon_jax source (sha256)": code["source_sha256"],
            "the jax version": jax.__version__,
        },
    }


@dataclasses.dataclass(frozen=True)
class Restored:
    """A trained run read back from its workdir without its data (`restore`).

    Attributes:
      spec: the run resolved from its stored config (plus run-option overrides) and its
        record; its hparams hold the exact priors the restored checkpoint recorded.
      record: record.json (or its rebuild from a checkpoint): config, data identity,
        split sizes, points, priors.
      states: the G states [G, ...] of the restored checkpoint, sharded over `mesh`.
      meta: that checkpoint's meta (epoch, train_seconds, the record's fields, ...).
      epoch: the checkpoint's step (for best_checkpoints: the count of saves).
      skipped: (epoch, reason) of newer checkpoints that did not restore.
      directory: the checkpoint directory restored from.
      mesh: the mesh the states lie on.
      notes: one line per run file that was missing or damaged and what replaced it.
    """

    spec: configuration.RunSpec
    record: dict[str, Any]
    states: Any
    meta: dict[str, Any]
    epoch: int
    skipped: list[tuple[int, str]]
    directory: str
    mesh: Any
    notes: list[str]


def recorded_dataset(config, record: dict[str, Any]) -> configuration.DatasetInfo:
    """What a run's record says of its data: class names (after `data.classes`), image
    shape and split sizes. A run recorded before its split sizes were kept gets its batch
    sizes in their place: its spec restores and evaluates, but is not one to train."""
    dataset = record["dataset"]
    class_names = tuple(dataset["class_names"])
    if tuple(config.data.classes):
        class_names = tuple(class_names[c] for c in config.data.classes)
    split = record.get("split") or {
        "num_labelled": config.train.batch_labelled or 1,
        "num_unlabelled": config.train.batch_unlabelled or 1,
    }
    return configuration.DatasetInfo(
        name=dataset.get("name", config.data.name),
        class_names=class_names,
        image_shape=tuple(dataset["train_images"]["shape"][1:]),
        num_labelled=int(split["num_labelled"]),
        num_unlabelled=int(split["num_unlabelled"]),
    )


CHECKPOINT_DIRS = {"latest": "checkpoints", "best": "best_checkpoints"}


def restore(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    which: str = "latest",
    read_only: bool = False,
    on_note=None,
) -> Restored:
    """The one way a trained run is read back: from its own record, without its data.

    The config, grid points and priors are the ones the run recorded (config.json and
    record.json, or, where one is missing or damaged, the newest checkpoint whose meta
    verifies; nothing is rewritten); `overrides` may set run options only
    (`configuration.RUN_OPTION_FIELDS`, e.g. {"analysis.grid_size": 9}). Shapes come from
    the record (image shape, classes, split sizes); the checkpoint's own priors win.

    Args:
      workdir: a training run's directory (holds config.json, record.json, checkpoints/).
      overrides: run-option fields to change on top of the stored config.
      which: "latest" (checkpoints/) or "best" (best_checkpoints/, train.keep_best).
      read_only: move, write and delete nothing (damaged checkpoints stay in place).
      on_note: called with each note on a missing or damaged run file before restoring.

    Raises:
      ConfigError, CheckpointError: no run, a bad override, no checkpoint that restores.
    """
    identity = run_record.run_identity(workdir)
    stored = identity.config if identity.config is not None else run_record.stored_config(workdir)
    record = identity.record if identity.record is not None else run_record.read_record(workdir)
    for note in identity.notes if on_note is not None else ():
        on_note(note)
    config = run_record.apply_overrides(stored, overrides or {})
    configuration.validate_config(config)
    spec = configuration.resolve(config, recorded_dataset(config, record), record["priors"])
    mesh = parallel.make_mesh(spec.num_models)
    directory = os.path.join(workdir, CHECKPOINT_DIRS[which])
    abstract = experiment.abstract_states_of(spec, mesh)
    if read_only:
        states, meta, epoch, skipped = checkpoints.restore_latest(
            directory, abstract, set_aside=False, read_only=True
        )
    else:
        manager = checkpoints.make_manager(directory)
        try:
            states, meta, epoch, skipped = checkpoints.restore_latest(manager, abstract)
        finally:
            manager.close()
    if "priors" in meta:  # the checkpoint's own record of them wins
        spec = dataclasses.replace(
            spec, hparams=configuration.with_stored_priors(spec.hparams, meta["priors"])
        )
    return Restored(
        spec, record, states, meta, epoch, list(skipped), directory, mesh, list(identity.notes)
    )


def restore_run(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    dataset: data_lib.ImageDataset | None = None,
):
    """`restore`, then the run's data (its test set and validation hold-out), checked
    against the record: what evaluate and analyze need.

    Args:
      workdir, overrides: see `restore`.
      dataset: the arrays the run was trained on, when they are not where its config says
        (e.g. a data set passed from Python); checked against the recorded content hash.

    Returns:
      (experiment, states with a leading model axis [G], meta dict).
    """
    print_note = lambda note: print(f"note: {note}", file=sys.stderr)  # noqa: E731
    restored = restore(workdir, overrides, on_note=print_note if jax.process_index() == 0 else None)
    spec = restored.spec
    if dataset is None:
        try:
            dataset = experiment.load_data(spec.data)
        except data_lib.DataError as error:
            raise run_record.DataMismatch(
                f"the run was trained on data set {restored.record['dataset'].get('name')!r}, "
                f"which cannot be loaded now ({error}); pass the same arrays as dataset="
            ) from None
    split = experiment.split_data(spec.data, dataset)
    exp = experiment.Experiment(spec, split, restored.mesh)
    parallel.check_processes_agree(process_identity(exp))  # e.g. overrides given to one
    run_record.check_same_data(restored.record, split.fingerprint)
    return exp, restored.states, restored.meta


# run options that cannot change an evaluation's numbers (others, e.g. data.max_test or
# analysis.grid_size, make it a different evaluation)
_NEUTRAL_OVERRIDES = (
    "data.dir",
    "data.path",
    "train.",
    "analysis.figures",
    "analysis.pdf",
    "analysis.figure_workers",
    "analysis.tensorboard_images",
)


def results_tag(overrides: dict[str, Any] | None) -> str:
    """ "" when `overrides` leave the evaluation the run's own (results.json), else a file
    name tag such as "data.max_test=100" (results_data.max_test=100.json)."""
    changing = {
        k: v for k, v in sorted((overrides or {}).items()) if not k.startswith(_NEUTRAL_OVERRIDES)
    }
    tag = "_".join(f"{k}={v}" for k, v in changing.items())
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "-", tag)[:120]


def describe_results(results: dict[str, Any], exp: experiment.Experiment, overrides) -> None:
    """Adds what the numbers are of: test-set size, the overrides, the code that ran."""
    results["test_size"] = int(exp.dataset.test.labels.shape[0])
    results["overrides"] = dict(sorted((overrides or {}).items()))
    results["code"] = run_record.code_identity()


def evaluate(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    dataset: data_lib.ImageDataset | None = None,
) -> dict[str, Any]:
    """Restores the newest good checkpoint and evaluates it (no training).

    Writes results.json, or, when `overrides` change what is evaluated (e.g.
    data.max_test), results_<tag>.json (`results_tag`): the run's own numbers are never
    replaced by another evaluation's. Each records its test-set size and overrides.
    """
    exp, states, meta = restore_run(workdir, overrides, dataset)
    evaluated = experiment.evaluate_states(exp, states)
    _check_sound(exp, states, evaluated, meta, workdir)
    results = experiment.summarise(exp, states, evaluated, meta["train_seconds"])
    describe_results(results, exp, overrides)
    evaluation.write_results(workdir, results, results_tag(overrides))
    return results


def analyze(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    dataset: data_lib.ImageDataset | None = None,
) -> list[str]:
    """Restores the newest good checkpoint and rewrites all figures in workdir/figures."""
    exp, states, meta = restore_run(workdir, overrides, dataset)
    evaluated = experiment.evaluate_states(exp, states)
    _check_sound(exp, states, evaluated, meta, workdir)
    return write_figures(exp, states, evaluated, workdir)


def _check_sound(exp: experiment.Experiment, states, evaluated, meta, workdir: str) -> None:
    """Refuses a restored state whose parameters are out of range or whose evaluation is
    not finite (a run that diverged before its checks existed): no results, no figures.

    Raises:
      CheckpointError: naming the checkpoint, the models and why.
    """
    finite, largest = parallel.to_host(evaluation.parameter_health(states.params))
    reasons = evaluation.unsound_models(finite, largest, evaluated)
    if reasons:
        names = exp.spec.point_names
        raise checkpoints.CheckpointError(
            f"checkpoint {meta.get('epoch')} in {os.path.join(workdir, 'checkpoints')} is "
            "not a sound state: "
            + "; ".join(f"{r} for model(s) {[names[i] for i in m]}" for r, m in reasons.items())
            + " (the run diverged before it was saved; nothing was written)"
        )


def write_figures(
    exp: experiment.Experiment,
    states,
    evaluated: dict[str, Any],
    workdir: str,
    pool: figure_workers.FigurePool | None = None,
) -> list[str]:
    """The run's figures into workdir/figures, drawn by process 0; returns the PNG paths.

    Args:
      states: the G states (on device, possibly sharded over processes).
      evaluated: the evaluation of `states` on the host (`experiment.evaluate_states`).
      pool: drawing processes started earlier (`figure_workers.FigurePool`); None starts
        `config.analysis.figure_workers` of them now.
    """
    from exon_jax import figures

    states = parallel.to_host(states)  # every process takes part in the gather
    if jax.process_index() != 0:
        return []
    return figures.write_run_figures(
        exp,
        states,
        evaluated,
        os.path.join(workdir, "figures"),
        exp.analysis.figure_workers,
        pool,
    )
