"""End-to-end training on a small slice of real MNIST: learning, resume, errors."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from configs import mnist as mnist_config
from exon_jax import configuration, data as data_lib, experiment, saved_run, training
from tests.synthetic import mnist_slice, small_mnist_config

MNIST_NPZ = os.path.join(os.path.dirname(__file__), "..", "data", "mnist", "mnist.npz")
pytestmark = pytest.mark.skipif(
    not os.path.exists(MNIST_NPZ), reason="run `python scripts/fetch_mnist.py` first"
)


@pytest.fixture(scope="module")
def small_mnist():
    """6 000 training and 1 000 test images of the real MNIST."""
    return mnist_slice(6000, 1000)


def small_config(epochs=4):
    return small_mnist_config(epochs, labelled_per_class=50)


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def one_epoch_run(small_mnist, tmp_path_factory):
    """One epoch (12 steps of 500 + 100 images) of configs/mnist.py on the slice, trained
    once for the tests of this module that only read a finished run."""
    workdir = tmp_path_factory.mktemp("one_epoch")
    results = training.train_and_evaluate(
        small_config(epochs=1), str(workdir), small_mnist, progress=False
    )
    return workdir, results


def test_one_epoch_learns(one_epoch_run):
    """EXoN learns: after one epoch on 6 000 images (100 labelled) the test error is ~0.30
    (measured 0.301); chance is 0.9, and with the update zeroed (the gradients multiplied by
    0 in TrainState.apply_gradients) the same run ends at 0.91, with the labelled
    cross-entropy term zeroed in losses.exon_objective at 0.874. Threshold 0.5."""
    workdir, results = one_epoch_run
    model = results["models"][0]
    assert model["classification_error"] < 0.5
    assert np.isfinite(model["kl"]) and 0.0 <= model["negative_ssim"] <= 1.0
    assert os.path.exists(workdir / "config.json")
    assert any(p.startswith("events") for p in os.listdir(workdir / "tensorboard" / "model"))


@pytest.mark.slow  # ~16 s: four epochs; one_epoch_learns is the default suite's threshold
def test_short_run_learns(small_mnist, tmp_path):
    """Loss falls and test error beats chance (0.9) by a wide margin after a few epochs."""
    results = training.train_and_evaluate(
        small_config(epochs=4), str(tmp_path), small_mnist, progress=False
    )
    rows = read_metrics(str(tmp_path))
    losses = [r["train/loss"] for r in rows]
    assert losses[-1] < losses[0]
    model = results["models"][0]
    assert model["classification_error"] < 0.35
    assert np.isfinite(model["kl"]) and 0.0 <= model["negative_ssim"] <= 1.0


@pytest.mark.slow  # three runs (~10 s quiet); resume through main.py: test_preemption.py
def test_resume_equals_uninterrupted(small_mnist, tmp_path):
    """Two epochs in one go and 1 + 1 epochs with a restart end with identical parameters
    and key (1 000 unlabelled images: two steps an epoch; 100 test images)."""

    def config(epochs):
        config = small_config(epochs)
        config.data.max_unlabelled = 1000
        config.data.max_test = 100
        return config

    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    training.train_and_evaluate(config(2), straight, small_mnist, progress=False)
    training.train_and_evaluate(config(1), resumed, small_mnist, progress=False)
    training.train_and_evaluate(config(2), resumed, small_mnist, progress=False)
    _, a, meta_a = saved_run.restore_run(straight, dataset=small_mnist)
    _, b, meta_b = saved_run.restore_run(resumed, dataset=small_mnist)
    assert meta_a["epoch"] == meta_b["epoch"] == 2
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(jax.random.key_data(a.key), jax.random.key_data(b.key))
    rows = read_metrics(resumed)
    assert [r["epoch"] for r in rows] == [1, 2]


def test_evaluate_restores_checkpoint(small_mnist, one_epoch_run):
    """--mode=evaluate on a finished run reproduces its results from the checkpoint alone."""
    workdir, trained = one_epoch_run
    again = saved_run.evaluate(str(workdir), dataset=small_mnist)
    for key in ("classification_error", "kl", "negative_ssim"):
        assert again["models"][0][key] == pytest.approx(trained["models"][0][key], rel=1e-5)


def test_missing_checkpoint_is_a_clear_error(small_mnist, tmp_path):
    """Evaluating an empty workdir names the problem instead of crashing inside orbax."""
    from exon_jax.ops.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        saved_run.evaluate(str(tmp_path), dataset=small_mnist)


def test_corrupt_checkpoint_is_a_clear_error(small_mnist, one_epoch_run, tmp_path):
    """A damaged checkpoint directory gives CheckpointError naming the checkpoint."""
    from exon_jax.ops.checkpoints import CheckpointError

    shutil.copytree(one_epoch_run[0], tmp_path, dirs_exist_ok=True)
    step_dir = tmp_path / "checkpoints" / "1"
    for root, _, files in os.walk(step_dir):
        for name in files:
            if name != "_CHECKPOINT_METADATA":
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
    with pytest.raises(CheckpointError, match="1"):
        saved_run.evaluate(str(tmp_path), dataset=small_mnist)


def test_non_finite_loss_stops_training(small_mnist, tmp_path):
    """An infinite learning rate makes the loss non-finite: training stops naming the epoch."""
    config = small_config(epochs=3)
    config.optimizer.learning_rate = float("inf")
    with pytest.raises(configuration.ConfigError, match="optimizer.learning_rate"):
        training.train_and_evaluate(config, str(tmp_path), small_mnist, progress=False)


def test_diverged_parameters_are_never_checkpointed(small_mnist, tmp_path):
    """One step an epoch and lr 3e38 (float32 holds it): the step's loss, computed before
    its update, is finite, but RMSprop's first update (~ lr * 3.2) overflows the weights.
    Training stops in epoch 1 and writes no checkpoint of the inf weights."""
    config = small_config(epochs=3)
    config.data.max_unlabelled = 500
    config.optimizer.learning_rate = 3e38
    with pytest.raises(training.TrainingDiverged, match=r"epoch 1 .*no checkpoint"):
        training.train_and_evaluate(config, str(tmp_path), small_mnist, progress=False)
    rows = read_metrics(str(tmp_path))
    assert not rows or all(np.isfinite(r["train/loss"]) for r in rows)
    assert not os.path.exists(tmp_path / "checkpoints" / "1")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("loss.lambda1", -1.0, "loss.lambda1"),
        ("loss.lambda2", -0.1, "loss.lambda2"),
        ("loss.epsilon", 0.0, "loss.epsilon"),
        ("model.beta_mode", "sometimes", "model.beta_mode"),
        ("prior.layout", "spiral", "prior.layout"),
        ("data.source", "ftp", "data.source"),
        ("model.latent_dim", 3, "model.latent_dim"),
        ("prior.variance", 1e-30, r"prior.variance: must be >= 1e-06, got 1e-30"),
    ],
)
def test_invalid_config_names_the_field(field, value, message):
    """Each bad value is refused before compiling, with the field's name in the message."""
    config = mnist_config.get_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(configuration.ConfigError, match=message):
        configuration.validate_config(config)


def test_unknown_dataset_for_files_source(tmp_path):
    """A name with no files under data.dir is a DataError saying where it looked."""
    config = mnist_config.get_config()
    config.data.source = "files"
    config.data.name = "imagenet_tiny"
    config.data.dir = str(tmp_path)
    with pytest.raises(data_lib.DataError, match="imagenet_tiny"):
        experiment.build_experiment(config)


def test_batch_larger_than_data_is_refused(small_mnist):
    """A labelled batch larger than the labelled set fails with the field's name."""
    config = small_config()
    config.train.batch_labelled = 10_000
    with pytest.raises(configuration.ConfigError, match="train.batch_labelled"):
        experiment.build_experiment(config, small_mnist)


def test_two_component_prior_needs_two_classes(small_mnist):
    """The 0/1 pre-design prior on ten-class data is refused; with classes (0, 1) it builds."""
    config = small_config()
    config.prior.layout = "two_component"
    with pytest.raises(configuration.ConfigError, match="2 classes"):
        experiment.build_experiment(config, small_mnist)
    config.data.classes = (0, 1)
    exp = experiment.build_experiment(config, data_lib.select_classes(small_mnist, (0, 1)))
    assert exp.hparams.prior.means.shape == (1, 2, 2)
