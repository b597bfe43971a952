"""Figures and tables of a hyper-parameter grid run, from its checkpoints alone (no training).

For a run trained with a `config.sweep` grid (configs/mnist_sweep.py,
configs/mnist_predesign.py, or any grid incl. seeds), writes into
`<workdir>/figures` (or `--out`):

- `heatmap_kl.png`, `heatmap_negative_ssim.png`, `heatmap_classification_error.png`:
  paper Figure 8, each metric over lambda1 (rows) x lambda2 (columns) with the
  value in each cell (mean over seeds when the grid has seeds). Grids over other
  fields get the same maps over their first two swept fields (rows, columns).
- `heatmap_values.json`: always; the three matrices with their row/column labels,
  the std over seeds and the number of models per cell (`figures.grid_table`).

Every figure is written as PNG and PDF.
- `posterior_panel.png`: paper Figure 4, the test posterior of every grid point on
  one shared square window, each panel marking its own designed centres (2-D latents;
  `config.analysis.posterior` picks posterior means or samples z ~ q(z|x)).
- `predesign_interpolation.png`: paper Figure 9 for distance sweeps, the decodings
  of 11 points from (-10, 0) to (10, 0), one row per distance.
- `seed_table.csv`, `seed_table.md`: for grids that include `seed`, mean +- std
  (sample std, ddof = 1) of each metric over the seeds of every other grid point.

  python -m experiments.sweep_figures --workdir=workdirs/mnist_sweep
  python -m experiments.sweep_figures --workdir=workdirs/mnist_predesign
"""

from __future__ import annotations

import os

from experiments import common

import numpy as np

from exon_jax import configuration, evaluation, experiment, figures

HEATMAP_METRICS = figures.HEATMAP_METRICS
# Per-model scalars of `experiment.summarise` summarised over seeds.
SEED_METRICS = evaluation.RESULT_SCALARS


def heatmap_values(exp, evaluated) -> dict:
    """The three Figure 8 matrices over `figures.heatmap_fields` (lambda1 x lambda2, or the
    first two swept fields), as `figures.write_grid_figures` draws them, with std and counts."""
    row_field, col_field = figures.heatmap_fields(exp.points)
    rows, cols, mean, std, count = figures.grid_table(
        exp.points, {m: evaluated[m] for m, _ in HEATMAP_METRICS}, row_field, col_field
    )
    present = {k for p in exp.points for k in p}
    others = [
        f for f in configuration.SWEEP_FIELDS if f in present and f not in (row_field, col_field)
    ]
    return {
        "row_field": row_field or "all",
        "col_field": col_field or "all",
        "rows": rows,
        "cols": cols,
        "averaged_over": others,
        "metrics": mean,
        "std_over_models": std,
        "models_per_cell": count,
    }


def seed_table(points, models) -> list[dict] | None:
    """Mean and sample std (ddof = 1) over seeds of each metric, per point without its seed."""
    if not any("seed" in p for p in points):
        return None
    groups: dict[tuple, list[int]] = {}
    for i, point in enumerate(points):
        key = tuple((k, v) for k, v in point.items() if k != "seed")
        groups.setdefault(key, []).append(i)
    table = []
    for key, members in groups.items():
        row = {
            "point": dict(key),
            "seeds": [points[i].get("seed") for i in members],
            "num_seeds": len(members),
        }
        for metric in SEED_METRICS:
            values = np.array([models[i][metric] for i in members], float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        table.append(row)
    return table


def _fmt(value) -> str:
    return "" if value is None else f"{value:g}"


def write_seed_table(table: list[dict], directory: str) -> list[str]:
    fields = sorted(
        {k for row in table for k in row["point"]},
        key=lambda f: configuration.SWEEP_FIELDS.index(f)
        if f in configuration.SWEEP_FIELDS
        else 99,
    )
    csv_path = os.path.join(directory, "seed_table.csv")
    with open(csv_path, "w") as f:
        header = [*fields, "num_seeds", "seeds"]
        for metric in SEED_METRICS:
            header += [f"{metric}_mean", f"{metric}_std"]
        f.write(",".join(header) + "\n")
        for row in table:
            cells = [_fmt(row["point"].get(k)) for k in fields]
            cells += [str(row["num_seeds"]), ";".join(str(s) for s in row["seeds"])]
            for metric in SEED_METRICS:
                cells += [f"{row[f'{metric}_mean']:.6g}", f"{row[f'{metric}_std']:.6g}"]
            f.write(",".join(cells) + "\n")
    md_path = os.path.join(directory, "seed_table.md")
    with open(md_path, "w") as f:
        f.write(
            f"Mean ± sample std (ddof = 1) over seeds; "
            f"{table[0]['num_seeds'] if table else 0} seed(s) per row.\n\n"
        )
        f.write("| " + " | ".join([*fields, "seeds", *SEED_METRICS]) + " |\n")
        f.write("|" + "---|" * (len(fields) + 1 + len(SEED_METRICS)) + "\n")
        for row in table:
            cells = [_fmt(row["point"].get(k)) for k in fields]
            cells.append(",".join(str(s) for s in row["seeds"]))
            for metric in SEED_METRICS:
                mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
                cells.append(f"{mean:.4g} ± {std:.2g}" if np.isfinite(std) else f"{mean:.4g}")
            f.write("| " + " | ".join(cells) + " |\n")
    return [csv_path, md_path]


def main(workdir: str, out: str | None = None, dataset=None) -> dict:
    """Restores a grid run and writes its grid figures and tables into `out`.

    Args:
      workdir: a training run's directory (a grid of G >= 1 models).
      out: output directory (default `<workdir>/figures`).
      dataset: arrays to use instead of loading the run's data set (tests).

    Returns:
      {"figures", "heatmap" (the heatmap_values.json content), "seed_table" (list of rows
      or None), "models" (per-model metrics), "paths" (all files written)}.
    """
    directory = common.output_dir(workdir, out)
    exp, states, meta = common.restore(workdir, dataset)
    evaluated = experiment.evaluate_states(exp, states)
    models = experiment.summarise(exp, states, evaluated, meta.get("train_seconds", 0.0))["models"]

    written = figures.write_grid_figures(exp, states, evaluated, directory)
    heat = heatmap_values(exp, evaluated)
    paths = list(written)
    paths.append(
        common.write_json(
            os.path.join(directory, "heatmap_values.json"),
            {**heat, "epoch": int(meta["epoch"]), "points": exp.points},
        )
    )
    table = seed_table(exp.points, models)
    if table is not None:
        paths += write_seed_table(table, directory)

    for path in paths:
        print(path)
    print(
        f"{exp.num_models} model(s), checkpoint of epoch {meta['epoch']}; "
        f"rows {heat['row_field']}, columns {heat['col_field']}"
        + (f", mean over {', '.join(heat['averaged_over'])}" if heat["averaged_over"] else "")
    )
    for metric, title in HEATMAP_METRICS:
        print(f"\n{title}:")
        print(
            common.text_table(
                heat["rows"],
                heat["cols"],
                heat["metrics"][metric],
                corner=f"{heat['row_field']}\\{heat['col_field']}",
            )
        )
    if table is not None:
        print("\nover seeds (mean +- std):")
        for row in table:
            name = configuration.point_name(row["point"]) if row["point"] else "all"
            print(
                f"  {name} (seeds {row['seeds']}): "
                + ", ".join(
                    f"{m} {row[f'{m}_mean']:.4g} +- {row[f'{m}_std']:.2g}"
                    for m in ("classification_error", "kl", "negative_ssim")
                )
            )
    return {
        "figures": written,
        "heatmap": heat,
        "seed_table": table,
        "models": models,
        "paths": paths,
    }


if __name__ == "__main__":
    common.cli(__doc__.splitlines()[0], main)
