"""A run's phases from one call, the same from Python and from `main.py`.

  import exon_jax
  trained = exon_jax.run(config, "workdirs/mnist")        # train (resumes), results, figures
  exon_jax.evaluate("workdirs/mnist")                     # restore, rewrite results.json
  exon_jax.analyze("workdirs/mnist")                      # restore, rewrite figures/
  exon_jax.embed("workdirs/mnist")                        # the test set's codes, codes.npz

`train` owns every phase of a training run: setup, training (`training.run`), results,
figures (unless `config.analysis.figures` is off) and <workdir>/timings.json.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import ml_collections

from exon_jax.ops import timing
from exon_jax import data as data_lib


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    dataset: data_lib.ImageDataset | None = None,
    progress: bool = True,
):
    """Trains the config's models (resuming from `workdir`), writes results.json, draws the
    run's figures and writes timings.json (process 0).

    Args:
      config: the experiment config (`configs/*.py`).
      workdir: the run's directory (see `training.train_and_evaluate` for its files).
      dataset: arrays to use instead of loading `config.data`.
      progress: a progress bar and log lines on stdout.

    Returns:
      The `training.TrainedRun` (experiment, trained states, evaluation, results).

    Raises:
      preemption.Preempted: a stop signal; the epoch was saved and the call resumes.
    """
    import jax

    from exon_jax import saved_run, training

    stopwatch = timing.Stopwatch()
    stopwatch.seconds["startup"] = timing.process_age_seconds() or 0.0
    draw = bool(config.analysis.figures)
    with stopwatch.phase("setup"):  # starts the backend; the figure workers start now
        pool = _figure_pool(config) if draw else None  # and warm up while the model trains
    with pool or contextlib.nullcontext():
        trained = training.run(config, workdir, dataset, progress, stopwatch=stopwatch)
        if progress:
            print_results(trained.results, workdir)
        if draw:
            with stopwatch.phase("figures"):
                saved_run.write_figures(
                    trained.exp, trained.states, trained.evaluated, workdir, pool
                )
                if pool is not None:
                    pool.close()  # joining the workers belongs to drawing
            if progress:
                print(f"figures in {os.path.join(workdir, 'figures')}")
    if jax.process_index() == 0:
        stopwatch.write(workdir, timing.process_age_seconds())
    return trained


def evaluate(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    dataset: data_lib.ImageDataset | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Restores the run's newest good checkpoint and evaluates it (`saved_run.evaluate`)."""
    from exon_jax import saved_run

    results = saved_run.evaluate(workdir, overrides, dataset)
    if progress:
        print_results(results, workdir, saved_run.results_tag(overrides))
    return results


def analyze(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    dataset: data_lib.ImageDataset | None = None,
    progress: bool = True,
) -> list[str]:
    """Restores the run's newest good checkpoint and redraws its figures (`saved_run.analyze`)."""
    from exon_jax import saved_run

    paths = saved_run.analyze(workdir, overrides, dataset)
    if progress:
        print(f"figures written to {os.path.join(workdir, 'figures')}")
    return paths


def embed(
    workdir: str,
    overrides: dict[str, Any] | None = None,
    dataset: data_lib.ImageDataset | None = None,
    progress: bool = True,
) -> list[str]:
    """Writes the codes of the run's test set (`api.Run.embed`) to <workdir>/codes.npz, one
    file a model for a grid (codes_<point name>.npz): codes [N, d], probs [N, K],
    predicted [N], labels [N], class_names [K]. Returns the paths (process 0 writes).

    The test set is the run's own (its stored config, `overrides` such as data.max_test
    applied, checked against the recorded data hash); `dataset` as in `evaluate`.
    """
    import jax

    from exon_jax import api, configuration, saved_run

    exp, _, _ = saved_run.restore_run(workdir, overrides, dataset)
    if jax.process_index() != 0:
        return []
    test = exp.dataset.test
    points = exp.spec.points
    paths = []
    for point in points:
        name = configuration.point_name(point) if len(points) > 1 else None
        path = os.path.join(workdir, f"codes_{name}.npz" if name else "codes.npz")
        api.load_run(workdir, point=name).embed(test.images, path=path, labels=test.labels)
        paths.append(path)
        if progress:
            print(f"codes of {len(test.labels)} test images in {path}")
    return paths


def print_results(results: dict[str, Any], workdir: str, tag: str = "") -> None:
    """One line a model, and where the results file is."""
    for model in results["models"]:
        line = (
            f"{model['name']}: test error {model['classification_error']:.4f}, "
            f"KL {model['kl']:.3f}, negative SSIM {model['negative_ssim']:.4f}, "
            f"max centre distance {model['max_centre_distance_sd']:.2f} sd, "
            f"beta {model['beta']:.4g}"
        )
        if "validation_error" in model:
            line += f", validation error {model['validation_error']:.4f}"
        print(line)
    name = f"results_{tag}.json" if tag else "results.json"
    size = f" (test set of {results['test_size']})" if "test_size" in results else ""
    print(f"results{size} in {os.path.join(workdir, name)}")


def _figure_pool(config: ml_collections.ConfigDict):
    """The processes drawing the run's figures (process 0 draws them), or None."""
    import jax

    if jax.process_index() != 0:
        return None
    from exon_jax.ops import figure_workers

    return figure_workers.FigurePool(config.analysis.get("figure_workers", 0))
