"""The resolved run (`configuration.resolve` -> RunSpec): validated once, frozen, typed,
and the only description of the run that the code below it reads."""

import dataclasses

import numpy as np
import pytest

from exon_jax import configuration, experiment, methods, training
from tests.synthetic import small_mnist_config, synthetic_mnist


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_mnist(num_train=600, num_test=100)


def _config(epochs=1):
    config = small_mnist_config(epochs, labelled_per_class=10)
    config.train.batch_unlabelled = 100
    config.train.batch_labelled = 20
    return config


def test_spec_holds_the_config_values(synthetic):
    """Each RunSpec part against the config field it comes from and the split's sizes
    (600 images, 10 classes x 10 labels: 100 labelled, 500 unlabelled)."""
    config = _config(epochs=3)
    config.sweep.lambda1 = (1.0, 10.0)
    config.sweep.seed = (3, 4)
    config.sweep.mode = "zip"
    config.analysis.interpolations = ((1, 7),)
    exp = experiment.build_experiment(config, synthetic)
    spec = exp.spec
    assert spec.dataset.num_labelled == 100 and spec.dataset.num_unlabelled == 500
    assert spec.dataset.image_shape == (28, 28, 1) and spec.num_classes == 10
    assert spec.settings.batch_unlabelled == 100 and spec.settings.batch_labelled == 20
    assert spec.settings.steps_per_epoch == 5  # ceil(500 / 100)
    assert spec.options.epochs == 3 and spec.options.max_checkpoints == 3
    assert spec.options.epoch_loop in ("scan", "python")
    assert spec.options.model_axis in ("vmap", "map")
    assert "auto" not in (spec.layouts.dense, spec.layouts.conv)
    assert spec.points == ({"lambda1": 1.0, "seed": 3}, {"lambda1": 10.0, "seed": 4})
    assert spec.point_seeds == (3, 4)
    np.testing.assert_array_equal(np.asarray(spec.hparams.lambda1), [1.0, 10.0])
    np.testing.assert_array_equal(np.asarray(spec.hparams.lambda2), np.float32([1.1, 1.1]))
    assert spec.hparams.prior.means.shape == (2, 10, 2)
    assert spec.analysis.interpolations == ((1, 7),)
    assert spec.data.seed == 0 and spec.data.pool == "unlabelled"
    assert spec.method is methods.EXON


def test_spec_and_experiment_are_frozen(synthetic):
    exp = experiment.build_experiment(_config(), synthetic)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.spec.points = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.mesh = None  # type: ignore[misc]
    with pytest.raises(AttributeError):  # the spec's parts are read-only on the experiment
        exp.hparams = exp.spec.hparams  # type: ignore[misc]


def test_stored_priors_replace_the_configs(synthetic):
    """A restored run's recorded priors (not the config's) end up in the hparams."""
    config = _config()
    split = experiment.split_data(configuration.data_selection(config), synthetic)
    stored = [
        {
            "means": np.arange(20, dtype=np.float64).reshape(10, 2).tolist(),
            "variances": np.full((10, 2), 2.5).tolist(),
            "weights": np.full(10, 0.1).tolist(),
        }
    ]
    spec = configuration.resolve(config, split.info, stored)
    np.testing.assert_allclose(
        np.asarray(spec.hparams.prior.means)[0], np.arange(20).reshape(10, 2)
    )
    np.testing.assert_allclose(np.asarray(spec.hparams.prior.variances)[0], 2.5)


def test_validate_config_runs_once_a_training_run(synthetic, tmp_path, monkeypatch):
    calls = []
    original = configuration.validate_config
    monkeypatch.setattr(
        configuration, "validate_config", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    training.run(_config(epochs=1), str(tmp_path / "run"), synthetic, progress=False)
    assert len(calls) == 1


def test_a_methods_own_check_is_reported_by_validate_config(monkeypatch):
    """validate_config asks the method registry, not the method's name: a new method's
    `check` hook names its field."""
    probe = dataclasses.replace(
        methods.EXON, name="probe", check=lambda config: [("loss.lambda1", "probe says no")]
    )
    monkeypatch.setitem(methods.METHODS, "probe", probe)
    monkeypatch.setattr(configuration, "METHODS", tuple(methods.METHODS))
    config = _config()
    config.method = "probe"
    with pytest.raises(configuration.ConfigError, match=r"config.loss.lambda1: probe says no"):
        configuration.validate_config(config)


def test_revision_check_comes_from_its_method():
    from configs import mnist100_revision

    config = mnist100_revision.get_config()
    config.model.beta_mode = "learned"
    with pytest.raises(configuration.ConfigError, match="config.model.beta_mode: the revision"):
        configuration.validate_config(config)


def test_interpolation_class_names_are_checked_when_resolving(synthetic):
    """A class name the data set does not have is one ConfigError at resolve time (before
    anything trains), not a failure when the figures are drawn after training."""
    config = _config()
    config.analysis.interpolations = (("3", "seven"),)  # synthetic classes are "0".."9"
    with pytest.raises(configuration.ConfigError, match=r"analysis\.interpolations.*'seven'"):
        experiment.build_experiment(config, synthetic)
    config.analysis.interpolations = (("3", "7"),)
    assert experiment.build_experiment(config, synthetic).spec.analysis.interpolations == (
        ("3", "7"),
    )
