"""The CIFAR-10 config trains end to end on generated CIFAR-shaped data."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cifar10
from exon_jax import configuration, experiment, saved_run, training
from exon_jax import train as train_lib
from tests.synthetic import synthetic_cifar, synthetic_mnist


def tiny_cifar_config():
    config = cifar10.get_config()
    config.data.labelled_per_class = 5
    config.train.epochs = 2
    config.train.batch_unlabelled = 50
    config.train.batch_labelled = 10
    config.train.checkpoint_every = 1
    config.train.eval_every = 2
    config.pretrain.epochs = 1
    config.pretrain.batch_size = 25
    config.analysis.figures = False
    return config


@pytest.mark.slow  # ~1 min of XLA:CPU convolutions; run with -m slow
def test_cifar_config_trains_and_loss_falls(tmp_path):
    """Classifier pre-training, then EXoN with the conv nets: the loss falls, results written."""
    dataset = synthetic_cifar(num_train=200, num_test=50)
    results = training.train_and_evaluate(
        tiny_cifar_config(), str(tmp_path), dataset, progress=False
    )
    with open(tmp_path / "metrics.jsonl") as f:
        losses = [json.loads(line)["train/loss"] for line in f]
    assert losses[-1] < losses[0]
    assert os.path.isdir(tmp_path / "pretrain_checkpoints" / "1")
    model = results["models"][0]
    assert np.isfinite(model["kl"]) and model["kl"] > 0
    # The reported error is the restored classifier's on the 50 test images, recomputed
    # here from the checkpoint: argmax of q(y|x) in eval mode against the stored labels.
    exp, states, meta = saved_run.restore_run(str(tmp_path), dataset=dataset)
    assert meta["epoch"] == 2
    state = train_lib.unstack_tree(states, 0) if np.ndim(states.step) else states
    logits, _, _ = jax.jit(train_lib.make_eval_forward(exp.model))(
        state, jnp.asarray(dataset.test.images)
    )
    wrong = np.argmax(np.asarray(logits), axis=-1) != dataset.test.labels
    assert model["classification_error"] == pytest.approx(wrong.mean(), abs=1e-6)


def test_conv_network_refuses_mnist_shapes():
    """The Table 1 networks are for 32x32x3 images; MNIST shapes are refused by name."""
    config = tiny_cifar_config()
    with pytest.raises(configuration.ConfigError, match="model.network"):
        experiment.build_experiment(config, synthetic_mnist(num_train=500, num_test=100))
