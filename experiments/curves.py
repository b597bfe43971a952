"""Training curves of a run (every grid point) from its metrics.jsonl, in one line.

  python -m experiments.curves --workdir=workdirs/mnist
  python -m experiments.curves --workdir=workdirs/mnist_sweep --metrics=train/loss,eval/kl

Writes `<workdir>/figures/curves.png` (or `--out`): one panel per metric (default the
training loss, beta and the test classification error), one line per model.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Sequence

from experiments import common
from exon_jax import configuration, plots

DEFAULT_METRICS = ("train/loss", "train/beta", "eval/classification_error")


def read_curves(workdir: str, metrics: Sequence[str] = DEFAULT_METRICS) -> dict:
    """{metric: {model name: (epochs, values)}} from `<workdir>/metrics.jsonl`."""
    names = {}
    record = os.path.join(workdir, "record.json")
    if os.path.exists(record):
        with open(record) as f:
            names = {i: configuration.point_name(p) for i, p in enumerate(json.load(f)["points"])}
    curves = {m: defaultdict(lambda: ([], [])) for m in metrics}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            for metric in metrics:
                if metric in row:
                    epochs, values = curves[metric][names.get(row["model"], str(row["model"]))]
                    epochs.append(row["epoch"])
                    values.append(float("nan") if row[metric] is None else row[metric])
    return {m: dict(lines) for m, lines in curves.items() if lines}


def main(
    workdir: str, out: str | None = None, metrics: Sequence[str] | str = DEFAULT_METRICS
) -> str:
    """Draws the curves of `workdir`; returns the PNG's path."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m]
    curves = read_curves(workdir, metrics)
    if not curves:
        raise ValueError(f"none of {list(metrics)} in {workdir}/metrics.jsonl")
    path = os.path.join(out or os.path.join(workdir, "figures"), "curves.png")
    return plots.save(
        plots.training_curves(curves, title=os.path.basename(workdir.rstrip("/"))), path
    )


if __name__ == "__main__":
    common.cli(
        __doc__.splitlines()[0],
        lambda **args: print(main(**args)),
        lambda parser: parser.add_argument(
            "--metrics",
            default=",".join(DEFAULT_METRICS),
            help="comma-separated metrics.jsonl columns",
        ),
    )
