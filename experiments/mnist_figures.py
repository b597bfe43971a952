"""Rebuilds every figure of a trained MNIST run from its checkpoint alone (no training).

Restores the latest checkpoint of `--workdir`, evaluates it on the test set and
writes the run's figures (`figures.write_run_figures`: prior samples, Figure 2;
test posterior with the designed centres; decoded manifold; label map; the
three-panel Figure 3; an interpolation strip; for grids also the posterior panel,
heat maps and pre-design strips) into `<workdir>/figures` (or `--out`), plus
`figure_metrics.json` with the metrics printed at the end: test classification
error (eq. 20), KL (eq. 18), negative SSIM (eq. 19) and the distance of each class's
mean code from its designed centre, in prior standard deviations.

  python -m experiments.mnist_figures --workdir=workdirs/mnist
  python -m experiments.mnist_figures --workdir=workdirs/mnist --out=/tmp/mnist_figures
"""

from __future__ import annotations

import os

from experiments import common
from exon_jax import experiment, figures


def main(workdir: str, out: str | None = None, dataset=None) -> dict:
    """Restores `workdir`, writes all run figures and `figure_metrics.json` into `out`.

    Args:
      workdir: a training run's directory.
      out: output directory (default `<workdir>/figures`).
      dataset: arrays to use instead of loading the run's data set (tests).

    Returns:
      {"figures": [paths], "metrics_path": path, "epoch": int, "models": [per-model metrics]}.
    """
    directory = common.output_dir(workdir, out)
    exp, states, meta = common.restore(workdir, dataset)
    evaluated = experiment.evaluate_states(exp, states)
    written = figures.write_run_figures(exp, states, evaluated, directory)
    summary = experiment.summarise(exp, states, evaluated, meta.get("train_seconds", 0.0))
    names = exp.dataset.class_names
    for model in summary["models"]:
        model["centre_distance_sd"] = dict(zip(names, model["centre_distance_sd"]))
    report = {
        "workdir": os.path.abspath(workdir),
        "epoch": int(meta["epoch"]),
        "dataset": exp.dataset.name,
        "models": summary["models"],
    }
    metrics_path = common.write_json(os.path.join(directory, "figure_metrics.json"), report)

    for path in written + [metrics_path]:
        print(path)
    print(f"checkpoint of epoch {report['epoch']}, {len(exp.points)} model(s):")
    for model in summary["models"]:
        distances = ", ".join(f"{k} {v:.2f}" for k, v in model["centre_distance_sd"].items())
        print(
            f"  {model['name']}: test error {model['classification_error']:.4f}, "
            f"KL {model['kl']:.4f}, negative SSIM {model['negative_ssim']:.4f}, "
            f"max centre distance {model['max_centre_distance_sd']:.2f} sd, "
            f"beta {model['beta']:.4g}"
        )
        print(f"    centre distance (sd) per class: {distances}")
    return {
        "figures": written,
        "metrics_path": metrics_path,
        "epoch": report["epoch"],
        "models": summary["models"],
    }


if __name__ == "__main__":
    common.cli(__doc__.splitlines()[0], main)
