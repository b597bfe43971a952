"""Figures and tables of a hyper-parameter grid run, from its checkpoints alone (no training).

For a run trained with a `config.sweep` grid (configs/mnist_sweep.py,
configs/mnist_predesign.py, or any grid incl. seeds), writes into
`<workdir>/figures` (or `--out`):

- `heatmap_kl.png`, `heatmap_negative_ssim.png`, `heatmap_classification_error.png`:
  paper Figure 8, each metric over lambda1 (rows) x lambda2 (columns) with the
  value in each cell (mean over seeds when the grid has seeds). Grids over other
  fields get the same maps over their first two swept fields (rows, columns).
- `heatmap_values.json`: always; the three matrices with their row/column labels,
  the std over seeds and the number of models per cell.
- `posterior_panel.png`: paper Figure 4, the test posterior of every grid point on
  shared axes (2-D latents); for distance sweeps also
  `posterior_panel_own_centres.png`, each panel with its own designed centres.
- `predesign_interpolation.png`: paper Figure 9 for distance sweeps, the decodings
  of 11 points from (-10, 0) to (10, 0), one row per distance.
- `seed_table.csv`, `seed_table.md`: for grids that include `seed`, mean +- std
  (sample std, ddof = 1) of each metric over the seeds of every other grid point.

  python experiments/sweep_figures.py --workdir=workdirs/mnist_sweep
  python experiments/sweep_figures.py --workdir=workdirs/mnist_predesign
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402  (puts the repository root on the path)

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from exon_jax import analysis, configuration, experiment, figures, plots, train  # noqa: E402

HEATMAP_METRICS = (("kl", "KL divergence (eq. 18)"),
                   ("negative_ssim", "negative SSIM (eq. 19)"),
                   ("classification_error", "classification error (eq. 20)"))
# Per-model scalars of `experiment.summarise` summarised over seeds.
SEED_METRICS = ("classification_error", "kl", "negative_ssim", "max_centre_distance_sd",
                "mean_inside_95", "beta")


def swept_fields(points) -> list[str]:
    """The grid's fields other than `seed`, in `configuration.SWEEP_FIELDS` order."""
    present = {k for p in points for k in p}
    return [f for f in configuration.SWEEP_FIELDS if f in present and f != "seed"]


def metric_tables(points, values: dict[str, np.ndarray], row_field: str | None,
                  col_field: str | None):
    """Mean, std over the models of each cell (ddof = 1) and count per (row, col) cell.

    Rows/columns are the sorted values of `row_field`/`col_field` (one 'all' row or
    column when the field is None); every other field (seeds, ...) is averaged over.
    """
    def axis(field):
        return sorted({p[field] for p in points}) if field else ["all"]

    rows, cols = axis(row_field), axis(col_field)
    mean = {m: np.full((len(rows), len(cols)), np.nan) for m in values}
    std = {m: np.full((len(rows), len(cols)), np.nan) for m in values}
    count = np.zeros((len(rows), len(cols)), int)
    for r, a in enumerate(rows):
        for c, b in enumerate(cols):
            chosen = [i for i, p in enumerate(points)
                      if (row_field is None or p[row_field] == a)
                      and (col_field is None or p[col_field] == b)]
            count[r, c] = len(chosen)
            for metric, per_model in values.items():
                if chosen:
                    cell = np.asarray(per_model, float)[chosen]
                    mean[metric][r, c] = cell.mean()
                    std[metric][r, c] = cell.std(ddof=1) if len(chosen) > 1 else np.nan
    return rows, cols, mean, std, count


def heatmap_values(exp, evaluated) -> dict:
    """The three Figure 8 matrices: lambda1 x lambda2 via `figures.heatmap_table`, or the
    first two swept fields of other grids."""
    values = {m: np.asarray(evaluated[m], float) for m, _ in HEATMAP_METRICS}
    fields = swept_fields(exp.points)
    if "lambda1" in fields and "lambda2" in fields:
        row_field, col_field = "lambda1", "lambda2"
    else:
        row_field = fields[0] if fields else None
        col_field = fields[1] if len(fields) > 1 else None
    rows, cols, mean, std, count = metric_tables(exp.points, values, row_field, col_field)
    table = figures.heatmap_table(exp.points, evaluated)
    if table is not None and (row_field, col_field) == ("lambda1", "lambda2"):
        lambda1, lambda2, official = table  # the matrices figures.write_grid_figures draws
        assert list(lambda1) == rows and list(lambda2) == cols
        for metric in official:
            np.testing.assert_allclose(official[metric], mean[metric], rtol=1e-6)
            mean[metric] = official[metric]
    others = [f for f in fields if f not in (row_field, col_field)]
    return {"row_field": row_field or "all", "col_field": col_field or "all", "rows": rows,
            "cols": cols, "averaged_over": others + (["seed"] if any("seed" in p for p in exp.points)
                                                     else []),
            "metrics": mean, "std_over_models": std, "models_per_cell": count}


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
        row = {"point": dict(key), "seeds": [points[i].get("seed") for i in members],
               "num_seeds": len(members)}
        for metric in SEED_METRICS:
            values = np.array([models[i][metric] for i in members], float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        table.append(row)
    return table


def _fmt(value) -> str:
    return "" if value is None else f"{value:g}"


def write_seed_table(table: list[dict], directory: str) -> list[str]:
    fields = sorted({k for row in table for k in row["point"]},
                    key=lambda f: configuration.SWEEP_FIELDS.index(f)
                    if f in configuration.SWEEP_FIELDS else 99)
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
        f.write(f"Mean ± sample std (ddof = 1) over seeds; "
                f"{table[0]['num_seeds'] if table else 0} seed(s) per row.\n\n")
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


def predesign_figures(exp, states, evaluated, directory: str) -> list[str]:
    """Figure 9 strips (one row per distance) and a posterior panel with each point's centres."""
    order = sorted(range(exp.num_models),
                   key=lambda i: (exp.points[i]["distance"], exp.points[i].get("seed", 0)))
    rows, titles, panels = [], [], []
    path = analysis.predesign_path()
    labels = np.asarray(exp.dataset.test.labels[:evaluated["codes"].shape[1]])
    for i in order:
        _, decode, _ = figures.model_functions(exp, train.unstack_tree(states, i))
        rows.append(np.asarray(decode(path)))
        titles.append(configuration.point_name(exp.points[i]))
        panels.append((i, titles[-1]))
    written = [plots.save(common.strips(rows, titles, "decoded (-10, 0) -> (10, 0), 11 points"),
                          os.path.join(directory, "predesign_interpolation.png"))]
    if exp.config.model.latent_dim == 2:
        columns = min(4, len(panels))
        nrows = -(-len(panels) // columns)
        fig = Figure(figsize=(3.2 * columns, 3.2 * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, columns, squeeze=False, sharex=True, sharey=True).reshape(-1)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        centres = [np.asarray(figures.prior_of(exp, i).means) for i, _ in panels]
        half = 1.1 * max(np.max(np.abs(evaluated["codes"][[i for i, _ in panels]])),
                         max(np.max(np.abs(c)) for c in centres), 1.0)
        for ax, (i, title), means in zip(axes, panels, centres):
            plots.posterior_scatter(evaluated["codes"][i], labels, means,
                                    exp.dataset.class_names, ax=ax, title=title)
        axes[0].set_xlim(-half, half)   # one square window shared by every panel
        axes[0].set_ylim(-half, half)
        written.append(plots.save(fig, os.path.join(directory, "posterior_panel_own_centres.png")))
    return written


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

    written = figures.write_grid_figures(exp, evaluated, directory)
    heat = heatmap_values(exp, evaluated)
    if (heat["row_field"], heat["col_field"]) != ("lambda1", "lambda2") and heat["row_field"] != "all":
        for metric, title in HEATMAP_METRICS:  # Figure 8 layout for grids over other fields
            fig = plots.heatmap(heat["metrics"][metric], heat["rows"], heat["cols"], title=title,
                                ylabel=heat["row_field"], xlabel=heat["col_field"])
            written.append(plots.save(fig, os.path.join(directory, f"heatmap_{metric}.png")))
    if any("distance" in p for p in exp.points):
        written += predesign_figures(exp, states, evaluated, directory)
    paths = list(written)
    paths.append(common.write_json(os.path.join(directory, "heatmap_values.json"),
                                   {**heat, "epoch": int(meta["epoch"]), "points": exp.points}))
    table = seed_table(exp.points, models)
    if table is not None:
        paths += write_seed_table(table, directory)

    for path in paths:
        print(path)
    print(f"{exp.num_models} model(s), checkpoint of epoch {meta['epoch']}; "
          f"rows {heat['row_field']}, columns {heat['col_field']}"
          + (f", mean over {', '.join(heat['averaged_over'])}" if heat["averaged_over"] else ""))
    for metric, title in HEATMAP_METRICS:
        print(f"\n{title}:")
        print(common.text_table(heat["rows"], heat["cols"], heat["metrics"][metric],
                                corner=f"{heat['row_field']}\\{heat['col_field']}"))
    if table is not None:
        print("\nover seeds (mean +- std):")
        for row in table:
            name = configuration.point_name(row["point"]) if row["point"] else "all"
            print(f"  {name} (seeds {row['seeds']}): " + ", ".join(
                f"{m} {row[f'{m}_mean']:.4g} +- {row[f'{m}_std']:.2g}"
                for m in ("classification_error", "kl", "negative_ssim")))
    return {"figures": written, "heatmap": heat, "seed_table": table, "models": models,
            "paths": paths}


if __name__ == "__main__":
    common.cli(__doc__.splitlines()[0], main)
