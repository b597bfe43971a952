"""Matplotlib figures of the paper from `analysis` / `metrics` outputs (no computation).

Every function takes arrays (NumPy or JAX, converted with `np.asarray`) and
returns a `matplotlib.figure.Figure` drawn on the Agg canvas. Figures are made
without pyplot, so nothing is registered in pyplot's global state, the current
backend is left alone (safe in notebooks and headless runs), and a figure is
freed as soon as it is no longer referenced. `save(fig, path)` writes a PNG and a PDF beside
it (`pdf=False`: the PNG only); `ops.figure_workers.FigurePool` draws them in worker
processes.

Paper figures: `prior_samples` (Figure 2; `latent_projection` for d != 2), `figure3` /
`posterior_scatter` / `image_grid` / `label_map_figure` (Figure 3), `posterior_panel` (Figure 4),
`activation_bars` (Figures 5, 14), `image_grid` on noise probes (Figures 6, 11,
12) and traversals (Figure 13), `trend` (Figure 7), `heatmap` (Figure 8),
`interpolation_strips` (Figures 1, 9, 10).

Label colours are tab10 (tab20 for 11-20 classes), one per class index, the same
in every figure; every scatter carries a legend naming the classes in their colours
(`class_legend`). `latent_projection` shows codes of any latent dimension.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Mapping, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from exon_jax.ops.figure_workers import pdf_path

SAVE_DPI = 120
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _colours(name: str) -> tuple:
    """The colours of a qualitative matplotlib colormap (tab10, tab20)."""
    colormap = matplotlib.colormaps[name]
    assert isinstance(colormap, ListedColormap)
    return tuple(colormap.colors)  # type: ignore[arg-type]  # a list of RGB tuples


def _new_figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas (not managed by pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def fit_canvas(fig: Figure, pad: float = 0.04, tries: int = 4) -> Figure:
    """Grows `fig` until every artist (titles, labels, tick labels) lies inside the canvas.

    Draws without rendering, compares the tight bounding box with the figure and
    widens/heightens the figure by the overflow (the layout engine then re-places
    the axes); repeats until nothing sticks out, at most `tries` times. A layout found to
    fit is kept as it is (the layout engine is switched off), so saving draws what was
    checked without laying the figure out again.

    Returns:
      `fig`.
    """
    for _ in range(tries):
        fig.draw_without_rendering()
        box = fig.get_tightbbox()
        width, height = fig.get_size_inches()
        grow_x = max(0.0, -box.x0) + max(0.0, box.x1 - width)
        grow_y = max(0.0, -box.y0) + max(0.0, box.y1 - height)
        if grow_x <= 0.0 and grow_y <= 0.0:
            fig.set_layout_engine("none")  # laid out at this size: savefig need not again
            break
        fig.set_size_inches(
            width + grow_x + (pad if grow_x else 0.0), height + grow_y + (pad if grow_y else 0.0)
        )
    return fig


def save(fig: Figure, path: str, pdf: bool = True) -> str:
    """Writes `fig` as a PNG at 120 dpi and (with `pdf`) as a PDF beside it, then closes it.

    The canvas is first grown to hold every artist (`fit_canvas`), so no title or
    label is cut. The PDF has the PNG's name with `.pdf` (vector text and lines;
    scatter points are rasterised). Closing: a figure managed by pyplot is closed
    there; figures made in this module are not registered with pyplot and are
    freed once unreferenced.

    Args:
      fig: the figure.
      path: output `.png` file; its directory is created if missing.

    Returns:
      `path` (the PNG).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fit_canvas(fig)
    fig.savefig(path, dpi=SAVE_DPI, format="png")
    if pdf:
        fig.savefig(pdf_path(path), dpi=SAVE_DPI, format="pdf")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    return path


def _wrap(text: str | None, width_inches: float, fontsize: float = 12.0) -> str | None:
    """`text` broken into lines that fit `width_inches` (about 0.55 em per character),
    never inside a word or a $...$ math span."""
    if not text:
        return text
    characters = max(12, int(width_inches * 72.0 / (0.55 * fontsize)))
    parts = text.split("$")
    glued = "$".join(part.replace(" ", "\x00") if i % 2 else part for i, part in enumerate(parts))
    lines = [
        textwrap.fill(line, characters, break_long_words=False, break_on_hyphens=False)
        for line in glued.split("\n")
    ]
    return "\n".join(lines).replace("\x00", " ")


def _set_title(ax, title: str | None, fontsize: float = 12.0) -> None:
    """Axes title wrapped to the width of the axes' figure column."""
    if title:
        width = ax.figure.get_size_inches()[0] * ax.get_position().width
        ax.set_title(_wrap(title, max(width, 1.5), fontsize), fontsize=fontsize)


def class_colormap(num_classes: int):
    """Qualitative colours for K classes and the matching norm for integer labels.

    Args:
      num_classes: K.

    Returns:
      (cmap, norm): a K-colour ListedColormap (tab10 for K <= 10, tab20 for
      K <= 20, else evenly spaced hues) and a BoundaryNorm mapping label k to colour k.
    """
    if num_classes <= 20:
        cmap = ListedColormap(_colours("tab10" if num_classes <= 10 else "tab20")[:num_classes])
    else:
        cmap = ListedColormap(
            matplotlib.colormaps["hsv"](np.linspace(0.0, 1.0, num_classes, endpoint=False))
        )
    norm = BoundaryNorm(np.arange(num_classes + 1) - 0.5, num_classes)
    return cmap, norm


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"argument `class_names` has {len(class_names)} names for {num_classes} classes"
        )
    return [str(name) for name in class_names]


def _mark_centres(ax, means: np.ndarray, class_names: Sequence[str] | None) -> None:
    """'x' at every designed centre mu0_k with its class name beside it."""
    means = np.asarray(means)
    names = _class_names(class_names, means.shape[0])
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="black", s=40, linewidths=1.5, zorder=3)
    for (first, second), name in zip(means[:, :2], names):
        ax.annotate(
            name,
            (first, second),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            fontweight="bold",
            zorder=4,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0},
        )


def class_legend(ax, num_classes: int, class_names: Sequence[str] | None = None, **kwargs):
    """A legend naming every class in its scatter colour (`class_colormap`), right of `ax`.

    One round marker per class k, coloured like label k and labelled with its name.
    kwargs go to `ax.legend` (e.g. loc, bbox_to_anchor, ncols).

    Returns:
      The Legend.
    """
    from matplotlib.lines import Line2D

    cmap, _ = class_colormap(num_classes)
    names = _class_names(class_names, num_classes)
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=5, color=cmap(k), label=name)
        for k, name in enumerate(names)
    ]
    options = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    options.update(kwargs)
    options.setdefault("ncols", 1 if num_classes <= 12 else 2)
    return ax.legend(handles=handles, borderaxespad=0.0, handletextpad=0.2, **options)


def _scatter_labels(ax, points, labels, num_classes: int, size: float = 3.0) -> None:
    points, labels = np.asarray(points), np.asarray(labels)
    cmap, norm = class_colormap(num_classes)
    ax.scatter(
        points[:, 0],
        points[:, 1],
        c=labels,
        cmap=cmap,
        norm=norm,
        s=size,
        linewidths=0,
        alpha=0.8,
        rasterized=True,
    )
    ax.set_aspect("equal", adjustable="box")


def prior_samples(
    z,
    labels,
    means,
    class_names: Sequence[str] | None = None,
    title: str | None = "Samples from the designed prior",
) -> Figure:
    """Scatter of prior samples coloured by component (paper Figure 2).

    Args:
      z: [N, 2] samples (`priors.sample_prior`).
      labels: [N] int component of each sample.
      means: [K, 2] designed centres mu0_k, marked 'x' with their class name.
      class_names: K names, or None for '0'..'K-1'.
      title: axes title, or None.

    Returns:
      Figure with one axes and a legend naming the classes in their colours.
    """
    fig = _new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    _scatter_labels(ax, z, labels, np.asarray(means).shape[0])
    _mark_centres(ax, means, class_names)
    class_legend(ax, np.asarray(means).shape[0], class_names)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    _set_title(ax, title)
    return fig


def posterior_scatter(
    codes,
    labels,
    means,
    class_names: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    legend: bool = True,
) -> Figure:
    """Latent codes of test inputs coloured by true label, designed centres marked.

    Paper Figure 3 (left) and each panel of Figure 4.

    Args:
      codes: [N, 2] codes, e.g. z_i ~ q(z | x_i) or `metrics.posterior_mean_code`.
      labels: [N] int true labels.
      means: [K, 2] designed centres mu0_k ('x' markers with class names).
      class_names: K names, or None for '0'..'K-1'.
      ax: axes to draw into (its figure is returned); None makes a new figure.
      title: axes title, or None.
      legend: a legend naming the classes in their colours (`class_legend`).

    Returns:
      The Figure holding the axes.
    """
    if ax is None:
        ax = _new_figure(6.0, 5.0).add_subplot()
    _scatter_labels(ax, codes, labels, np.asarray(means).shape[0])
    _mark_centres(ax, means, class_names)
    if legend:
        class_legend(ax, np.asarray(means).shape[0], class_names)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    _set_title(ax, title)
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


def posterior_panel(
    panels: Sequence[tuple],
    means,
    class_names: Sequence[str] | None = None,
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """Several `posterior_scatter` panels on one shared square window (paper Figure 4).

    Args:
      panels: list of (codes [N_i, 2], labels [N_i], title) triples, e.g. one per
        (lambda1, lambda2) pair, or (codes, labels, title, means_i) quadruples whose
        panel marks its own designed centres means_i [K, 2] (e.g. one per distance of a
        pre-design sweep).
      means: [K, 2] designed centres of the triples.
      class_names: K names, or None.
      ncols: panels per row.
      title: figure title, or None.

    Returns:
      Figure with len(panels) axes sharing x and y; the window is the square
      [-h, h]^2 holding every code and centre (h = 1.1 x the largest |coordinate|); one
      legend naming the classes, right of the top row.
    """
    rows, columns = _grid_shape(len(panels), ncols)
    fig = _new_figure(3.2 * columns, 3.2 * rows + (0.4 if title else 0.0))
    axes = _grid_axes(fig, len(panels), ncols, sharex=True, sharey=True)
    centres = [np.asarray(panel[3] if len(panel) > 3 else means) for panel in panels]
    half = 1.1 * max(
        max(float(np.max(np.abs(np.asarray(p[0])), initial=0.0)) for p in panels),
        max(float(np.max(np.abs(c[:, :2]))) for c in centres),
        1.0,
    )
    for ax, panel, centre in zip(axes, panels, centres):
        posterior_scatter(
            panel[0], panel[1], centre, class_names, ax=ax, title=panel[2], legend=False
        )
    axes[0].set_xlim(-half, half)
    axes[0].set_ylim(-half, half)
    class_legend(axes[columns - 1], centres[0].shape[0], class_names)  # right of the top row
    if title:
        fig.suptitle(_wrap(title, fig.get_size_inches()[0]) or "")
    return fig


MAX_PAIRWISE_DIM = 4  # latent_projection adds every pair of coordinates up to this d


def latent_projection(
    codes,
    labels,
    means,
    basis,
    centre,
    explained=None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    max_pairwise_dim: int = MAX_PAIRWISE_DIM,
) -> Figure:
    """Codes of any latent dimension d and the designed centres in 2-D views.

    Panel 1: codes and centres projected on the plane with orthonormal axes `basis`
    through `centre` (`analysis.principal_plane` of the designed means: x = (z - centre) @
    basis.T). For 2 <= d <= max_pairwise_dim, one more panel per pair of coordinates
    (z_i, z_j), i < j: d = 3 gives 3, d = 4 gives 6. Points are coloured by label, centres
    marked 'x' with their class names; a legend names the classes in their colours.

    Args:
      codes: [N, d] codes (test posterior codes, prior samples, ...).
      labels: [N] int labels (true labels, or the component of a prior sample).
      means: [K, d] designed centres mu0_k.
      basis: [2, d] orthonormal axes of the plane.
      centre: [d] origin of the plane.
      explained: optional [2] share of the centres' variance along each axis (axis labels).
      class_names: K names, or None.
      title: figure title, or None.
      max_pairwise_dim: largest d that gets the pairwise panels.

    Returns:
      Figure with 1 + (d choose 2) axes (1 when d > max_pairwise_dim or d = 1).
    """
    codes, means = np.asarray(codes, np.float64), np.asarray(means, np.float64)
    basis, centre = np.asarray(basis, np.float64), np.asarray(centre, np.float64)
    dim, num_classes = means.shape[1], means.shape[0]
    if codes.ndim != 2 or codes.shape[1] != dim or basis.shape != (2, dim):
        raise ValueError(
            f"argument shapes: codes [N, {dim}] and basis [2, {dim}] for means [K, {dim}], got "
            f"codes {codes.shape} and basis {basis.shape}"
        )
    pairs = (
        [(i, j) for i in range(dim) for j in range(i + 1, dim)]
        if 2 <= dim <= max_pairwise_dim
        else []
    )
    count = 1 + len(pairs)
    rows, columns = _grid_shape(count, 4)
    fig = _new_figure(3.6 * columns + 1.2, 3.6 * rows + (0.4 if title else 0.0))
    axes = _grid_axes(fig, count, 4)
    plane_codes = (codes - centre) @ basis.T
    plane_means = (means - centre) @ basis.T
    shares = ["", ""]
    if explained is not None:
        shares = [f" ({100 * float(e):.0f} % of the centres' variance)" for e in explained]
    views = [(plane_codes, plane_means, "$PC_1$" + shares[0], "$PC_2$" + shares[1])]
    views += [
        (codes[:, [i, j]], means[:, [i, j]], f"$z_{{{i + 1}}}$", f"$z_{{{j + 1}}}$")
        for i, j in pairs
    ]
    for index, (ax, (points, centres, xlabel, ylabel)) in enumerate(zip(axes, views)):
        _scatter_labels(ax, points, labels, num_classes)
        _mark_centres(ax, centres, class_names)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if index == 0:
            _set_title(ax, "principal plane of the designed centres", fontsize=10)
    class_legend(axes[min(count, columns) - 1], num_classes, class_names)
    if title:
        fig.suptitle(_wrap(title, fig.get_size_inches()[0]) or "")
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
        ax.imshow(
            tiled[..., 0], cmap="gray", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest"
        )
    else:
        ax.imshow(np.clip(tiled, 0.0, 1.0), extent=extent, interpolation="nearest")
    if extent is None:
        ax.set_xticks([])
        ax.set_yticks([])


def image_grid(
    images, nrows: int, ncols: int, title: str | None = None, scale: float = 0.6
) -> Figure:
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
    _set_title(ax, title)
    return fig


def _cell_extent(extent: float, size: int):
    """imshow extent placing the centres of a size x size map's cells on the grid points."""
    half_cell = extent / (size - 1) if size > 1 else extent
    return (-extent - half_cell, extent + half_cell, -extent - half_cell, extent + half_cell)


def _draw_label_map(ax, labels, extent: float, means, class_names):
    labels = np.asarray(labels)
    num_classes = np.asarray(means).shape[0]
    cmap, norm = class_colormap(num_classes)
    image = ax.imshow(
        labels,
        cmap=cmap,
        norm=norm,
        extent=_cell_extent(extent, labels.shape[0]),
        origin="upper",
        interpolation="nearest",
    )
    _mark_centres(ax, means, class_names)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return image


def label_map_figure(
    label_map,
    extent: float,
    means,
    class_names: Sequence[str] | None = None,
    title: str | None = "Predicted label of the decoded grid",
) -> Figure:
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
    _set_title(ax, title)
    return fig


def figure3(
    codes,
    labels,
    manifold_images,
    label_map,
    extent: float,
    means,
    class_names: Sequence[str] | None = None,
    titles: Sequence[str] = (
        "Test posterior",
        "Decoded latent grid",
        "Predicted label of the decoded grid",
    ),
) -> Figure:
    """The paper's three-panel Figure 3: codes | decoded manifold | label map.

    The paper's left panel is z_i ~ q(z | x_i) for the test inputs x_i coloured by
    their label (pass prior samples instead for a prior view; then change `titles`).
    The middle panel shows the decoded grid in latent coordinates, the right one
    the label map; both cover [-extent, extent]^2 and may use different grid sizes. The
    three panels share their axes: one window, the decoded grid's cells
    [-extent - h/2, extent + h/2]^2 (h its spacing), so a point is at the same place in
    each panel (codes outside the grid are cut off); a legend names the classes.

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
      Figure with three axes sharing x and y.
    """
    manifold_images = np.asarray(manifold_images)
    size = int(round(np.sqrt(manifold_images.shape[0])))
    if size * size != manifold_images.shape[0]:
        raise ValueError(
            f"argument `manifold_images` must hold S * S images, got {manifold_images.shape[0]}"
        )
    fig = _new_figure(16.0, 5.0)
    scatter_ax, manifold_ax, map_ax = fig.subplots(1, 3, sharex=True, sharey=True)
    posterior_scatter(
        codes, labels, means, class_names, ax=scatter_ax, title=titles[0], legend=False
    )
    window = _cell_extent(extent, size)
    _show_tiled(manifold_ax, tile_images(manifold_images, size, size), extent=window)
    manifold_ax.set_xlabel("$z_1$")
    manifold_ax.set_ylabel("$z_2$")
    _set_title(manifold_ax, titles[1])
    _draw_label_map(map_ax, label_map, extent, means, class_names)
    _set_title(map_ax, titles[2])
    # One window for the three panels: the decoded grid's cells (the coarser of the two grids).
    for ax in (scatter_ax, manifold_ax, map_ax):
        ax.set_aspect("equal", adjustable="box")
    scatter_ax.set_xlim(window[0], window[1])
    scatter_ax.set_ylim(window[2], window[3])
    class_legend(map_ax, np.asarray(means).shape[0], class_names)
    return fig


def interpolation_strips(
    rows: Sequence,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
    scale: float = 0.8,
) -> Figure:
    """One strip of images per row, a label left of each (paper Figures 1, 6, 9-13).

    Interpolations (Figures 1, 9, 10: one row per distance in Figure 9), noise
    probes (Figures 6, 11, 12) and traversals (Figure 13) all use it.

    Args:
      rows: list of R arrays [T_r, H, W, C] (decodings of `analysis.interpolate`,
        `analysis.predesign_path`, `analysis.noise_probe`, `analysis.traversal`); all
        rows share H, W, C.
      row_titles: R labels shown left of each strip, or None.
      title: figure title above the strips, or None.
      scale: inches per image.

    Returns:
      Figure with R axes, top to bottom; `save` widens it to hold the labels.
    """
    rows = [np.asarray(row) for row in rows]
    if not rows:
        raise ValueError("argument `rows` is empty")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"argument `row_titles` has {len(row_titles)} titles for {len(rows)} rows")
    length = max(row.shape[0] for row in rows)
    label_width = 0.0 if row_titles is None else 0.09 * max(len(t) for t in row_titles)
    fig = _new_figure(
        max(2.0, scale * length + 0.2 + label_width),
        scale * len(rows) + 0.2 + (0.4 if title else 0.0),
    )
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for index, (ax, row) in enumerate(zip(axes, rows)):
        _show_tiled(ax, tile_images(row, 1, row.shape[0]))
        if row_titles is not None:
            ax.set_ylabel(row_titles[index], rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(_wrap(title, fig.get_size_inches()[0]) or "")
    return fit_canvas(fig)


def heatmap(
    values,
    row_labels: Sequence,
    col_labels: Sequence,
    title: str | None = None,
    fmt: str = "{:.3g}",
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
) -> Figure:
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
        raise ValueError(
            f"argument `values` must be [{len(row_labels)}, {len(col_labels)}], "
            f"got shape {values.shape}"
        )
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
            ax.text(
                col,
                row,
                fmt.format(value),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    _set_title(ax, title)
    return fig


def activation_bars(
    ratios,
    class_names: Sequence[str] | None = None,
    threshold: float = 0.1,
    ncols: int = 5,
    sharey: bool = False,
    title: str | None = None,
) -> Figure:
    """Activation ratio F_kj of every latent dim, one panel per class (Figures 5, 14).

    Bars above the threshold delta (the activated dims) are red, the others blue;
    delta is a dashed black line drawn over the bars and always inside the y range.

    Args:
      ratios: [K, d] F from `metrics.activated_subspace_by_class` (or [d] for one class).
      class_names: K names, or None.
      threshold: delta; bars above it are the activated dims.
      ncols: panels per row.
      sharey: share the y axis between classes.
      title: figure title, or None.

    Returns:
      Figure with K axes (x: latent dim j, integer ticks; y: F_kj).
    """
    ratios = np.atleast_2d(np.asarray(ratios, dtype=float))
    num_classes, dim = ratios.shape
    names = _class_names(class_names, num_classes)
    rows, columns = _grid_shape(num_classes, ncols)
    fig = _new_figure(3.0 * columns + 0.3, 2.3 * rows + 0.3 + (0.4 if title else 0.0))
    axes = _grid_axes(fig, num_classes, ncols, sharex=True, sharey=sharey)
    top = max(float(np.nanmax(ratios, initial=0.0)), threshold) * 1.08
    for index, (ax, row, name) in enumerate(zip(axes, ratios, names)):
        active = row > threshold
        ax.bar(
            np.arange(dim),
            np.nan_to_num(row),
            width=1.0,
            color=np.where(active, "tab:red", "tab:blue"),
            zorder=1,
        )
        ax.axhline(
            threshold,
            color="black",
            linestyle="--",
            linewidth=1.0,
            zorder=3,
            label=f"threshold $\\delta$ = {threshold:g}",
        )
        ax.set_title(f"{name}: {int(active.sum())} of {dim} dims > {threshold:g}", fontsize=9)
        ax.set_xlim(-0.5, dim - 0.5)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # dims j
        if not sharey:
            ax.set_ylim(0.0, max(float(np.nanmax(row, initial=0.0)), threshold) * 1.08)
        else:
            ax.set_ylim(0.0, top)
        ax.tick_params(labelsize=7)
        if index % columns == 0:
            ax.set_ylabel("$F_{kj}$", fontsize=9)
        if index >= num_classes - columns:
            ax.set_xlabel("latent dim $j$", fontsize=9)
            ax.xaxis.set_tick_params(labelbottom=True)
    axes[0].legend(loc="upper left", fontsize=7, framealpha=0.8)
    if title:
        fig.suptitle(_wrap(title, fig.get_size_inches()[0]) or "")
    return fig


def trend(
    x,
    y,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    secondary: Mapping | None = None,
    secondary_ylabel: str | None = None,
    logx: bool = False,
) -> Figure:
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
        colours = _colours("tab10")
        for index, (name, values) in enumerate(secondary.items()):
            lines += other.plot(
                x,
                np.asarray(values),
                marker="s",
                linestyle="--",
                label=name,
                color=colours[(len(series) + index) % len(colours)],
            )
        if secondary_ylabel:
            other.set_ylabel(secondary_ylabel)
    labelled = [line for line in lines if not str(line.get_label()).startswith("_")]
    if labelled:
        ax.legend(labelled, [str(line.get_label()) for line in labelled], fontsize=8)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(x, [f"{value:g}" for value in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _set_title(ax, title)
    return fig


def training_curves(
    curves: Mapping[str, Mapping[str, tuple]], title: str | None = None, logy: Sequence[str] = ()
) -> Figure:
    """One panel per metric, one line per model: training curves from metrics.jsonl.

    Args:
      curves: {metric name: {model name: (epochs [n], values [n])}}.
      title: figure title, or None.
      logy: metrics drawn on a logarithmic y axis.

    Returns:
      Figure with one axes per metric, side by side.
    """
    fig = _new_figure(4.2 * len(curves), 3.4)
    for index, (metric, lines) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), index + 1)
        for name, (epochs, values) in lines.items():
            ax.plot(
                np.asarray(epochs),
                np.asarray(values),
                label=name,
                marker="o" if len(epochs) < 30 else None,
                markersize=3,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric in logy:
            ax.set_yscale("log")
        if 1 < len(lines) <= 12:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
