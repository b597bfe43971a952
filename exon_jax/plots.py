"""Matplotlib figures of the paper from `analysis` / `metrics` outputs (no computation).

Every function takes arrays (NumPy or JAX, converted with `np.asarray`) and
returns a `matplotlib.figure.Figure` drawn on the Agg canvas. Figures are made
without pyplot, so nothing is registered in pyplot's global state, the current
backend is left alone (safe in notebooks and headless runs), and a figure is
freed as soon as it is no longer referenced. `save(fig, path)` writes a PNG.

Paper figures: `prior_samples` (Figure 2), `figure3` / `posterior_scatter` /
`image_grid` / `label_map_figure` (Figure 3), `posterior_panel` (Figure 4),
`activation_bars` (Figures 5, 14), `image_grid` on noise probes (Figures 6, 11,
12) and traversals (Figure 13), `trend` (Figure 7), `heatmap` (Figure 8),
`interpolation_strips` (Figures 1, 9, 10).

Label colours are tab10 (tab20 for 11-20 classes), one per class index, the same
in every figure.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

SAVE_DPI = 120
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _new_figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas (not managed by pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str) -> str:
    """Writes `fig` as a PNG at 120 dpi, making the directory, then closes it.

    Closing: a figure managed by pyplot is closed there; figures made in this
    module are not registered with pyplot and are freed once unreferenced.

    Args:
      fig: the figure.
      path: output file; its directory is created if missing.

    Returns:
      `path`.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=SAVE_DPI, format="png")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    return path


def class_colormap(num_classes: int):
    """Qualitative colours for K classes and the matching norm for integer labels.

    Args:
      num_classes: K.

    Returns:
      (cmap, norm): a K-colour ListedColormap (tab10 for K <= 10, tab20 for
      K <= 20, else evenly spaced hues) and a BoundaryNorm mapping label k to colour k.
    """
    if num_classes <= 10:
        colours = matplotlib.colormaps["tab10"].colors[:num_classes]
    elif num_classes <= 20:
        colours = matplotlib.colormaps["tab20"].colors[:num_classes]
    else:
        colours = matplotlib.colormaps["hsv"](np.linspace(0.0, 1.0, num_classes, endpoint=False))
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(num_classes + 1) - 0.5, num_classes)
    return cmap, norm


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"argument `class_names` has {len(class_names)} names for "
                         f"{num_classes} classes")
    return [str(name) for name in class_names]


def _mark_centres(ax, means: np.ndarray, class_names: Sequence[str] | None) -> None:
    """'x' at every designed centre mu0_k with its class name beside it."""
    means = np.asarray(means)
    names = _class_names(class_names, means.shape[0])
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="black", s=40, linewidths=1.5, zorder=3)
    for (first, second), name in zip(means[:, :2], names):
        ax.annotate(name, (first, second), xytext=(4, 4), textcoords="offset points",
                    fontsize=8, fontweight="bold", zorder=4,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0})


def _scatter_labels(ax, points, labels, num_classes: int, size: float = 3.0) -> None:
    points, labels = np.asarray(points), np.asarray(labels)
    cmap, norm = class_colormap(num_classes)
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, norm=norm, s=size,
               linewidths=0, alpha=0.8, rasterized=True)
    ax.set_aspect("equal", adjustable="box")


def prior_samples(z, labels, means, class_names: Sequence[str] | None = None,
                  title: str | None = "Samples from the designed prior") -> Figure:
    """Scatter of prior samples coloured by component (paper Figure 2).

    Args:
      z: [N, 2] samples (`priors.sample_prior`).
      labels: [N] int component of each sample.
      means: [K, 2] designed centres mu0_k, marked 'x' with their class name.
      class_names: K names, or None for '0'..'K-1'.
      title: axes title, or None.

    Returns:
      Figure with one axes.
    """
    fig = _new_figure(5.0, 5.0)
    ax = fig.add_subplot()
    _scatter_labels(ax, z, labels, np.asarray(means).shape[0])
    _mark_centres(ax, means, class_names)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return fig


def posterior_scatter(codes, labels, means, class_names: Sequence[str] | None = None,
                      ax=None, title: str | None = None) -> Figure:
    """Latent codes of test inputs coloured by true label, designed centres marked.

    Paper Figure 3 (left) and each panel of Figure 4.

    Args:
      codes: [N, 2] codes, e.g. z_i ~ q(z | x_i) or `metrics.posterior_mean_code`.
      labels: [N] int true labels.
      means: [K, 2] designed centres mu0_k ('x' markers with class names).
      class_names: K names, or None for '0'..'K-1'.
      ax: axes to draw into (its figure is returned); None makes a new figure.
      title: axes title, or None.

    Returns:
      The Figure holding the axes.
    """
    if ax is None:
        ax = _new_figure(5.0, 5.0).add_subplot()
    _scatter_labels(ax, codes, labels, np.asarray(means).shape[0])
    _mark_centres(ax, means, class_names)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return ax.figure


def _grid_shape(count: int, ncols: int) -> tuple[int, int]:
    """(rows, columns) of a row-major grid of `count` panels with at most `ncols` per row."""
    if count < 1:
        raise ValueError("nothing to draw: the list of panels is empty")
    columns = max(1, min(ncols, count))
    return -(-count // columns), columns


def _grid_axes(fig: Figure, count: int, ncols: int, **kwargs):
    """`count` axes on a `_grid_shape` grid, row-major; unused cells are hidden."""
    nrows, ncols = _grid_shape(count, ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).reshape(-1)
    for ax in axes[count:]:
        ax.set_visible(False)
    return axes[:count]


def posterior_panel(panels: Sequence[tuple], means, class_names: Sequence[str] | None = None,
                    ncols: int = 3) -> Figure:
    """Several `posterior_scatter` panels with shared x/y limits (paper Figure 4).

    Args:
      panels: list of (codes [N_i, 2], labels [N_i], title) triples, e.g. one per
        (lambda1, lambda2) pair.
      means: [K, 2] designed centres.
      class_names: K names, or None.
      ncols: panels per row.

    Returns:
      Figure with len(panels) axes sharing x and y.
    """
    rows, columns = _grid_shape(len(panels), ncols)
    fig = _new_figure(3.2 * columns, 3.2 * rows)
    axes = _grid_axes(fig, len(panels), ncols, sharex=True, sharey=True)
    for ax, (codes, labels, title) in zip(axes, panels):
        posterior_scatter(codes, labels, means, class_names, ax=ax, title=title)
    return fig


def tile_images(images, nrows: int, ncols: int, fill: float = 0.0) -> np.ndarray:
    """Tiles images row-major into one array: image i at row i // ncols, column i % ncols.

    Args:
      images: [N, H, W, C] images, N <= nrows * ncols.
      nrows, ncols: grid shape.
      fill: value of the empty cells when N < nrows * ncols.

    Returns:
      [nrows * H, ncols * W, C] array.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"argument `images` must be [N, H, W, C], got shape {images.shape}")
    count, height, width, channels = images.shape
    if count > nrows * ncols:
        raise ValueError(f"argument `images` has {count} images for a {nrows}x{ncols} grid")
    blank = np.full((nrows * ncols - count, height, width, channels), fill, images.dtype)
    cells = np.concatenate([images, blank]).reshape(nrows, ncols, height, width, channels)
    return cells.transpose(0, 2, 1, 3, 4).reshape(nrows * height, ncols * width, channels)


def _show_tiled(ax, tiled: np.ndarray, extent=None) -> None:
    """imshow of a tiled [H', W', C] array: grey for C = 1, RGB for C = 3, values in [0, 1]."""
    if tiled.shape[-1] == 1:
        ax.imshow(tiled[..., 0], cmap="gray", vmin=0.0, vmax=1.0, extent=extent,
                  interpolation="nearest")
    else:
        ax.imshow(np.clip(tiled, 0.0, 1.0), extent=extent, interpolation="nearest")
    if extent is None:
        ax.set_xticks([])
        ax.set_yticks([])


def image_grid(images, nrows: int, ncols: int, title: str | None = None,
               scale: float = 0.6) -> Figure:
    """Images tiled on a grid (decoded manifold, interpolations, traversals, noise probes).

    Args:
      images: [N, H, W, C] images in [0, 1], C = 1 (grey) or 3 (RGB), N <= nrows * ncols,
        row-major (e.g. `analysis.decode_grid` output with nrows = ncols = size).
      nrows, ncols: grid shape.
      title: figure title, or None.
      scale: inches per image.

    Returns:
      Figure with one axes.
    """
    fig = _new_figure(max(2.0, scale * ncols), max(1.0, scale * nrows) + (0.4 if title else 0.0))
    ax = fig.add_subplot()
    _show_tiled(ax, tile_images(images, nrows, ncols))
    if title:
        ax.set_title(title)
    return fig


def _cell_extent(extent: float, size: int):
    """imshow extent placing the centres of a size x size map's cells on the grid points."""
    half_cell = extent / (size - 1) if size > 1 else extent
    return (-extent - half_cell, extent + half_cell, -extent - half_cell, extent + half_cell)


def _draw_label_map(ax, labels, extent: float, means, class_names):
    labels = np.asarray(labels)
    num_classes = np.asarray(means).shape[0]
    cmap, norm = class_colormap(num_classes)
    image = ax.imshow(labels, cmap=cmap, norm=norm, extent=_cell_extent(extent, labels.shape[0]),
                      origin="upper", interpolation="nearest")
    _mark_centres(ax, means, class_names)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return image


def label_map_figure(label_map, extent: float, means, class_names: Sequence[str] | None = None,
                     title: str | None = "Predicted label of the decoded grid") -> Figure:
    """Label regions of the latent square, designed centres marked (paper Figure 3, right).

    Args:
      label_map: [S, S] int labels from `analysis.label_map` (row 0 = top = +extent).
      extent: half-width of the square the map covers.
      means: [K, 2] designed centres.
      class_names: K names, or None.
      title: axes title, or None.

    Returns:
      Figure with the map and a colour bar naming the classes.
    """
    fig = _new_figure(5.8, 5.0)
    ax = fig.add_subplot()
    image = _draw_label_map(ax, label_map, extent, means, class_names)
    num_classes = np.asarray(means).shape[0]
    colourbar = fig.colorbar(image, ax=ax, ticks=np.arange(num_classes), shrink=0.8)
    colourbar.ax.set_yticklabels(_class_names(class_names, num_classes))
    if title:
        ax.set_title(title)
    return fig


def figure3(codes, labels, manifold_images, label_map, extent: float, means,
            class_names: Sequence[str] | None = None,
            titles: Sequence[str] = ("Posterior samples, test set", "Decoded latent grid",
                                     "Predicted label of the decoded grid")) -> Figure:
    """The paper's three-panel Figure 3: codes | decoded manifold | label map.

    The paper's left panel is z_i ~ q(z | x_i) for the test inputs x_i coloured by
    their label (pass prior samples instead for a prior view; then change `titles`).
    The middle panel shows the decoded grid in latent coordinates, the right one
    the label map; both cover [-extent, extent]^2 and may use different grid sizes.

    Args:
      codes: [N, 2] latent codes.
      labels: [N] int labels of the codes.
      manifold_images: [S * S, H, W, C] `analysis.decode_grid(decode_fn, extent, S)`.
      label_map: [S', S'] int `analysis.label_map(..., extent, S')`.
      extent: half-width of the latent square of both grids.
      means: [K, 2] designed centres.
      class_names: K names, or None.
      titles: the three panel titles.

    Returns:
      Figure with three axes.
    """
    manifold_images = np.asarray(manifold_images)
    size = int(round(np.sqrt(manifold_images.shape[0])))
    if size * size != manifold_images.shape[0]:
        raise ValueError(f"argument `manifold_images` must hold S * S images, "
                         f"got {manifold_images.shape[0]}")
    fig = _new_figure(15.0, 5.0)
    scatter_ax, manifold_ax, map_ax = fig.subplots(1, 3)
    posterior_scatter(codes, labels, means, class_names, ax=scatter_ax, title=titles[0])
    _show_tiled(manifold_ax, tile_images(manifold_images, size, size),
                extent=_cell_extent(extent, size))
    manifold_ax.set_xlabel("$z_1$")
    manifold_ax.set_ylabel("$z_2$")
    manifold_ax.set_title(titles[1])
    _draw_label_map(map_ax, label_map, extent, means, class_names)
    map_ax.set_title(titles[2])
    return fig


def interpolation_strips(rows: Sequence, row_titles: Sequence[str] | None = None,
                         scale: float = 0.8) -> Figure:
    """One strip of images per row (paper Figures 1, 9, 10; Figure 9: one row per distance).

    Args:
      rows: list of R arrays [T_r, H, W, C] (decodings of `analysis.interpolate`
        or `analysis.predesign_path`); all rows share H, W, C.
      row_titles: R labels shown left of each strip, or None.
      scale: inches per image.

    Returns:
      Figure with R axes, top to bottom.
    """
    rows = [np.asarray(row) for row in rows]
    if not rows:
        raise ValueError("argument `rows` is empty")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"argument `row_titles` has {len(row_titles)} titles for {len(rows)} rows")
    length = max(row.shape[0] for row in rows)
    fig = _new_figure(max(2.0, scale * length + 1.0), scale * len(rows) + 0.2)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for index, (ax, row) in enumerate(zip(axes, rows)):
        _show_tiled(ax, tile_images(row, 1, row.shape[0]))
        if row_titles is not None:
            ax.set_ylabel(row_titles[index], rotation=0, ha="right", va="center")
    return fig


def heatmap(values, row_labels: Sequence, col_labels: Sequence, title: str | None = None,
            fmt: str = "{:.3g}", xlabel: str | None = None, ylabel: str | None = None,
            cmap: str = "viridis") -> Figure:
    """A value per cell, written in the cell (paper Figure 8: metric vs lambda1 x lambda2).

    Args:
      values: [R, C] numbers (NaN cells are left blank).
      row_labels: R tick labels (e.g. lambda1 values), top to bottom.
      col_labels: C tick labels (e.g. lambda2 values), left to right.
      title: axes title, or None.
      fmt: format of the cell text.
      xlabel, ylabel: axis labels, or None.
      cmap: matplotlib colormap name.

    Returns:
      Figure with the heat map and a colour bar.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"argument `values` must be [{len(row_labels)}, {len(col_labels)}], "
                         f"got shape {values.shape}")
    fig = _new_figure(1.0 + 0.9 * values.shape[1] + 1.0, 0.8 + 0.6 * values.shape[0])
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(np.arange(values.shape[1]), [str(label) for label in col_labels])
    ax.set_yticks(np.arange(values.shape[0]), [str(label) for label in row_labels])
    for row, col in np.ndindex(values.shape):
        value = values[row, col]
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig


def activation_bars(ratios, class_names: Sequence[str] | None = None, threshold: float = 0.1,
                    ncols: int = 5, sharey: bool = False) -> Figure:
    """Activation ratio F_kj of every latent dim, one small panel per class (Figures 5, 14).

    Args:
      ratios: [K, d] F from `metrics.activated_subspace_by_class` (or [d] for one class).
      class_names: K names, or None.
      threshold: delta, drawn as a dashed line; bars above it are the activated dims.
      ncols: panels per row.
      sharey: share the y axis between classes.

    Returns:
      Figure with K axes.
    """
    ratios = np.atleast_2d(np.asarray(ratios, dtype=float))
    num_classes, dim = ratios.shape
    names = _class_names(class_names, num_classes)
    rows, columns = _grid_shape(num_classes, ncols)
    fig = _new_figure(3.0 * columns, 2.2 * rows)
    axes = _grid_axes(fig, num_classes, ncols, sharex=True, sharey=sharey)
    for ax, row, name in zip(axes, ratios, names):
        active = row > threshold
        ax.bar(np.arange(dim), row, width=1.0, color=np.where(active, "tab:red", "tab:blue"))
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(f"{name} ({int(active.sum())} > {threshold:g})", fontsize=9)
        ax.set_xlim(-0.5, dim - 0.5)
        ax.tick_params(labelsize=7)
    return fig


def trend(x, y, xlabel: str, ylabel: str, title: str | None = None,
          secondary: Mapping | None = None, secondary_ylabel: str | None = None,
          logx: bool = False) -> Figure:
    """Line plot of one or more series against x (paper Figure 7, left).

    Args:
      x: [n] x values (e.g. epsilon).
      y: [n] values, or a dict {name: [n] values} for several lines with a legend.
      xlabel, ylabel: axis labels.
      title: axes title, or None.
      secondary: optional dict {name: [n] values} drawn dashed on a right-hand y
        axis (Figure 7 puts activated dims and negative SSIM on one plot).
      secondary_ylabel: label of the right-hand axis.
      logx: logarithmic x axis.

    Returns:
      Figure with one axes (two with `secondary`).
    """
    x = np.asarray(x)
    series = dict(y) if isinstance(y, Mapping) else {None: y}
    fig = _new_figure(5.5, 3.8)
    ax = fig.add_subplot()
    lines = []
    for name, values in series.items():
        lines += ax.plot(x, np.asarray(values), marker="o", label=name)
    if secondary:
        other = ax.twinx()
        colours = matplotlib.colormaps["tab10"].colors
        for index, (name, values) in enumerate(secondary.items()):
            lines += other.plot(x, np.asarray(values), marker="s", linestyle="--", label=name,
                                color=colours[(len(series) + index) % len(colours)])
        if secondary_ylabel:
            other.set_ylabel(secondary_ylabel)
    labelled = [line for line in lines if not line.get_label().startswith("_")]
    if labelled:
        ax.legend(labelled, [line.get_label() for line in labelled], fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig
