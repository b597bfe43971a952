"""The figures of a trained run: compute with `analysis`/`metrics`, draw with `plots`.

`write_run_figures` is called at the end of training and by `--mode=analyze`
and the `experiments/` scripts, always from restored states: figures never
retrain anything.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from exon_jax import analysis, configuration, metrics, plots, priors, train

MAX_PER_MODEL_FIGURES = 8   # larger grids get the panel figures only


def model_functions(exp, state) -> tuple[Any, Any, Any]:
    """Jitted (encode, decode, classify) of one restored model, eval mode.

    encode: images float [N, H, W, C] -> (logits [N, K], mean, logvar [N, K, d]);
    decode: z [N, d] -> images [N, H, W, C]; classify: images -> logits [N, K].
    """
    variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
    encode = jax.jit(lambda x: exp.model.apply(variables, x, train=False, method=exp.model.encode))
    decode = jax.jit(lambda z: exp.model.apply(variables, z, train=False, method=exp.model.decode))
    return encode, decode, lambda x: encode(x)[0]


def prior_of(exp, index: int) -> priors.MixturePrior:
    return train.unstack_tree(exp.hparams.prior, index)


def write_model_figures(exp, state, codes: np.ndarray, prior: priors.MixturePrior,
                        directory: str) -> list[str]:
    """Per-model figures into `directory`; returns the written paths.

    2-D latents: prior samples (Figure 2), test posterior with the designed centres,
    decoded manifold, label map, the three-panel Figure 3, and an interpolation strip
    between two designed centres (or the pre-design path for two components).
    Higher-dimensional latents: reconstructions and per-class activation bars.
    """
    cfg = exp.config.analysis
    names = exp.dataset.class_names
    labels = np.asarray(exp.dataset.test.labels[:codes.shape[0]])
    means = np.asarray(prior.means)
    encode, decode, classify = model_functions(exp, state)
    written = []

    def save(fig, name):
        written.append(plots.save(fig, os.path.join(directory, name)))

    if prior.latent_dim == 2:
        z, y = priors.sample_prior(jax.random.key(exp.config.seed), prior, 5000)
        save(plots.prior_samples(np.asarray(z), np.asarray(y), means, names), "prior_samples.png")
        save(plots.posterior_scatter(codes, labels, means, names,
                                     title="Test posterior (mean of the most probable component)"),
             "posterior.png")
        manifold = np.asarray(analysis.decode_grid(decode, cfg.grid_extent, cfg.grid_size))
        save(plots.image_grid(manifold, cfg.grid_size, cfg.grid_size,
                              title=f"Decoded {cfg.grid_size}x{cfg.grid_size} grid on "
                                    f"[-{cfg.grid_extent:g}, {cfg.grid_extent:g}]^2"),
             "manifold.png")
        label_map = np.asarray(analysis.label_map(decode, classify, cfg.grid_extent,
                                                  cfg.label_map_size))
        save(plots.label_map_figure(label_map, cfg.grid_extent, means, names), "label_map.png")
        save(plots.figure3(codes, labels, manifold, label_map, cfg.grid_extent, means, names,
                           titles=("Test posterior (mean of the most probable component)",
                                   "Decoded latent grid", "Predicted label of the decoded grid")),
             "figure3.png")
        if prior.num_classes == 2:
            path, title = analysis.predesign_path(), "pre-design path (-10, 0) -> (10, 0)"
        else:
            far = prior.num_classes // 2
            path = analysis.centre_interpolation(prior, 0, far, 11)
            title = f"designed centre of {names[0]} -> {names[far]}"
        save(plots.interpolation_strips([np.asarray(decode(path))], [title]), "interpolation.png")
    else:
        images = exp.dataset.test.images[:16].astype(np.float32) / 255.0
        logits, mean, _ = encode(images)
        recon = np.asarray(decode(metrics.posterior_mean_code(logits, mean)))
        save(plots.image_grid(np.concatenate([images, recon]), 2, 16,
                              title="test images (top) and reconstructions (bottom)"),
             "reconstructions.png")
        test = exp.dataset.test.images[:2000].astype(np.float32) / 255.0
        _, mean, logvar = encode(test)
        ratios, _ = metrics.activated_subspace_by_class(
            mean, logvar, exp.dataset.test.labels[:2000], prior.num_classes,
            cfg.activation_threshold)
        save(plots.activation_bars(np.asarray(ratios), names, cfg.activation_threshold),
             "activation_bars.png")
    return written


def write_grid_figures(exp, evaluated: dict[str, np.ndarray], directory: str) -> list[str]:
    """Grid figures: the Figure 4 posterior panel (2-D latents), Figure 8 heat maps
    (when the grid spans lambda1 x lambda2) and Figure 9 strips (distance sweeps)."""
    written = []
    labels = np.asarray(exp.dataset.test.labels[:evaluated["codes"].shape[1]])
    names = exp.dataset.class_names
    if exp.config.model.latent_dim == 2:
        panels = [(evaluated["codes"][i], labels, configuration.point_name(p))
                  for i, p in enumerate(exp.points)]
        fig = plots.posterior_panel(panels, np.asarray(prior_of(exp, 0).means), names,
                                    ncols=min(5, len(panels)))
        written.append(plots.save(fig, os.path.join(directory, "posterior_panel.png")))
    table = heatmap_table(exp.points, evaluated)
    if table is not None:
        lambda1, lambda2, values = table
        for metric, title in (("kl", "KL divergence (eq. 18)"),
                              ("negative_ssim", "negative SSIM (eq. 19)"),
                              ("classification_error", "classification error (eq. 20)")):
            fig = plots.heatmap(values[metric], lambda1, lambda2, title=title,
                                ylabel="lambda1", xlabel="lambda2")
            written.append(plots.save(fig, os.path.join(directory, f"heatmap_{metric}.png")))
    return written


def heatmap_table(points, evaluated):
    """(lambda1 values, lambda2 values, {metric: [R, C] mean over seeds}) or None."""
    if not points or any("lambda1" not in p or "lambda2" not in p for p in points):
        return None
    lambda1 = sorted({p["lambda1"] for p in points})
    lambda2 = sorted({p["lambda2"] for p in points})
    values = {}
    for metric in ("kl", "negative_ssim", "classification_error"):
        cells = np.full((len(lambda1), len(lambda2)), np.nan)
        for r, a in enumerate(lambda1):
            for c, b in enumerate(lambda2):
                chosen = [float(evaluated[metric][i]) for i, p in enumerate(points)
                          if p["lambda1"] == a and p["lambda2"] == b]
                cells[r, c] = np.mean(chosen)
        values[metric] = cells
    return lambda1, lambda2, values


def write_run_figures(exp, states, evaluated: dict[str, np.ndarray], directory: str) -> list[str]:
    """All figures of a run (G models): per-model figures, plus grid figures when G > 1."""
    written = []
    for i, point in enumerate(exp.points[:MAX_PER_MODEL_FIGURES]):
        sub = directory if exp.num_models == 1 else os.path.join(
            directory, configuration.point_name(point))
        written += write_model_figures(exp, train.unstack_tree(states, i),
                                       np.asarray(evaluated["codes"][i]), prior_of(exp, i), sub)
    if exp.num_models > 1:
        written += write_grid_figures(exp, evaluated, directory)
        if "distance" in exp.points[0]:
            rows, titles = [], []
            for i, point in enumerate(exp.points):
                _, decode, _ = model_functions(exp, train.unstack_tree(states, i))
                rows.append(np.asarray(decode(analysis.predesign_path())))
                titles.append(configuration.point_name(point))
            fig = plots.interpolation_strips(rows, titles)
            written.append(plots.save(fig, os.path.join(directory, "predesign_interpolation.png")))
    return written
