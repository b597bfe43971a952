"""Tests for exon_jax.plots: every figure draws on small inputs and saves a PNG."""

import io
import sys

import matplotlib.colors
import numpy as np
import pytest
from matplotlib.figure import Figure

from exon_jax import plots

NUM_CLASSES = 4
NAMES = ["zero", "one", "two", "three"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def means():
    angles = (2 * np.arange(NUM_CLASSES) + 1) * np.pi / NUM_CLASSES
    return 8.0 * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def _codes(rng, means, count=200):
    labels = rng.integers(0, NUM_CLASSES, size=count)
    return means[labels] + 2.0 * rng.normal(size=(count, 2)), labels


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == plots.PNG_SIGNATURE == b"\x89PNG\r\n\x1a\n"


def _save_and_check(fig, tmp_path, name):
    assert isinstance(fig, Figure)
    path = tmp_path / "nested" / "dir" / f"{name}.png"
    assert plots.save(fig, str(path)) == str(path)
    _assert_png(path)


# ---------------------------------------------------------------- tiling


@pytest.mark.parametrize("count,nrows,ncols,channels", [(6, 2, 3, 1), (5, 2, 3, 3), (4, 4, 1, 1)])
def test_tile_images_matches_loop(rng, count, nrows, ncols, channels):
    """Oracle: explicit per-cell copy into a zero canvas."""
    height, width = 3, 5
    images = rng.uniform(size=(count, height, width, channels))
    expected = np.zeros((nrows * height, ncols * width, channels))
    for index in range(count):
        row, col = divmod(index, ncols)
        expected[row * height : (row + 1) * height, col * width : (col + 1) * width] = images[index]
    tiled = plots.tile_images(images, nrows, ncols)
    assert tiled.shape == (nrows * height, ncols * width, channels)
    np.testing.assert_array_equal(tiled, expected)


def test_tile_images_rejects_too_many(rng):
    with pytest.raises(ValueError, match="images"):
        plots.tile_images(rng.uniform(size=(7, 2, 2, 1)), 2, 3)


# ---------------------------------------------------------------- figures


def test_prior_samples(rng, means, tmp_path):
    z, labels = _codes(rng, means)
    _save_and_check(plots.prior_samples(z, labels, means, NAMES), tmp_path, "prior")


def test_posterior_scatter_new_and_existing_axes(rng, means, tmp_path):
    codes, labels = _codes(rng, means)
    fig = plots.posterior_scatter(codes, labels, means, NAMES, title="posterior")
    assert fig.axes[0].get_title() == "posterior"
    panel = plots.posterior_panel([(codes, labels, "a")], means)
    other = panel.add_subplot(2, 2, 4)
    assert plots.posterior_scatter(codes, labels, means, ax=other) is panel
    _save_and_check(fig, tmp_path, "posterior")


def test_posterior_panel_shares_limits(rng, means, tmp_path):
    panels = []
    for index, spread in enumerate([0.5, 2.0, 6.0]):
        codes, labels = _codes(rng, means)
        panels.append((means[labels] + spread * rng.normal(size=codes.shape), labels, f"p{index}"))
    fig = plots.posterior_panel(panels, means, NAMES, ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    fig.canvas.draw()
    limits = {(ax.get_xlim(), ax.get_ylim()) for ax in visible}
    assert len(limits) == 1
    _save_and_check(fig, tmp_path, "panel")


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid(rng, tmp_path, channels):
    images = rng.uniform(size=(9, 6, 6, channels))
    fig = plots.image_grid(images, 3, 3, title="grid")
    shown = fig.axes[0].get_images()[0].get_array()
    expected = plots.tile_images(images, 3, 3)
    np.testing.assert_allclose(np.asarray(shown), expected[..., 0] if channels == 1 else expected)
    _save_and_check(fig, tmp_path, f"grid{channels}")


def test_label_map_figure(rng, means, tmp_path):
    label_map = rng.integers(0, NUM_CLASSES, size=(20, 20))
    fig = plots.label_map_figure(label_map, 15.0, means, NAMES)
    image = fig.axes[0].get_images()[0]
    left, right, bottom, top = image.get_extent()
    assert left < -15.0 and right > 15.0 and bottom < -15.0 and top > 15.0
    _save_and_check(fig, tmp_path, "label_map")


def test_figure3(rng, means, tmp_path):
    codes, labels = _codes(rng, means)
    manifold = rng.uniform(size=(16, 8, 8, 1))
    label_map = rng.integers(0, NUM_CLASSES, size=(10, 10))
    fig = plots.figure3(codes, labels, manifold, label_map, 15.0, means, NAMES)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
    _save_and_check(fig, tmp_path, "figure3")
    with pytest.raises(ValueError, match="manifold_images"):
        plots.figure3(codes, labels, manifold[:15], label_map, 15.0, means, NAMES)


def test_interpolation_strips(rng, tmp_path):
    rows = [rng.uniform(size=(11, 8, 8, 1)) for _ in range(4)]
    fig = plots.interpolation_strips(rows, ["d=8", "d=16", "d=24", "d=32"])
    assert len(fig.axes) == 4
    _save_and_check(fig, tmp_path, "strips")


def test_heatmap_writes_every_cell(rng, tmp_path):
    values = rng.uniform(size=(3, 4))
    fig = plots.heatmap(
        values, [1, 10, 100], [0.1, 0.5, 1.1, 2.0], "kl", xlabel="lambda2", ylabel="lambda1"
    )
    texts = {text.get_text() for text in fig.axes[0].texts}
    assert texts == {f"{value:.3g}" for value in values.reshape(-1)}
    _save_and_check(fig, tmp_path, "heatmap")
    with pytest.raises(ValueError, match="values"):
        plots.heatmap(values, [1, 10], [0.1, 0.5, 1.1, 2.0], "kl")


def test_activation_bars(rng, tmp_path):
    ratios = rng.exponential(scale=0.1, size=(NUM_CLASSES, 30))
    fig = plots.activation_bars(ratios, NAMES, threshold=0.1, ncols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == NUM_CLASSES
    assert all(len(ax.patches) == 30 for ax in visible)
    _save_and_check(fig, tmp_path, "bars")


def test_trend_single_multiple_and_secondary(tmp_path):
    x = np.array([0.01, 0.02, 0.05, 0.1])
    single = plots.trend(x, [3.0, 5.0, 8.0, 9.0], "epsilon", "activated dims", "trend")
    assert len(single.axes[0].lines) == 1
    _save_and_check(single, tmp_path, "trend1")
    several = plots.trend(
        x,
        {"automobile": [3, 5, 8, 9], "horse": [2, 4, 6, 7]},
        "epsilon",
        "activated dims",
        secondary={"negative SSIM": [0.1, 0.2, 0.25, 0.3]},
        secondary_ylabel="negative SSIM",
        logx=True,
    )
    assert len(several.axes) == 2
    assert several.axes[0].get_legend() is not None
    _save_and_check(several, tmp_path, "trend2")


def test_plots_leave_pyplot_alone():
    """Figures are made off pyplot: no figure is registered there."""
    plots.trend([0, 1], [0, 1], "x", "y")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        assert pyplot.get_fignums() == []


# ---------------------------------------------------------------- paper-ready output


def _inside_canvas(fig, slack=0.01):
    """Oracle for clipping: matplotlib's tight bbox of every artist vs the figure size."""
    fig.draw_without_rendering()
    box = fig.get_tightbbox()
    width, height = fig.get_size_inches()
    return (
        box.x0 >= -slack
        and box.y0 >= -slack
        and box.x1 <= width + slack
        and box.y1 <= height + slack
    )


def test_save_writes_pdf_beside_png(tmp_path):
    path = tmp_path / "a" / "trend.png"
    plots.save(plots.trend([0, 1], [0, 1], "x", "y"), str(path))
    pdf = tmp_path / "a" / "trend.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert plots.pdf_path(str(path)) == str(pdf)


def test_long_titles_and_row_labels_stay_inside_canvas(rng, means):
    """The figures the review found clipped: posterior.png's long title, the grid panel
    and the pre-design strip row labels."""
    codes, labels = _codes(rng, means)
    long_title = "Test posterior (mean of the most probable component) of every test image"
    strips = plots.interpolation_strips(
        [rng.uniform(size=(11, 8, 8, 1)) for _ in range(4)],
        ["distance=8", "distance=16", "distance=24", "distance=32"],
    )
    panel = plots.posterior_panel(
        [(codes, labels, "lambda1=100_lambda2=1.1_seed=0")] * 3,
        means,
        NAMES,
        ncols=3,
        title=long_title,
    )
    bars = plots.activation_bars(
        rng.uniform(size=(3, 40)),
        NAMES[:3],
        ncols=2,
        title="activation ratio F per class (training inputs)",
    )
    figures = {
        "posterior": plots.posterior_scatter(codes, labels, means, NAMES, title=long_title),
        "strips": strips,
        "panel": panel,
        "bars": bars,
        "figure3": plots.figure3(
            codes,
            labels,
            rng.uniform(size=(16, 8, 8, 1)),
            rng.integers(0, NUM_CLASSES, size=(10, 10)),
            15.0,
            means,
            NAMES,
            titles=(long_title, "b", "c"),
        ),
    }
    for name, fig in figures.items():
        assert _inside_canvas(plots.fit_canvas(fig)), name  # what `save` writes


def test_fit_canvas_grows_a_clipped_figure():
    fig = plots.trend([0, 1], [0, 1], "x", "y")
    fig.axes[0].set_ylabel("a very long y label " * 8)
    fig.set_size_inches(2.0, 2.0)
    assert not _inside_canvas(fig)
    assert _inside_canvas(plots.fit_canvas(fig))


def test_fit_canvas_keeps_the_layout_it_checked(rng):
    """`save` writes the layout `fit_canvas` checked: saving lays nothing out again (the
    layout engine ran once more at save time before, and moved the axes)."""
    codes = rng.normal(size=(200, 2)) * 5
    labels = rng.integers(0, NUM_CLASSES, size=200)
    means = rng.normal(size=(NUM_CLASSES, 2)) * 10
    fig = plots.figure3(
        codes,
        labels,
        rng.uniform(size=(16, 8, 8, 1)),
        rng.integers(0, NUM_CLASSES, (10, 10)),
        15.0,
        means,
        NAMES,
    )
    plots.fit_canvas(fig)
    checked = [ax.get_position().bounds for ax in fig.axes]
    fig.savefig(io.BytesIO(), dpi=plots.SAVE_DPI, format="png")
    assert [ax.get_position().bounds for ax in fig.axes] == checked
    assert _inside_canvas(fig)


def test_activation_bars_threshold_line_and_axis_labels(rng):
    threshold = 0.1
    ratios = rng.uniform(0.0, 0.05, size=(2, 12))  # every bar below delta
    ratios[1, 3] = 4.0  # one far above it
    ratios[1, 7] = threshold  # on the line: not activated (F_kj > delta activates)
    fig = plots.activation_bars(ratios, NAMES[:2], threshold=threshold, ncols=2)
    red = matplotlib.colors.to_rgba("tab:red")
    blue = matplotlib.colors.to_rgba("tab:blue")
    for ax, row, name in zip(fig.axes, ratios, NAMES[:2]):
        lines = [line for line in ax.lines if np.allclose(line.get_ydata(), threshold)]
        assert len(lines) == 1, "threshold line missing"
        assert lines[0].get_zorder() > max(patch.get_zorder() for patch in ax.patches)
        low, high = ax.get_ylim()
        assert low <= threshold < high and high >= row.max()
        # One bar per latent dim, at dim j, as tall as F_kj, red exactly where F_kj > delta.
        bars = sorted(ax.patches, key=lambda patch: patch.get_x())
        np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in bars], range(12))
        np.testing.assert_allclose([b.get_height() for b in bars], row)
        colours = [b.get_facecolor() for b in bars]
        assert colours == [red if value > threshold else blue for value in row]
        active = int((row > threshold).sum())
        assert ax.get_title().startswith(f"{name}: {active} of 12 dims")
    assert [int((row > threshold).sum()) for row in ratios] == [0, 1]
    # Both panels are in the bottom row; only the first column carries the y label.
    assert [ax.get_ylabel() for ax in fig.axes] == ["$F_{kj}$", ""]
    assert all(ax.get_xlabel() == "latent dim $j$" for ax in fig.axes)


def test_posterior_panel_own_centres_and_square_window(rng, means):
    codes, labels = _codes(rng, means)
    moved = means * 3.0
    fig = plots.posterior_panel([(codes, labels, "a"), (codes, labels, "b", moved)], means, NAMES)
    marked = [ax.collections[1].get_offsets() for ax in fig.axes if ax.get_visible()]
    np.testing.assert_allclose(marked[0], means)
    np.testing.assert_allclose(marked[1], moved)
    half = 1.1 * max(np.abs(codes).max(), np.abs(moved).max())
    np.testing.assert_allclose(fig.axes[0].get_xlim(), (-half, half))
    np.testing.assert_allclose(fig.axes[0].get_ylim(), (-half, half))


# ---------------------------------------------------------------- figure tables and JSON


def test_grid_table_against_hand_computed_cells():
    from exon_jax import figures

    points = [
        {"lambda1": 1.0, "lambda2": 0.5, "seed": 0},
        {"lambda1": 1.0, "lambda2": 0.5, "seed": 1},
        {"lambda1": 10.0, "lambda2": 0.5, "seed": 0},
        {"lambda1": 1.0, "lambda2": 2.0, "seed": 0},
    ]
    values = {"kl": [1.0, 3.0, 5.0, 7.0]}
    assert figures.heatmap_fields(points) == ("lambda1", "lambda2")
    rows, cols, mean, std, count = figures.grid_table(points, values, "lambda1", "lambda2")
    assert rows == [1.0, 10.0] and cols == [0.5, 2.0]
    np.testing.assert_array_equal(count, [[2, 1], [1, 0]])
    np.testing.assert_allclose(mean["kl"], [[2.0, 7.0], [5.0, np.nan]])
    np.testing.assert_allclose(std["kl"], [[np.sqrt(2.0), np.nan], [np.nan, np.nan]])
    assert figures.heatmap_fields([{"distance": 8.0}, {"distance": 16.0}]) == ("distance", None)
    rows, cols, mean, _, count = figures.grid_table(
        [{"distance": 16.0}, {"distance": 8.0}],
        values={"kl": [2.0, 1.0]},
        row_field="distance",
        col_field=None,
    )
    assert rows == [8.0, 16.0] and cols == ["all"]
    np.testing.assert_allclose(mean["kl"], [[1.0], [2.0]])


def test_to_jsonable_is_strict_json():
    import json

    import jax.numpy as jnp

    from exon_jax.ops.writers import to_jsonable

    value = {
        1: np.float32(0.5),
        "a": np.array([[1, 2]], np.int64),
        "b": (np.bool_(True), None),
        "c": [float("nan"), np.inf, jnp.asarray(2.5)],
        "d": "text",
    }
    expected = {"1": 0.5, "a": [[1, 2]], "b": [True, None], "c": [None, None, 2.5], "d": "text"}
    assert to_jsonable(value) == expected
    assert json.loads(json.dumps(to_jsonable(value), allow_nan=False)) == expected
    assert isinstance(to_jsonable(np.int32(3)), int) and to_jsonable(np.bool_(False)) is False


def test_title_wrapping_keeps_math_and_words_whole():
    wrapped = plots._wrap(
        "test posterior samples $z \\sim q(z|x)$ lambda1=10_lambda2=1.1_seed=0", 1.5
    )
    assert "\n" in wrapped
    assert wrapped.replace("\n", " ") == (
        "test posterior samples $z \\sim q(z|x)$ lambda1=10_lambda2=1.1_seed=0"
    )
    for line in wrapped.split("\n"):
        assert line.count("$") % 2 == 0
