"""Figures follow the design (issue 22.3): the decoded grid covers the designed centres, every
scatter names its classes, Figure 3's panels share one window, any latent dimension gets a
latent figure, interpolations come from the config, integer ticks, analyze replaces what it
wrote, results.json names what negative SSIM was computed on."""

import json
import math
import os
import warnings

import dataclasses

import matplotlib.colors
import ml_collections
import numpy as np
import pytest

from exon_jax import analysis, configuration, evaluation, figures, plots, priors
from exon_jax.ops import figure_workers
from tests.lowerings import count_lowerings

NAMES = ("zero", "one", "two", "three")


def _wide_prior():
    """The 2 x 5 design of the issue: columns at x = -20 .. 20 (10 apart), rows y = +-4."""
    xs = np.array([-20.0, -10.0, 0.0, 10.0, 20.0])
    means = np.array([[x, y] for y in (4.0, -4.0) for x in xs])
    return priors.make_prior(means, 4.0)


def _legend_entries(legend):
    """(texts, RGBA colours) of a class legend, read back from the Matplotlib legend."""
    texts = [t.get_text() for t in legend.get_texts()]
    colours = [matplotlib.colors.to_rgba(h.get_color()) for h in legend.legend_handles]
    return texts, colours


def _class_colours(num_classes):
    cmap, _ = plots.class_colormap(num_classes)
    return [matplotlib.colors.to_rgba(cmap(k)) for k in range(num_classes)]


# ------------------------------------------------------------- the decoded grid's extent


def test_design_extent_is_max_abs_mean_plus_three_sd_by_hand():
    """Oracle: loops over components and the two axes, |mu_kj| + 3 sqrt(v_kj), largest."""
    means = [[1.0, -7.0], [-4.0, 2.0], [3.0, 0.5]]
    variances = [[0.25, 1.0], [9.0, 0.01], [1.0, 16.0]]
    by_hand = 0.0
    for k in range(3):
        for j in range(2):
            by_hand = max(by_hand, abs(means[k][j]) + 3.0 * math.sqrt(variances[k][j]))
    assert by_hand == 4.0 + 3.0 * 3.0  # component 1 along z_1
    prior = priors.make_prior(means, variances)
    assert analysis.design_extent(prior) == pytest.approx(by_hand, rel=1e-6)
    # The paper's circle: radius 4 / sin(pi / 10), sd 2.
    circle = analysis.design_extent(priors.circle_prior(10))
    assert circle == pytest.approx(4.0 / math.sin(math.pi / 10) + 6.0, rel=1e-5)
    # The 2 x 5 design at x = +-20: 20 + 3 * 2.
    assert analysis.design_extent(_wide_prior()) == pytest.approx(26.0)


def test_auto_extent_covers_the_design_and_an_explicit_one_warns_for_a_lost_centre():
    prior = _wide_prior()
    names = [str(k) for k in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert figures.figure_grid_extent(0.0, prior, names) == pytest.approx(26.0)
        assert figures.figure_grid_extent(21.0, prior, names) == 21.0  # every centre inside
    with pytest.warns(UserWarning, match=r"config\.analysis\.grid_extent=15") as caught:
        assert figures.figure_grid_extent(15.0, prior, names) == 15.0
    message = str(caught[0].message)
    # The four classes at x = +-20 are named, the six inside are not.
    assert analysis.centres_outside(prior.means, 15.0) == [0, 4, 5, 9]
    for k in (0, 4, 5, 9):
        assert f"{k} at (" in message
    for k in (1, 2, 3, 6, 7, 8):
        assert f"{k} at (" not in message
    assert "26" in message  # the auto extent that would cover them


def test_config_grid_extent_and_interpolations_are_validated():
    from configs import mnist

    config = mnist.get_config()
    assert config.analysis.grid_extent == 0.0  # auto by default
    configuration.validate_config(config, 10)
    for value in (-1.0, float("nan"), "auto", True):
        config = mnist.get_config()
        config.analysis = ml_collections.ConfigDict(
            {**config.analysis.to_dict(), "grid_extent": value}
        )
        with pytest.raises(configuration.ConfigError, match=r"^config\.analysis\.grid_extent:"):
            configuration.validate_config(config, 10)
    for pairs in (((1, 2, 3),), (1, 2), ((1.5, 2),), ((-1, 2),)):
        config = mnist.get_config()
        config.analysis.interpolations = pairs
        with pytest.raises(configuration.ConfigError, match=r"^config\.analysis\.interpolations"):
            configuration.validate_config(config)
    config = mnist.get_config()
    config.analysis.interpolations = ((4, 10),)
    configuration.validate_config(config)  # K unknown yet
    with pytest.raises(configuration.ConfigError, match="10 is out of range"):
        configuration.validate_config(config, 10)
    config.analysis.interpolations = ((4, "nine"), ("0", 6))
    configuration.validate_config(config, 10)


def test_interpolation_pairs_resolve_names_and_indices():
    names = ("0", "1", "two", "3", "four")
    assert figures.interpolation_pairs((), names) == [(0, 2)]  # default 0 -> K // 2
    assert figures.interpolation_pairs(((4, "two"), ("four", 0)), names) == [(4, 2), (4, 0)]
    assert figures.interpolation_pairs((("1", 3),), names) == [(1, 3)]  # a name beats an index
    with pytest.raises(configuration.ConfigError, match=r"^config\.analysis\.interpolations:"):
        figures.interpolation_pairs((("nine", 0),), names)
    with pytest.raises(configuration.ConfigError, match=r"^config\.analysis\.interpolations:"):
        figures.interpolation_pairs(((0, 5),), names)


# ------------------------------------------------------------- the principal plane


def test_principal_plane_is_the_svd_of_the_centred_means(rng=np.random.default_rng(3)):
    """Oracle: np.linalg.svd of the centred means; axes equal up to sign, projections too."""
    means = rng.normal(size=(6, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    codes = rng.normal(size=(40, 5))
    plane = analysis.principal_plane(means, codes)
    centre = means.mean(axis=0)
    _, singular, vt = np.linalg.svd(means - centre)
    np.testing.assert_allclose(plane.centre, centre)
    for i in range(2):
        sign = np.sign(plane.basis[i] @ vt[i])
        np.testing.assert_allclose(plane.basis[i], sign * vt[i], atol=1e-12)
        np.testing.assert_allclose(
            plane.project(codes)[:, i], sign * (codes - centre) @ vt[i], atol=1e-10
        )
    np.testing.assert_allclose(plane.explained, singular[:2] ** 2 / np.sum(singular**2))
    np.testing.assert_allclose(plane.basis @ plane.basis.T, np.eye(2), atol=1e-12)


def test_principal_plane_of_centres_on_a_line_takes_its_second_axis_from_the_codes():
    """The blocks layout: K centres on one line. Axis 1 is the line; axis 2 the codes'
    principal direction orthogonal to it (oracle: SVD of the codes with the line removed)."""
    prior = priors.blocks_prior(num_classes=4, relevant_dim=2, irrelevant_dim=3)
    means = np.asarray(prior.means, np.float64)
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(300, 5)) * np.array([1.0, 1.0, 0.1, 4.0, 0.1])
    plane = analysis.principal_plane(means, codes)
    line = np.array([1.0, 1.0, 0.0, 0.0, 0.0]) / np.sqrt(2.0)
    np.testing.assert_allclose(abs(plane.basis[0] @ line), 1.0, atol=1e-9)
    residual = codes - np.outer(codes @ line, line)
    residual -= residual.mean(axis=0)
    second = np.linalg.svd(residual)[2][0]
    np.testing.assert_allclose(abs(plane.basis[1] @ second), 1.0, atol=1e-9)
    assert abs(plane.basis[0] @ plane.basis[1]) < 1e-9
    assert plane.explained[0] == pytest.approx(1.0) and plane.explained[1] == 0.0
    one_d = analysis.principal_plane(np.array([[-2.0], [3.0]]))
    np.testing.assert_allclose(one_d.basis, [[1.0], [0.0]])


# ------------------------------------------------------------- drawing


@pytest.fixture
def scatter_data():
    rng = np.random.default_rng(1)
    means = np.array([[-8.0, 0.0], [0.0, 8.0], [8.0, 0.0], [0.0, -8.0]])
    labels = rng.integers(0, 4, size=120)
    return means[labels] + rng.normal(size=(120, 2)), labels, means


def test_every_scatter_has_a_legend_naming_the_classes_in_their_colours(scatter_data):
    codes, labels, means = scatter_data
    images = np.random.default_rng(0).uniform(size=(9, 4, 4, 1))
    label_map = np.zeros((10, 10), int)
    drawn = {
        "prior_samples": plots.prior_samples(codes, labels, means, NAMES),
        "posterior_scatter": plots.posterior_scatter(codes, labels, means, NAMES),
        "figure3": plots.figure3(codes, labels, images, label_map, 10.0, means, NAMES),
        "posterior_panel": plots.posterior_panel(
            [(codes, labels, "a"), (codes, labels, "b")], means, NAMES, ncols=2
        ),
        "latent_projection": plots.latent_projection(
            np.c_[codes, codes[:, :1]],
            labels,
            np.c_[means, means[:, :1]],
            np.eye(3)[:2],
            np.zeros(3),
            class_names=NAMES,
        ),
    }
    for name, fig in drawn.items():
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert len(legends) == 1, name  # one legend a figure
        texts, colours = _legend_entries(legends[0])
        assert texts == list(NAMES), name
        assert colours == _class_colours(4), name
    # Drawn points carry those colours: the scatter's label k is colour k.
    drawn["posterior_scatter"].draw_without_rendering()  # maps the labels to colours
    points = drawn["posterior_scatter"].axes[0].collections[0]
    assert [tuple(c) for c in points.get_facecolors()][:5] == [
        _class_colours(4)[k][:3] + (0.8,) for k in labels[:5]
    ]


def test_figure3_panels_share_one_window(scatter_data):
    """Read back from the axes: the three panels' limits equal the coarser grid's cells."""
    codes, labels, means = scatter_data
    codes = codes * 3.0  # some codes beyond the grid: they must not widen one panel only
    extent, size = 12.0, 5
    images = np.random.default_rng(0).uniform(size=(size * size, 4, 4, 1))
    fig = plots.figure3(codes, labels, images, np.zeros((40, 40), int), extent, means, NAMES)
    fig.draw_without_rendering()
    half = extent + extent / (size - 1)  # grid half-width + half a cell of the 5 x 5 grid
    for ax in fig.axes[:3]:
        np.testing.assert_allclose(ax.get_xlim(), (-half, half))
        np.testing.assert_allclose(ax.get_ylim(), (-half, half))


@pytest.mark.parametrize("dim", [3, 5, 7])
def test_activation_bars_have_integer_ticks(dim):
    ratios = np.linspace(0.0, 0.5, 2 * dim).reshape(2, dim)
    fig = plots.activation_bars(ratios, NAMES[:2], threshold=0.1)
    fig.draw_without_rendering()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("dim,panels", [(1, 1), (3, 4), (4, 7), (6, 1)])
def test_latent_projection_panels_and_projected_points(dim, panels):
    """Panel 1 holds (z - centre) @ basis.T (oracle: the same product in NumPy, read back
    from the scatter), then one panel per pair of coordinates for d <= 4."""
    rng = np.random.default_rng(dim)
    means = rng.normal(size=(4, dim)) * 6.0
    labels = rng.integers(0, 4, size=50)
    codes = means[labels] + rng.normal(size=(50, dim))
    plane = analysis.principal_plane(means, codes)
    fig = plots.latent_projection(
        codes, labels, means, plane.basis, plane.centre, plane.explained, NAMES, title="t"
    )
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == panels
    expected = (codes - plane.centre) @ plane.basis.T
    np.testing.assert_allclose(axes[0].collections[0].get_offsets(), expected, atol=1e-9)
    if panels > 1:
        np.testing.assert_allclose(axes[1].collections[0].get_offsets(), codes[:, [0, 1]])
        assert axes[-1].get_xlabel() == f"$z_{{{dim - 1}}}$"
        assert axes[-1].get_ylabel() == f"$z_{{{dim}}}$"


# ------------------------------------------------------------- negative SSIM's probe


def test_results_name_what_negative_ssim_was_computed_on():
    evaluated = {
        "classification_error": np.array([0.1, 0.2]),
        "kl": np.array([1.0, 2.0]),
        "negative_ssim": np.array([0.3, 0.4]),
        "max_centre_distance": np.array([0.5, 0.6]),
        "centre_distance": np.zeros((2, 3)),
        "mean_inside_95": np.array([0.9, 0.8]),
        "negative_ssim_probe": np.array([[15.0, 169.0], [0.0, 49.0]]),
    }
    results = evaluation.summarise(
        [{}, {}],
        [1.0, 1.0],
        evaluated,
        None,
        dataset_name="d",
        epochs=1,
        train_seconds=0.0,
        devices="cpu",
    )
    ons = [m["negative_ssim_on"] for m in results["models"]]
    assert ons == [
        "decoded 13 x 13 latent grid on [-15, 15]^2",
        "reconstructions (decoded posterior-mean codes) of the first 49 test images",
    ]
    assert evaluation.scalar_row(evaluated, 0).keys() == {
        "classification_error",
        "kl",
        "negative_ssim",
        "max_centre_distance",
        "mean_inside_95",
    }  # the probe is not logged as a metric


# ------------------------------------------------------------- a run's figures


def _experiment(tmp_path, means, variances, **analysis_fields):
    """An untrained run of the tiny config on synthetic data with a custom prior."""
    from configs import mnist
    from exon_jax import experiment
    from tests.synthetic import synthetic_mnist

    means = np.asarray(means, float)
    config = mnist.get_config("tiny")
    config.prior.layout = "custom"
    config.prior.means = means.tolist()
    config.prior.variances = variances
    config.model.latent_dim = means.shape[1]
    config.model.hidden = (32, 32)
    config.analysis.grid_size = 5
    config.analysis.label_map_size = 20
    config.analysis.figure_workers = 1
    config.data.max_test = 60
    config.data.labelled_per_class = 10
    config.train.batch_unlabelled, config.train.batch_labelled = 100, 20
    for field, value in analysis_fields.items():
        config.analysis[field] = value
    dataset = synthetic_mnist(num_train=200, num_test=60, num_classes=means.shape[0])
    exp = experiment.build_experiment(config, dataset)
    states = experiment.init_states(exp)
    return exp, states, experiment.evaluate_states(exp, states)


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory):
    """d = 3, four classes: two on each side of the origin along z_3 (an odd/even style)."""
    means = [[6.0, 0.0, 4.0], [-6.0, 0.0, 4.0], [0.0, 6.0, -4.0], [0.0, -6.0, -4.0]]
    return _experiment(
        tmp_path_factory.mktemp("d3"), means, 1.0, interpolations=((0, 3),), pdf=False
    )


@pytest.mark.slow  # ~50 s loaded: trains a 3-D run and draws its figures
def test_a_3d_design_gets_latent_prior_and_interpolation_figures(run_3d, tmp_path):
    exp, states, evaluated = run_3d
    directory = str(tmp_path / "figures")
    written = figures.write_run_figures(exp, states, evaluated, directory, workers=1)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(
        [
            "prior_samples.png",
            "latent.png",
            "centre_interpolation.png",
            "reconstructions.png",
            "activation_bars.png",
        ]
    )
    for path in written:
        assert open(path, "rb").read(8) == plots.PNG_SIGNATURE
    # The negative SSIM of a 3-D latent is on the test reconstructions, and results say so.
    assert evaluation.negative_ssim_on(evaluated["negative_ssim_probe"][0]) == (
        "reconstructions (decoded posterior-mean codes) of the first 25 test images"
    )


@pytest.mark.slow  # needs the 3-D run above
def test_the_latent_figure_job_projects_on_the_means_plane(run_3d, tmp_path):
    exp, states, evaluated = run_3d
    fns = figures.ModelFunctions(exp.model)
    prior = figures.prior_of(exp, 0)
    jobs = figures.model_figure_jobs(
        exp,
        fns,
        figures.model_state(states, 0),
        0,
        np.asarray(evaluated["codes"][0]),
        prior,
        str(tmp_path),
    )
    latent = next(j for j in jobs if j.path.endswith("latent.png"))
    means, basis, centre = latent.args[2], latent.args[3], latent.args[4]
    np.testing.assert_allclose(means, np.asarray(prior.means))
    oracle = np.linalg.svd(means - means.mean(axis=0))[2][:2]
    np.testing.assert_allclose(np.abs(basis @ oracle.T), np.eye(2), atol=1e-6)
    np.testing.assert_allclose(centre, means.mean(axis=0), atol=1e-6)
    strips = next(j for j in jobs if j.path.endswith("centre_interpolation.png"))
    assert strips.args[1] == ["centre of 0 -> 3"]  # analysis.interpolations = ((0, 3),)


@pytest.fixture(scope="module")
def run_wide(tmp_path_factory):
    """The 2 x 5 design at x = +-20 (auto extent 26)."""
    prior = _wide_prior()
    return _experiment(tmp_path_factory.mktemp("wide"), np.asarray(prior.means), 4.0)


@pytest.mark.slow  # ~15 s loaded: trains a run and draws its figures
def test_a_wide_design_is_decoded_whole_by_default(run_wide, tmp_path):
    """The grid of the manifold, label map and Figure 3 is the design's +- 3 sd (26), not
    +-15; negative SSIM keeps the paper's 15 and results say so."""
    exp, states, evaluated = run_wide
    fns = figures.ModelFunctions(exp.model)
    prior = figures.prior_of(exp, 0)
    state = figures.model_state(states, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jobs = figures.model_figure_jobs(
            exp, fns, state, 0, np.asarray(evaluated["codes"][0]), prior, str(tmp_path)
        )
    by_name = {os.path.basename(j.path): j for j in jobs}
    assert by_name["figure3.png"].args[4] == pytest.approx(26.0)
    assert by_name["label_map.png"].args[1] == pytest.approx(26.0)
    assert "[-26, 26]" in by_name["manifold.png"].kwargs["title"]
    # Every designed centre lies inside the decoded grid.
    assert analysis.centres_outside(prior.means, by_name["figure3.png"].args[4]) == []
    assert evaluation.negative_ssim_on(evaluated["negative_ssim_probe"][0]) == (
        "decoded 5 x 5 latent grid on [-15, 15]^2"
    )
    # An explicit 15 draws on 15 and warns, naming the four classes left out.
    exp15 = dataclasses.replace(
        exp, spec=dataclasses.replace(exp.spec, analysis=_with(exp.analysis, grid_extent=15.0))
    )
    with pytest.warns(UserWarning, match="0 at .*4 at .*5 at .*9 at "):
        jobs = figures.model_figure_jobs(
            exp15, fns, state, 0, np.asarray(evaluated["codes"][0]), prior, str(tmp_path)
        )
    assert {os.path.basename(j.path): j for j in jobs}["figure3.png"].args[4] == 15.0


def _with(settings, **changes):
    return dataclasses.replace(settings, **changes)


def _fake_draw(job):
    """Writes a job's files without drawing (the wiring under test, not Matplotlib)."""
    for path in figure_workers.job_files(job):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"figure")
    return job.path


@pytest.mark.slow  # needs the wide run above
def test_analyze_replaces_what_it_wrote_before(run_wide, tmp_path, monkeypatch):
    """PDFs of a first write are gone after a write with pdf off; files the figures did not
    write (curves.png) stay; a directory written by the earlier code (no record) loses its
    stale PDFs too."""
    monkeypatch.setattr(figure_workers, "draw_job", _fake_draw)
    exp, states, evaluated = run_wide
    directory = tmp_path / "figures"
    with_pdf, no_pdf = (
        dataclasses.replace(
            exp, spec=dataclasses.replace(exp.spec, analysis=_with(exp.analysis, pdf=pdf))
        )
        for pdf in (True, False)
    )
    first = figures.write_run_figures(with_pdf, states, evaluated, str(directory), workers=1)
    assert len(first) == 6
    assert all(os.path.exists(plots.pdf_path(p)) for p in first)
    (directory / "curves.png").write_bytes(b"not ours")
    second = figures.write_run_figures(no_pdf, states, evaluated, str(directory), workers=1)
    assert sorted(second) == sorted(first)
    assert sorted(os.listdir(directory)) == sorted(
        [os.path.basename(p) for p in second] + ["curves.png", figures.RECORD_OF_FIGURES]
    )
    with open(directory / figures.RECORD_OF_FIGURES) as f:
        assert sorted(json.load(f)) == sorted(os.path.basename(p) for p in second)
    # Written by the code before the record: stale PDFs of its figure names are removed.
    os.remove(directory / figures.RECORD_OF_FIGURES)
    (directory / "manifold.pdf").write_bytes(b"stale")
    (directory / "interpolation.pdf").write_bytes(b"stale")
    figures.write_run_figures(no_pdf, states, evaluated, str(directory), workers=1)
    assert not [n for n in os.listdir(directory) if n.endswith(".pdf")]
    assert (directory / "curves.png").read_bytes() == b"not ours"


def test_replace_written_keeps_other_files_and_point_directories(tmp_path):
    """Unit: the record names what goes; a d != 2 directory without a record keeps an
    `interpolation.png` (experiments/activated_subspace.py writes one there)."""
    for name in ("a.png", "a.pdf", "p/b.png", "p/b.pdf", "interpolation.png", "x.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b".")
    earlier = figures.EARLIER_FIGURES[0] + figures.EARLIER_GRID_FIGURES
    assert figures.replace_written(str(tmp_path), [str(tmp_path / "a.png")], earlier) == []
    (tmp_path / "activation_bars.pdf").write_bytes(b".")
    os.remove(tmp_path / figures.RECORD_OF_FIGURES)
    removed = figures.replace_written(str(tmp_path), [str(tmp_path / "a.png")], earlier)
    assert removed == [str(tmp_path / "activation_bars.pdf")]
    assert (tmp_path / "interpolation.png").exists()
    figures.replace_written(
        str(tmp_path), [str(tmp_path / "a.png"), str(tmp_path / "p" / "b.png")], earlier
    )
    removed = figures.replace_written(str(tmp_path), [str(tmp_path / "a.png")], earlier)
    assert removed == [str(tmp_path / "p" / "b.png")]
    assert sorted(p.name for p in tmp_path.rglob("*.p*")) == [
        "a.pdf",
        "a.png",
        "b.pdf",
        "interpolation.png",
        "x.png",
    ]


def test_prior_of_is_the_models_prior_indexed_on_the_host(run_wide):
    """Oracle: the run's design (the 2 x 5 centres, variance 4, equal weights); taking it
    compiles nothing (it was two small programs, one per leaf shape)."""
    exp, _, _ = run_wide
    prior, lowered = count_lowerings(lambda: figures.prior_of(exp, 0), clear_caches=True)
    assert lowered == 0
    assert all(isinstance(leaf, np.ndarray) for leaf in prior)
    np.testing.assert_array_equal(prior.means, np.asarray(_wide_prior().means))
    np.testing.assert_array_equal(prior.variances, np.full((10, 2), 4.0, np.float32))
    np.testing.assert_allclose(prior.log_weights, np.full(10, -np.log(10.0)), rtol=1e-6)
