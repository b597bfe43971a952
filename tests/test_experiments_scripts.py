"""Smoke tests of the experiments/ scripts on tiny runs trained once per fixture.

Each script's `main(workdir, out, dataset)` restores a checkpoint written by
`training.train_and_evaluate` on generated MNIST-shaped data and must write its
figures and JSON without training; numbers are checked against the training run's
own results.json / sweep_results.json and against NumPy.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import mnist, mnist_blocks
from experiments import activated_subspace, mnist_figures, sweep_figures
from exon_jax import configuration, figures, metrics, saved_run, training
from exon_jax import batching
from exon_jax import data as data_lib
from tests.synthetic import synthetic_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset():
    return synthetic_mnist(num_train=1200, num_test=200)


def tiny_config():
    config = mnist.get_config("tiny")
    config.train.epochs = 1
    config.analysis.figures = False
    config.analysis.grid_size = 7  # eq. 19 over 49 decodings instead of 169: faster evaluation
    return config


def train(config, workdir, dataset):
    results = training.train_and_evaluate(config, str(workdir), dataset, progress=False)
    return str(workdir), results


def checkpoint_listing(workdir):
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, dataset):
    config = tiny_config()
    config.analysis.pdf = True  # not the default: the figures rebuilt from it write PDFs too
    return train(config, tmp_path_factory.mktemp("single"), dataset)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, dataset):
    config = tiny_config()
    config.sweep.lambda1 = (1.0, 10.0)
    config.sweep.lambda2 = (0.5, 1.1)
    config.sweep.seed = (0, 1)
    return train(config, tmp_path_factory.mktemp("grid"), dataset)


@pytest.fixture(scope="module")
def blocks_run(tmp_path_factory, dataset):
    config = mnist_blocks.get_config()
    config.model.latent_dim = 16
    config.train.epochs = 1
    config.train.batch_unlabelled, config.train.batch_labelled = 250, 50
    config.data.labelled_per_class = 10
    config.data.max_unlabelled = 0
    config.sweep.epsilon = (0.02, 0.5)
    config.analysis.figures = False
    config.analysis.grid_size = 7
    return train(config, tmp_path_factory.mktemp("blocks"), dataset)


@pytest.mark.slow  # ~10 s; figures after a restore: tests/test_host_loop.py
def test_mnist_figures_rebuilds_run_figures(single_run, dataset):
    workdir, results = single_run
    before = checkpoint_listing(workdir)
    out = mnist_figures.main(workdir, dataset=dataset)
    assert checkpoint_listing(workdir) == before  # restored, not trained
    directory = os.path.join(workdir, "figures")
    for name in (
        "prior_samples.png",
        "posterior.png",
        "manifold.png",
        "label_map.png",
        "figure3.png",
        "interpolation.png",
    ):
        assert os.path.join(directory, name) in out["figures"]
        assert os.path.getsize(os.path.join(directory, name)) > 0
        assert os.path.getsize(os.path.join(directory, name[:-4] + ".pdf")) > 0
    with open(os.path.join(directory, "figure_metrics.json")) as f:
        saved = json.load(f)
    model, trained = saved["models"][0], results["models"][0]
    assert saved["epoch"] == 1
    assert set(model["centre_distance_sd"]) == set(dataset.class_names)
    for key in ("classification_error", "kl", "negative_ssim", "max_centre_distance_sd"):
        np.testing.assert_allclose(model[key], trained[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # trains a 4-model sweep and draws its figures
def test_sweep_figures_heatmaps_and_seed_table(grid_run, dataset, tmp_path):
    workdir, results = grid_run
    out = sweep_figures.main(workdir, out=str(tmp_path), dataset=dataset)
    for name in (
        "heatmap_kl.png",
        "heatmap_negative_ssim.png",
        "heatmap_classification_error.png",
        "posterior_panel.png",
        "heatmap_values.json",
        "seed_table.csv",
        "seed_table.md",
    ):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "heatmap_values.json") as f:
        heat = json.load(f)
    assert (heat["row_field"], heat["col_field"]) == ("lambda1", "lambda2")
    assert heat["rows"] == [1.0, 10.0] and heat["cols"] == [0.5, 1.1]
    assert set(heat["metrics"]) == {"kl", "negative_ssim", "classification_error"}
    assert np.array_equal(heat["models_per_cell"], [[2, 2], [2, 2]])

    # Independent oracle: the per-model numbers written by training, grouped here.
    trained = results["models"]

    def over_seeds(metric, lambda1, lambda2):
        return np.array(
            [
                m[metric]
                for m in trained
                if m["point"]["lambda1"] == lambda1 and m["point"]["lambda2"] == lambda2
            ]
        )

    for metric in ("kl", "negative_ssim", "classification_error"):
        expected = [[over_seeds(metric, a, b).mean() for b in heat["cols"]] for a in heat["rows"]]
        np.testing.assert_allclose(heat["metrics"][metric], expected, rtol=1e-4, atol=1e-6)

    with open(tmp_path / "seed_table.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:
        assert row["num_seeds"] == "2" and row["seeds"] == "0;1"
        for metric in ("classification_error", "kl", "negative_ssim"):
            values = over_seeds(metric, float(row["lambda1"]), float(row["lambda2"]))
            assert values.size == 2
            np.testing.assert_allclose(
                float(row[f"{metric}_mean"]), values.mean(), rtol=1e-4, atol=1e-6
            )
            np.testing.assert_allclose(
                float(row[f"{metric}_std"]), values.std(ddof=1), rtol=1e-3, atol=1e-6
            )
    # The std is over seeds, not over the whole grid: the KLs of lambda1 = 1 and 10 differ a lot.
    all_kl = np.array([m["kl"] for m in trained])
    assert max(float(r["kl_std"]) for r in rows) < all_kl.std(ddof=1)
    assert "±" in (tmp_path / "seed_table.md").read_text()
    assert out["seed_table"] is not None and len(out["seed_table"]) == 4


@pytest.mark.slow  # ~1 min: trains its own 4-model sweep; strips are also tested in test_plots
def test_sweep_figures_predesign_strips(tmp_path_factory, tmp_path):
    """A two-component distance sweep gets the Figure 9 strips (rows by ascending distance)
    and distance-indexed tables."""
    dataset = synthetic_mnist(num_train=600, num_test=100, num_classes=2)
    config = tiny_config()
    config.prior.layout = "two_component"
    config.sweep.distance = (16.0, 8.0)
    workdir, _ = train(config, tmp_path_factory.mktemp("predesign"), dataset)
    out = sweep_figures.main(workdir, out=str(tmp_path), dataset=dataset)
    assert str(tmp_path / "predesign_interpolation.png") in out["figures"]
    assert os.path.getsize(tmp_path / "posterior_panel.png") > 0
    with open(tmp_path / "heatmap_values.json") as f:
        heat = json.load(f)
    assert heat["row_field"] == "distance" and heat["rows"] == [8.0, 16.0]
    assert out["seed_table"] is None and not (tmp_path / "seed_table.csv").exists()
    # The one strip builder orders rows by distance, whatever the sweep's order.
    exp, states, _ = saved_run.restore_run(workdir, dataset=dataset)
    rows, titles = figures.predesign_strips(exp, figures.ModelFunctions(exp.model), states)
    assert titles == ["distance=8", "distance=16"]
    assert len(rows) == 2 and rows[0].shape[0] == 11


@pytest.fixture(scope="module")
def subspace(blocks_run, dataset, tmp_path_factory):
    """activated_subspace.main on the blocks run, once for the tests below: (out, directory)."""
    directory = tmp_path_factory.mktemp("subspace")
    out = activated_subspace.main(
        blocks_run[0], out=str(directory), dataset=dataset, per_class=60, num_noise=4
    )
    return out, directory


@pytest.mark.slow  # ~40 s: a 16-D four-model run and its figures
def test_activated_subspace_json_and_figures(subspace, dataset):
    out, tmp_path = subspace
    with open(tmp_path / "activated_subspace.json") as f:
        report = json.load(f)
    assert report["latent_dim"] == 16 and report["threshold"] == pytest.approx(0.1)
    assert set(report["train_inputs_per_class"].values()) == {60}
    names = list(dataset.class_names)
    assert report["classes"] == [names[1], names[7]]  # the paper's automobile, horse slots
    assert [m["epsilon"] for m in report["models"]] == pytest.approx([0.02, 0.5])
    for model in report["models"]:
        assert list(model["activated_counts"]) == names
        counts = np.array(list(model["activated_counts"].values()))
        assert np.all((counts >= 0) & (counts <= 16))
        assert model["mean_activated_count"] == pytest.approx(counts.mean())
        ratios = np.array([model["F"][n] for n in names], float)
        np.testing.assert_array_equal((ratios > report["threshold"]).sum(axis=1), counts)
        assert model["diversity"]["class"] == names[1]
        change = model["pixel_change"]
        assert len(change["per_probe"]) == 2
        for probe in change["per_probe"]:
            assert probe["control_dims"] >= 1  # the control always noises some dims
            if probe["active_dims"] == 0:  # no activated dims: that noise changes nothing
                assert probe["active"] == 0.0
        sub = tmp_path / configuration.point_name(model["point"])
        for name in (
            "activation_bars_train",
            f"activation_bars_{names[1]}",
            "noise_probe",
            "interpolation",
            "traversal",
        ):
            assert os.path.getsize(sub / f"{name}.png") > 0, name
            assert os.path.getsize(sub / f"{name}.pdf") > 0, name
    trend = report["epsilon_trend"]
    assert trend["epsilon"] == pytest.approx([0.02, 0.5])
    low, high = trend["focus_activated_count"]
    assert trend["larger_epsilon_activates_more_dims"] == (None if low == high else high > low)
    for name in ("epsilon_trend.png", "epsilon_reconstructions.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert out["json_path"] == str(tmp_path / "activated_subspace.json")


@pytest.mark.slow  # shares the activated-subspace run above
def test_figure7_diversity_uses_training_images_of_the_class(blocks_run, subspace, dataset):
    """Oracle: the first 49 (grid_size^2) class-k TRAINING images encoded and decoded through
    component k with the network applied directly, then eq. 19; k = config.analysis.classes[0]."""
    workdir, _ = blocks_run
    exp, states, _ = saved_run.restore_run(workdir, dataset=dataset)
    out, _ = subspace
    k = 1  # config.analysis.classes = (1, 7)
    assert out["classes"] == [dataset.class_names[1], dataset.class_names[7]]
    state = figures.model_state(states, 0)
    variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
    images = exp.dataset.train.images[np.asarray(exp.dataset.train.labels) == k][:49]
    _, mean, _ = exp.model.apply(
        variables, batching.scale_images(images), train=False, method=exp.model.encode
    )
    decoded = exp.model.apply(variables, mean[:, k], train=False, method=exp.model.decode)
    expected = float(metrics.negative_ssim(decoded))
    model = out["models"][0]
    assert model["diversity"]["training_images"] == 49
    # atol: the measure is ~1e-3 here, and the batched SSIM's float32 sums differ by ~1e-7
    np.testing.assert_allclose(model["diversity"]["negative_ssim"], expected, rtol=1e-4, atol=1e-6)
    # Not the test-set measure the figure used to report.
    test_images = batching.scale_images(exp.dataset.test.images[:49])
    logits, test_mean, _ = exp.model.apply(
        variables, test_images, train=False, method=exp.model.encode
    )
    mixed = exp.model.apply(
        variables,
        metrics.posterior_mean_code(logits, test_mean),
        train=False,
        method=exp.model.decode,
    )
    assert abs(float(metrics.negative_ssim(mixed)) - expected) > 1e-6


@pytest.mark.slow  # needs the trained single run
def test_activated_subspace_refuses_2d_latent(single_run, dataset, tmp_path):
    with pytest.raises(ValueError, match="latent dim 2"):
        activated_subspace.main(single_run[0], out=str(tmp_path), dataset=dataset)


def test_focus_classes_by_index_or_name():
    names = data_lib.CIFAR10_CLASS_NAMES
    assert activated_subspace.focus_classes((1, 7), names) == [1, 7]  # the paper's default
    assert activated_subspace.focus_classes(("horse", 3), names) == [7, 3]
    with pytest.raises(configuration.ConfigError, match="analysis.classes"):
        activated_subspace.focus_classes(("automobil",), names)
    with pytest.raises(configuration.ConfigError, match="analysis.classes"):
        activated_subspace.focus_classes((10,), names)


def test_noise_probe_control_dims_always_differ():
    """The control noises the non-activated dims; when every dim is activated (the old
    'noise on 0 other dims' rows, identical images), the lowest-F half instead."""
    ratios = np.array([0.5, 0.01, 0.3, 0.02])
    mask = ratios > 0.1
    np.testing.assert_array_equal(activated_subspace.control_dims(mask, ratios), ~mask)
    ratios = np.array([0.9, 0.2, 0.5, 0.3, 0.4])
    control = activated_subspace.control_dims(ratios > 0.1, ratios)
    np.testing.assert_array_equal(control, [False, True, False, True, False])


def test_trend_direction_from_numbers():
    up = activated_subspace.trend_direction([0.5, 0.005, 0.02, 0.1], [7, 1, 2, 4])
    assert up["direction"] == "increasing" and up["larger_is_higher"] is True
    assert up["spearman"] == pytest.approx(1.0) and up["slope_per_log_unit"] > 0
    down = activated_subspace.trend_direction([0.1, 0.5], [3.0, 1.0])
    assert down["direction"] == "decreasing" and down["larger_is_higher"] is False
    flat = activated_subspace.trend_direction([0.1, 0.5], [2.0, 2.0])
    assert flat["direction"] == "flat" and flat["larger_is_higher"] is None
    mixed = activated_subspace.trend_direction([1, 2, 3], [1.0, 3.0, 2.0])
    assert mixed["direction"] == "mixed" and mixed["spearman"] == pytest.approx(0.5)


@pytest.mark.parametrize("script", ["mnist_figures", "sweep_figures", "activated_subspace"])
@pytest.mark.slow  # three process starts
def test_cli_wrappers(script):
    """Each script runs as `python -m experiments.<script>` from the repository root."""
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{script}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--workdir" in done.stdout and "--out" in done.stdout
