"""The figures of a trained run: compute with `analysis`/`metrics`, draw with `plots`.

`write_run_figures` is called by `--mode=analyze`, at the end of `main.py`'s training
(on the trained states, still in memory) and by the `experiments/` scripts: figures never
retrain anything. Each figure's arrays are computed here (JAX), then every figure is
drawn from host arrays by `figure_workers.save_all`, in parallel processes.

One implementation per job, shared with `experiments/`:
- `ModelFunctions`: the encode / decode / classify of a restored run (encode is the
  training side's `train.make_eval_forward`); each takes a model's state as an
  argument, so one compilation per input shape serves every model of a grid;
- `grid_table`: the heat-map / seed table of a grid (mean, std, count per cell);
- `predesign_strips`: the Figure 9 rows, one per distance (ascending, then seed).

Config fields read (`config.analysis`): grid_size, grid_extent (0 = auto: every designed
centre +- 3 prior sd), label_map_size, activation_threshold, posterior ("mean" | "samples":
the codes of Figures 3-4), interpolations ((from, to) class pairs; () = 0 -> K // 2).

`write_run_figures` replaces what it wrote before: the files listed in the directory's
`run_figures.json` (its record of the last write) that this write does not produce are
removed, e.g. the PDFs after a write with `analysis.pdf=False`.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import analysis, configuration, metrics, priors, train
from exon_jax.ops import figure_workers
from exon_jax import batching

MAX_PER_MODEL_FIGURES = 8  # larger grids get the panel figures only
PAPER_CLASSES = (1, 7)  # automobile, horse (CIFAR-10 labels): default config.analysis.classes
HEATMAP_METRICS = (
    ("kl", "KL divergence (eq. 18)"),
    ("negative_ssim", "negative SSIM (eq. 19)"),
    ("classification_error", "classification error (eq. 20)"),
)
POSTERIOR_TITLES = {
    "mean": "test posterior means $\\mu_{\\hat y}(x)$",
    "samples": "test posterior samples $z \\sim q(z|x)$",
}


def _variables(state) -> dict[str, Any]:
    return {"params": state.params["model"], "batch_stats": state.batch_stats}


class ModelFunctions:
    """Jitted eval-mode functions of a run's network, each taking a model's state first.

    encode(state, uint8 images [N, H, W, C]) -> (logits [N, K], mean, logvar [N, K, d])
      (`train.make_eval_forward`, chunked; uint8 images scaled by x / 255);
    decode(state, z [N, d]) -> images [N, H, W, C] in [0, 1];
    classify(state, float images in [0, 1]) -> logits [N, K] (of decodings);
    label_map(state, extent, size) -> [size, size] `analysis.label_map`.
    """

    def __init__(self, model, chunk_size: int = 1000):
        self.encode = jax.jit(train.make_eval_forward(model, chunk_size))

        def decode(state, z):
            return model.apply(
                _variables(state), jnp.asarray(z, jnp.float32), train=False, method=model.decode
            )

        def classify(state, images):
            return model.apply(_variables(state), images, train=False, method=model.encode)[0]

        self.decode = jax.jit(decode)
        self.classify = jax.jit(classify)
        self._label_map = jax.jit(
            lambda state, extent, size: analysis.label_map(
                lambda z: decode(state, z), lambda x: classify(state, x), extent, size
            ),
            static_argnums=2,
        )

    def label_map(self, state, extent: float, size: int) -> np.ndarray:
        return np.asarray(self._label_map(state, extent, size))

    def decode_np(self, state, z) -> np.ndarray:
        return np.asarray(self.decode(state, z))


def model_state(states, index: int):
    """Model `index` of stacked states, without its optimiser state (not needed to draw)."""
    return train.unstack_tree(states, index).replace(opt_state=())


def point_title(point: dict) -> str:
    """A grid point as a figure title, e.g. 'lambda1=10, lambda2=1.1' ('model' when empty)."""
    return ", ".join(f"{k}={v:g}" for k, v in point.items()) or "model"


def prior_of(exp, index: int) -> priors.MixturePrior:
    """Model `index`'s prior as host arrays (indexed in NumPy: nothing to compile)."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[index], exp.hparams.prior)


def scatter_codes(exp, fns: ModelFunctions, state, index: int, mean_codes) -> np.ndarray:
    """Codes of the test images for the posterior scatters (`config.analysis.posterior`):
    the evaluation's posterior-mean codes, or one draw z ~ q(z|x) per image."""
    if exp.analysis.posterior == "mean":
        return np.asarray(mean_codes)
    images = exp.dataset.test.images[: np.asarray(mean_codes).shape[0]]
    logits, mean, logvar = fns.encode(state, images)
    key = jax.random.fold_in(jax.random.key(exp.analysis.seed), 1000 + index)
    return np.asarray(analysis.posterior_codes(logits, mean, logvar, "samples", key))


def figure_grid_extent(extent: float, prior: priors.MixturePrior, names: Sequence[str]) -> float:
    """Half-width of the decoded grid of the 2-D figures (manifold, label map, Figure 3).

    `extent` 0 (`analysis.grid_extent`'s default, auto): `analysis.design_extent`, every
    designed centre +- 3 prior sd. A number is used as it is, with a warning naming the
    classes whose centre lies outside [-extent, extent]^2 (they are off the manifold, the
    label map and Figure 3).
    """
    if not extent:
        return analysis.design_extent(prior)
    outside = analysis.centres_outside(prior.means, extent)
    if outside:
        means = np.asarray(prior.means)
        where = ", ".join(f"{names[k]} at ({means[k, 0]:.3g}, {means[k, 1]:.3g})" for k in outside)
        warnings.warn(
            f"config.analysis.grid_extent={extent:g} leaves the designed centres of {where} "
            f"outside the decoded grid [-{extent:g}, {extent:g}]^2; 0 (auto) covers every "
            f"centre +- 3 prior sd: {analysis.design_extent(prior):.3g}",
            stacklevel=2,
        )
    return float(extent)


def interpolation_pairs(pairs, names: Sequence[str]) -> list[tuple[int, int]]:
    """`analysis.interpolations` as (from, to) class indices; () -> [(0, K // 2)].

    Args:
      pairs: tuple of (from, to) pairs, each a label index or a class name.
      names: the K class names.

    Raises:
      ConfigError: a pair that is not two classes of this data set, naming the field.
    """
    num_classes = len(names)
    if not tuple(pairs):
        return [(0, num_classes // 2)]

    def index(entry) -> int:
        if isinstance(entry, str) and entry in names:
            return list(names).index(entry)
        if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
            if 0 <= entry < num_classes:
                return int(entry)
        raise configuration.ConfigError(
            f"config.analysis.interpolations: {entry!r} is neither a class name of this data "
            f"set ({', '.join(names)}) nor a label index in [0, {num_classes})"
        )

    resolved = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise configuration.ConfigError(
                f"config.analysis.interpolations: each entry must be a (from, to) pair of "
                f"classes, got {pair!r}"
            )
        resolved.append((index(pair[0]), index(pair[1])))
    return resolved


INTERPOLATION_STEPS = 11  # decoded points from one designed centre to the other
PRIOR_SAMPLES = 5000  # points of the prior-samples figure


def _predesign(exp) -> bool:
    """Two classes and no `analysis.interpolations`: the strip is the pre-design path."""
    return len(exp.dataset.class_names) == 2 and not tuple(exp.analysis.interpolations)


def strip_titles_of(exp, names: Sequence[str]) -> list[str]:
    """Titles of the interpolation strips of a model's figures (`model_figure_arrays`)."""
    if exp.analysis.latent_dim == 2 and _predesign(exp):
        return ["pre-design path (-10, 0) -> (10, 0)"]
    pairs = interpolation_pairs(exp.analysis.interpolations, names)
    return [f"centre of {names[a]} -> {names[b]}" for a, b in pairs]


def model_figure_arrays(
    exp,
    fns: ModelFunctions,
    states,
    codes,
    extents: Sequence[float],
    mode: str = "vmap",
    indices: Sequence[int] | None = None,
    prior: priors.MixturePrior | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of the 2-D per-model figures of the first G' models, in one compiled call
    over the model axis (`train.over_models`, `mode` vmap or map) instead of one model and
    one small program at a time.

    Per model i (as `scatter_codes`, `analysis.decode_grid`, `analysis.label_map`,
    `analysis.centre_interpolation` compute them one at a time):
      prior_z [G', S, 2], prior_y [G', S]: S = PRIOR_SAMPLES prior samples (key analysis.seed);
      shown [G', N, 2]: the scatter codes (posterior means, or z ~ q(z|x) with key
        fold_in(analysis.seed, 1000 + i));
      manifold [G', grid_size^2, H, W, C]: decoded grid on [-extent_i, extent_i]^2;
      label_map [G', label_map_size, label_map_size] int32;
      strips [G', P, INTERPOLATION_STEPS or PREDESIGN_NUM, H, W, C]: decoded interpolations.

    Args:
      states: stacked states with at least G' = len(extents) models (opt_state unused).
      codes: [G, N, d] posterior-mean codes of the evaluation (first G' used).
      extents: [G'] half-widths of each model's grid (`figure_grid_extent`).
      indices: [G'] the models' indices in the run (default 0..G'-1; the sampling keys).
      prior: stacked [G'] priors (default the run's first G').
    """
    cfg = exp.analysis
    count = len(extents)
    names = exp.dataset.class_names
    pairs = interpolation_pairs(exp.analysis.interpolations, names)
    predesign = _predesign(exp)
    num_codes = np.asarray(codes).shape[1]
    images = exp.dataset.test.images[:num_codes]
    seed = exp.analysis.seed

    def one(state, per, images):
        prior = per["prior"]
        z, y = priors.sample_prior(jax.random.key(seed), prior, PRIOR_SAMPLES)
        if cfg.posterior == "mean":
            shown = per["codes"]
        else:
            logits, mean, logvar = fns.encode(state, images)
            key = jax.random.fold_in(jax.random.key(seed), 1000 + per["index"])
            shown = analysis.posterior_codes(logits, mean, logvar, "samples", key)
        extent = per["extent"]
        manifold = analysis.decode_grid(lambda g: fns.decode(state, g), extent, cfg.grid_size)
        label_map = analysis.label_map(
            lambda g: fns.decode(state, g),
            lambda x: fns.classify(state, x),
            extent,
            cfg.label_map_size,
        )
        if predesign:
            paths = [analysis.predesign_path()]
        else:
            paths = [
                analysis.centre_interpolation(prior, a, b, INTERPOLATION_STEPS) for a, b in pairs
            ]
        strips = jnp.stack([fns.decode(state, path) for path in paths])
        return {
            "prior_z": z,
            "prior_y": y,
            "shown": shown,
            "manifold": manifold,
            "label_map": label_map,
            "strips": strips,
        }

    first = jax.tree.map(lambda leaf: leaf[:count], states.replace(opt_state=()))
    per_model = {
        "prior": prior
        if prior is not None
        else jax.tree.map(lambda leaf: leaf[:count], exp.hparams.prior),
        "codes": np.asarray(codes, np.float32)[:count],  # host arrays: nothing to compile
        "extent": np.asarray(extents, np.float32),
        "index": np.asarray(indices if indices is not None else range(count), np.int32),
    }
    compute = jax.jit(train.over_models(one, count, mode))  # images an argument, not a constant
    return {k: np.asarray(v) for k, v in compute(first, per_model, np.asarray(images)).items()}


def _one_model_arrays(exp, fns, state, index: int, codes, prior, extent: float):
    """`model_figure_arrays` of one unstacked model with its own prior (as
    `model_figure_jobs` computes them when called alone)."""
    stacked = jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], state.replace(opt_state=()))
    prior = jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], prior)
    arrays = model_figure_arrays(
        exp, fns, stacked, np.asarray(codes)[None], [extent], indices=[index], prior=prior
    )
    return {k: v[0] for k, v in arrays.items()}


def model_figure_jobs(
    exp,
    fns: ModelFunctions,
    state,
    index: int,
    codes: np.ndarray,
    prior: priors.MixturePrior,
    directory: str,
    arrays: dict[str, Any] | None = None,
) -> list[figure_workers.FigureJob]:
    """The per-model figures of model `index`, computed here and drawn later (`figure_workers.save_all`).

    2-D latents: prior samples (Figure 2), test posterior with the designed centres,
    decoded manifold, label map and the three-panel Figure 3 (on `figure_grid_extent`), and
    an interpolation strip per pair of `analysis.interpolations` (default class 0 -> K // 2;
    the pre-design path for two components).
    Other latents (any d != 2): prior samples and test posterior codes projected on the
    designed means' principal plane (`analysis.principal_plane`; pairwise panels for d <= 4),
    `latent.png`, the centre interpolations (`centre_interpolation.png`), reconstructions
    and per-class activation bars.

    Args:
      codes: [N, d] posterior-mean codes of the first N test images (evaluation output).
      directory: where the PNGs (and PDFs beside them) go.
      arrays: 2-D latents: this model's `model_figure_arrays` (computed here when None).
    """
    cfg = exp.analysis
    names = exp.dataset.class_names
    labels = np.asarray(exp.dataset.test.labels[: codes.shape[0]])
    means = np.asarray(prior.means)
    posterior_title = POSTERIOR_TITLES[exp.analysis.posterior]
    jobs = []

    def job(name, draw, *args, **kwargs):
        jobs.append(
            figure_workers.FigureJob(draw, os.path.join(directory, name), args, kwargs, cfg.pdf)
        )

    if prior.latent_dim == 2:
        extent = figure_grid_extent(cfg.grid_extent, prior, names)
        if arrays is None:
            arrays = _one_model_arrays(exp, fns, state, index, codes, prior, extent)
        z, y, shown = arrays["prior_z"], arrays["prior_y"], arrays["shown"]
        manifold, label_map = arrays["manifold"], arrays["label_map"]
        strips, strip_titles = list(arrays["strips"]), strip_titles_of(exp, names)
        job("prior_samples.png", "prior_samples", z, y, means, names)
        job(
            "posterior.png", "posterior_scatter", shown, labels, means, names, title=posterior_title
        )
        job(
            "manifold.png",
            "image_grid",
            manifold,
            cfg.grid_size,
            cfg.grid_size,
            title=f"decoded {cfg.grid_size} x {cfg.grid_size} grid on [-{extent:.3g}, {extent:.3g}]$^2$",
        )
        job("label_map.png", "label_map_figure", label_map, extent, means, names)
        job(
            "figure3.png",
            "figure3",
            shown,
            labels,
            manifold,
            label_map,
            extent,
            means,
            names,
            titles=(posterior_title, "decoded latent grid", "predicted label of the decoded grid"),
        )
        job("interpolation.png", "interpolation_strips", strips, strip_titles)
        return jobs

    pairs = interpolation_pairs(exp.analysis.interpolations, names)
    shown = scatter_codes(exp, fns, state, index, codes)
    z, y = priors.sample_prior(jax.random.key(exp.analysis.seed), prior, PRIOR_SAMPLES)
    z, y = np.asarray(z), np.asarray(y)
    strips = [
        fns.decode_np(state, analysis.centre_interpolation(prior, a, b, INTERPOLATION_STEPS))
        for a, b in pairs
    ]
    strip_titles = strip_titles_of(exp, names)
    plane = analysis.principal_plane(means, shown)
    plane_args = (means, plane.basis, plane.centre, plane.explained, names)
    job(
        "prior_samples.png",
        "latent_projection",
        z,
        y,
        *plane_args,
        title=f"samples from the designed prior (d = {prior.latent_dim})",
    )
    job(
        "latent.png",
        "latent_projection",
        shown,
        labels,
        *plane_args,
        title=f"{posterior_title} (d = {prior.latent_dim})",
    )
    job("centre_interpolation.png", "interpolation_strips", strips, strip_titles)
    images = exp.dataset.test.images[:16]
    logits, mean, _ = fns.encode(state, images)
    recon = fns.decode_np(state, metrics.posterior_mean_code(logits, mean))
    originals = np.concatenate([np.asarray(batching.scale_images(images)), recon])
    job(
        "reconstructions.png",
        "image_grid",
        originals,
        2,
        16,
        title="test images (top) and reconstructions (bottom)",
    )
    count = min(2000, exp.dataset.test.labels.shape[0])
    ratios, _ = activation_statistics(
        fns,
        state,
        exp.dataset.test.images[:count],
        exp.dataset.test.labels[:count],
        prior.num_classes,
        cfg.activation_threshold,
    )
    job(
        "activation_bars.png",
        "activation_bars",
        ratios,
        names,
        cfg.activation_threshold,
        title=f"activation ratio F per class, {count} test images",
    )
    return jobs


def activation_statistics(
    fns: ModelFunctions, state, images, labels, num_classes: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """F_kj and the activated mask F_kj > delta of every class (Section 3.2, Figures 5, 14)
    over the given inputs: [K, d] float and [K, d] bool, on the host."""
    _, mean, logvar = fns.encode(state, images)
    ratios, mask = metrics.activated_subspace_by_class(
        mean, logvar, jnp.asarray(labels), num_classes, threshold
    )
    return np.asarray(ratios), np.asarray(mask)


def heatmap_fields(points: Sequence[dict]) -> tuple[str | None, str | None]:
    """(rows, columns) of a grid's heat maps: lambda1 x lambda2 when both are swept
    (Figure 8), else the first two swept fields other than `seed` (None when absent)."""
    present = {k for p in points for k in p}
    fields = [f for f in configuration.SWEEP_FIELDS if f in present and f != "seed"]
    if "lambda1" in fields and "lambda2" in fields:
        return "lambda1", "lambda2"
    return (fields[0] if fields else None), (fields[1] if len(fields) > 1 else None)


def grid_table(
    points: Sequence[dict], values: dict[str, Any], row_field: str | None, col_field: str | None
):
    """Mean, sample std (ddof = 1) and count of each metric per (row, column) cell.

    Rows/columns are the sorted values of `row_field` / `col_field` (one 'all' row or
    column when the field is None); the models of a cell (seeds, other fields) are
    averaged. A cell with one model has std NaN; an empty cell has mean NaN.

    Args:
      points: the G grid points.
      values: {metric: [G] per-model values}.

    Returns:
      (rows, cols, {metric: [R, C] mean}, {metric: [R, C] std}, [R, C] int count).
    """

    def axis(field):
        return sorted({p[field] for p in points}) if field else ["all"]

    rows, cols = axis(row_field), axis(col_field)
    mean = {m: np.full((len(rows), len(cols)), np.nan) for m in values}
    std = {m: np.full((len(rows), len(cols)), np.nan) for m in values}
    count = np.zeros((len(rows), len(cols)), int)
    for r, a in enumerate(rows):
        for c, b in enumerate(cols):
            chosen = [
                i
                for i, p in enumerate(points)
                if (row_field is None or p.get(row_field) == a)
                and (col_field is None or p.get(col_field) == b)
            ]
            count[r, c] = len(chosen)
            for metric, per_model in values.items():
                if chosen:
                    cell = np.asarray(per_model, float)[chosen]
                    mean[metric][r, c] = cell.mean()
                    std[metric][r, c] = cell.std(ddof=1) if len(chosen) > 1 else np.nan
    return rows, cols, mean, std, count


def predesign_strips(exp, fns: ModelFunctions, states) -> tuple[list[np.ndarray], list[str]]:
    """Figure 9: the decodings of `analysis.predesign_path()` of every model of a distance
    sweep, rows in ascending distance (then seed), and their titles."""
    order = sorted(
        range(exp.num_models),
        key=lambda i: (exp.points[i].get("distance", 0.0), exp.points[i].get("seed", 0)),
    )
    path = analysis.predesign_path()
    rows = [fns.decode_np(model_state(states, i), path) for i in order]
    return rows, [point_title(exp.points[i]) for i in order]


def grid_figure_jobs(
    exp,
    states,
    evaluated: dict[str, np.ndarray],
    directory: str,
    fns: ModelFunctions,
    scatter: Sequence[np.ndarray] | None = None,
) -> list[figure_workers.FigureJob]:
    """Grid figures: the Figure 4 posterior panel (2-D latents, each panel with its own
    designed centres), Figure 8 heat maps over `heatmap_fields` and the Figure 9 strips
    (distance sweeps); computed here, drawn by `figure_workers.save_all`.

    Args:
      scatter: the scatter codes of the first models, already computed
        (`model_figure_arrays`'s `shown`); the others' are computed here.
    """
    scatter = list(scatter or [])
    jobs = []
    names = exp.dataset.class_names
    if exp.analysis.latent_dim == 2:
        labels = np.asarray(exp.dataset.test.labels[: evaluated["codes"].shape[1]])
        panels = [
            (
                scatter[i]
                if i < len(scatter)
                else scatter_codes(exp, fns, model_state(states, i), i, evaluated["codes"][i]),
                labels,
                point_title(p),
                np.asarray(prior_of(exp, i).means),
            )
            for i, p in enumerate(exp.points)
        ]
        jobs.append(
            figure_workers.FigureJob(
                "posterior_panel",
                os.path.join(directory, "posterior_panel.png"),
                (panels, panels[0][3], names),
                dict(ncols=min(5, len(panels)), title=POSTERIOR_TITLES[exp.analysis.posterior]),
                exp.analysis.pdf,
            )
        )
    row_field, col_field = heatmap_fields(exp.points)
    if row_field is not None:
        rows, cols, mean, _, _ = grid_table(
            exp.points, {m: evaluated[m] for m, _ in HEATMAP_METRICS}, row_field, col_field
        )
        for metric, title in HEATMAP_METRICS:
            jobs.append(
                figure_workers.FigureJob(
                    "heatmap",
                    os.path.join(directory, f"heatmap_{metric}.png"),
                    (mean[metric], rows, cols),
                    dict(title=title, ylabel=row_field, xlabel=col_field or ""),
                    exp.analysis.pdf,
                )
            )
    if any("distance" in p for p in exp.points):
        rows, titles = predesign_strips(exp, fns, states)
        jobs.append(
            figure_workers.FigureJob(
                "interpolation_strips",
                os.path.join(directory, "predesign_interpolation.png"),
                (rows, titles),
                dict(title=f"decoded (-10, 0) -> (10, 0), {rows[0].shape[0]} points"),
                exp.analysis.pdf,
            )
        )
    return jobs


def write_grid_figures(
    exp,
    states,
    evaluated: dict[str, np.ndarray],
    directory: str,
    fns: ModelFunctions | None = None,
    workers: int = 0,
    pool: figure_workers.FigurePool | None = None,
) -> list[str]:
    """Draws `grid_figure_jobs`; returns the PNG paths (PDFs beside them)."""
    return figure_workers.save_all(
        grid_figure_jobs(exp, states, evaluated, directory, fns or ModelFunctions(exp.model)),
        workers,
        pool,
    )


def write_run_figures(
    exp,
    states,
    evaluated: dict[str, np.ndarray],
    directory: str,
    workers: int = 0,
    pool: figure_workers.FigurePool | None = None,
) -> list[str]:
    """All figures of a run (G models): per-model figures, plus grid figures when G > 1.

    The arrays are computed first (JAX, this process), then the figures drawn in `workers`
    processes (`figure_workers.save_all`; 0 = one per CPU core, at most 8), or by `pool`, a
    `figure_workers.FigurePool` started earlier. Then what the previous write left and this one did
    not write is removed (`replace_written`). Returns the PNG paths.
    """
    fns = ModelFunctions(exp.model)
    shown = exp.points[:MAX_PER_MODEL_FIGURES]
    batched = None
    if exp.analysis.latent_dim == 2:  # every model's arrays in one call
        names = exp.dataset.class_names
        extents = [
            figure_grid_extent(exp.analysis.grid_extent, prior_of(exp, i), names)
            for i in range(len(shown))
        ]
        with warnings.catch_warnings():  # figure_grid_extent warns again per model below
            warnings.simplefilter("ignore")
            batched = model_figure_arrays(
                exp, fns, states, evaluated["codes"], extents, exp.spec.options.model_axis
            )
    jobs = []
    for i, point in enumerate(shown):
        sub = (
            directory
            if exp.num_models == 1
            else os.path.join(directory, configuration.point_name(point))
        )
        jobs += model_figure_jobs(
            exp,
            fns,
            model_state(states, i),
            i,
            np.asarray(evaluated["codes"][i]),
            prior_of(exp, i),
            sub,
            None if batched is None else {k: v[i] for k, v in batched.items()},
        )
    if exp.num_models > 1:
        panel_codes = None if batched is None else list(batched["shown"])
        jobs += grid_figure_jobs(exp, states, evaluated, directory, fns, panel_codes)
    written = figure_workers.save_all(jobs, workers, pool)
    earlier = EARLIER_FIGURES[2 if exp.analysis.latent_dim == 2 else 0] + EARLIER_GRID_FIGURES
    replace_written(directory, [f for j in jobs for f in figure_workers.job_files(j)], earlier)
    return written


RECORD_OF_FIGURES = "run_figures.json"  # what write_run_figures wrote last, for the next write
# What the code before the record wrote (a directory without RECORD_OF_FIGURES), by latent
# dimension: these names in the directory and its point subdirectories count as written before.
EARLIER_FIGURES = {
    2: ("prior_samples", "posterior", "manifold", "label_map", "figure3", "interpolation")
    + ("posterior_panel",),
    0: ("reconstructions", "activation_bars"),  # any d != 2
}
EARLIER_GRID_FIGURES = (
    "heatmap_kl",
    "heatmap_negative_ssim",
    "heatmap_classification_error",
    "predesign_interpolation",
)


def replace_written(directory: str, files: Sequence[str], earlier: Sequence[str] = ()) -> list[str]:
    """Removes what the previous write into `directory` left that this one did not write, and
    records `files` in `directory/run_figures.json` for the next write.

    The previous write is the list in run_figures.json; without it (figures written by an
    earlier version), the PNGs and PDFs named `earlier` in `directory` and in its
    immediate subdirectories. Other files (e.g. `experiments/curves.py`'s curves.png)
    are never touched.

    Args:
      files: paths of the files just written.
      earlier: file stems (no extension) the earlier version wrote.

    Returns:
      The paths removed.
    """
    record = os.path.join(directory, RECORD_OF_FIGURES)
    now = {os.path.relpath(os.path.abspath(f), os.path.abspath(directory)) for f in files}
    if os.path.exists(record):
        with open(record) as f:
            before = set(json.load(f))
    else:
        subdirectories = [""]
        if os.path.isdir(directory):
            subdirectories += [
                e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)
            ]
        before = {
            os.path.join(sub, stem + ext)
            for sub in subdirectories
            for stem in earlier
            for ext in (".png", ".pdf")
        }
    removed = []
    for name in sorted(before - now):
        path = os.path.join(directory, name)
        if name.startswith("..") or os.path.isabs(name) or not os.path.isfile(path):
            continue
        os.remove(path)
        removed.append(path)
    os.makedirs(directory, exist_ok=True)
    with open(record, "w") as f:
        json.dump(sorted(now), f, indent=1)
    return removed
