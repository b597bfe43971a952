"""Priors as data: files, inline arrays, the grid / groups builders and their validation."""

import json
import math

import numpy as np
import pytest
import scipy.stats

from configs import mnist as mnist_config
from exon_jax import configuration, priors


def _pairwise(means):
    means = np.asarray(means, np.float64)
    return np.linalg.norm(means[:, None] - means[None], axis=-1)


def test_file_prior_json_and_npz_build_the_same_mixture(tmp_path):
    """A .json and an .npz with the same arrays give one prior; its log density matches scipy."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(10, 2)) * 10
    variances = rng.uniform(0.5, 3.0, size=(10,))  # one variance per component
    weights = rng.dirichlet(np.ones(10))
    with open(tmp_path / "p.json", "w") as f:
        json.dump(
            {"means": means.tolist(), "variances": variances.tolist(), "weights": weights.tolist()},
            f,
        )
    np.savez(tmp_path / "p.npz", means=means, variances=variances, weights=weights)
    built = []
    for name in ("p.json", "p.npz"):
        config = mnist_config.get_config()
        config.prior.layout = "file"
        config.prior.file = str(tmp_path / name)
        configuration.validate_config(config)
        built.append(configuration.build_prior(config, 10))
    np.testing.assert_array_equal(built[0].means, built[1].means)
    z = rng.normal(size=(50, 2)) * 8
    expected = np.log(
        sum(
            w * scipy.stats.multivariate_normal(m, v * np.eye(2)).pdf(z)
            for m, v, w in zip(means, variances, weights)
        )
    )
    np.testing.assert_allclose(priors.prior_log_density(z, built[0]), expected, rtol=2e-5)


def test_custom_prior_inline_scalar_variance_uniform_weights():
    config = mnist_config.get_config()
    config.prior.layout = "custom"
    config.prior.means = tuple((float(k), 0.0) for k in range(10))
    config.prior.variances = 2.0
    prior = configuration.build_prior(config, 10)
    np.testing.assert_allclose(prior.variances, np.full((10, 2), 2.0))
    np.testing.assert_allclose(np.exp(prior.log_weights), np.full(10, 0.1), rtol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.update(means=p["means"][:9]), "K = 9 components but the data has 10"),
        (
            lambda p: p.update(means=[m + [0.0] for m in p["means"]]),
            "d = 3 but model.latent_dim = 2",
        ),
        (lambda p: p.update(variances=-1.0), "variances must be > 0"),
        (lambda p: p.update(variances=[1.0, 2.0]), "variances must be"),
        (lambda p: p.update(weights=[0.2] * 10), "weights must sum to 1"),
        (lambda p: p.update(weights=[0.0] + [1 / 9] * 9), "weights must be > 0"),
        (lambda p: p.update(means=[[float("nan"), 0.0]] + p["means"][1:]), "means must be finite"),
        (lambda p: p.pop("variances"), "missing variances"),
    ],
)
def test_bad_prior_file_names_the_file_and_the_problem(tmp_path, change, message):
    arrays = {"means": [[float(k), 0.0] for k in range(10)], "variances": 1.0}
    change(arrays)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(arrays))
    config = mnist_config.get_config()
    config.prior.layout = "file"
    config.prior.file = str(path)
    with pytest.raises(configuration.ConfigError, match="config.prior") as error:
        configuration.build_prior(config, 10)
    assert message in str(error.value)


def test_missing_or_unreadable_prior_file(tmp_path):
    config = mnist_config.get_config()
    config.prior.layout = "file"
    config.prior.file = str(tmp_path / "nope.json")
    with pytest.raises(configuration.ConfigError, match="no such file"):
        configuration.build_prior(config, 10)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    config.prior.file = str(tmp_path / "junk.npz")
    with pytest.raises(configuration.ConfigError, match="cannot be read"):
        configuration.build_prior(config, 10)


def test_grid_prior_geometry():
    """Ten classes on a 4-column grid: rows of 4, 4, 2; neighbours `spacing` apart; centred."""
    prior = priors.grid_prior(10, columns=4, spacing=5.0, variance=1.0)
    means = np.asarray(prior.means)
    np.testing.assert_allclose(means[1] - means[0], [5.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(means[4] - means[0], [0.0, -5.0], atol=1e-6)
    np.testing.assert_allclose(means[:, 0].min() + means[:, 0].max(), 0.0, atol=1e-5)
    d = _pairwise(means)
    assert d[np.triu_indices(10, 1)].min() == pytest.approx(5.0, abs=1e-5)


def test_groups_prior_puts_members_close_and_groups_far():
    prior = priors.groups_prior(
        10, ((4, 9), (3, 5, 8)), group_radius=30.0, within_distance=6.0, variance=4.0
    )
    d = _pairwise(prior.means)
    assert d[4, 9] == pytest.approx(6.0, abs=1e-4)
    for a, b in ((3, 5), (5, 8), (3, 8)):  # an equilateral triangle
        assert d[a, b] == pytest.approx(6.0, abs=1e-4)
    others = [c for c in range(10) if c not in (4, 9)]
    assert d[4, others].min() > 6.0 * 2 and d[9, others].min() > 6.0 * 2
    # 7 groups on a circle of radius 30: neighbouring singletons 2 * 30 * sin(pi / 7) apart
    assert d[0, 1] == pytest.approx(2 * 30 * math.sin(math.pi / 7), abs=1e-3)
    with pytest.raises(priors.PriorError, match="at most once"):
        priors.groups_prior(10, ((4, 9), (9, 1)))


def test_groups_and_grid_layouts_from_config():
    config = mnist_config.get_config()
    config.prior.layout = "groups"
    config.prior.groups = ((4, 9),)
    configuration.validate_config(config)
    assert _pairwise(configuration.build_prior(config, 10).means)[4, 9] == pytest.approx(8.0)
    config.prior.layout = "grid"
    assert configuration.build_prior(config, 10).means.shape == (10, 2)


def test_prior_arrays_round_trip_exactly():
    prior = priors.make_prior(np.random.default_rng(1).normal(size=(3, 4)), 0.3, [0.2, 0.3, 0.5])
    back = priors.prior_from_arrays(json.loads(json.dumps(priors.prior_to_arrays(prior))))
    np.testing.assert_array_equal(back.means, prior.means)
    np.testing.assert_array_equal(back.variances, prior.variances)
    np.testing.assert_allclose(back.log_weights, prior.log_weights, atol=1e-7)


def test_worked_example_prior_file_is_valid():
    path = configuration.resolve_path("configs/priors/mnist_4_9_apart.json")
    arrays = priors.load_prior_file(path)
    means, _, _ = priors.check_prior_arrays(
        arrays["means"], arrays["variances"], arrays.get("weights"), 10, 2
    )
    d = _pairwise(means)
    others = [c for c in range(10) if c not in (4, 9)]
    assert d[4, 9] <= d[np.ix_(others, others)][np.triu_indices(8, 1)].min() + 1e-3
    assert d[np.ix_([4, 9], others)].min() > 2 * d[4, 9]


@pytest.mark.parametrize(
    "field, value",
    [
        ("train.max_checkpoints", 0),
        ("data.max_test", -5),
        ("sweep.seed", (1.5, 1.7)),
        ("sweep.seed", (1, 1)),
        ("optimizer.learning_rate", 1e39),
        ("loss.lambda1", 1e39),
        ("loss.lambda2", float("inf")),
        ("model.beta", float("nan")),
        ("train.epochs", 2.5),
        ("data.validation", -1),
        ("seed", -3),
    ],
)
def test_silent_config_mistakes_are_refused(field, value):
    config = mnist_config.get_config()
    *path, name = field.split(".")
    node = config
    for part in path:
        node = node[part]
    with config.ignore_type():
        node[name] = value
    with pytest.raises(configuration.ConfigError, match=f"config.{field}"):
        configuration.validate_config(config)


@pytest.mark.parametrize(
    "field, value", [("analysis.posterior", "median"), ("analysis.classes", ())]
)
def test_analysis_options_are_checked(field, value):
    config = mnist_config.get_config()
    section, name = field.split(".")
    with config.ignore_type():
        config[section][name] = value
    with pytest.raises(configuration.ConfigError, match=f"config.{field}"):
        configuration.validate_config(config)
