"""Workflow (issue 22.4): step progress, validation every evaluation and the best checkpoint,
resuming from the stored config, TensorBoard hyper-parameters."""

import math
import os
import re

import jax.numpy as jnp
import numpy as np

from exon_jax import train, training
from tests.synthetic import small_mnist_config, synthetic_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- (a) a step-level progress bar ---------------------------------------------------------


def test_stepwise_epoch_reports_every_step():
    """`make_stepwise_epoch(progress=...)` is called once per step, in order, with that
    step's (not yet synchronised) metrics."""
    settings = train.TrainSettings(
        batch_unlabelled=10, batch_labelled=5, num_unlabelled=95, num_labelled=20
    )
    steps = math.ceil(95 / 10)  # one pass over the unlabelled set

    def step(state, hparams, data, unlabelled, labelled):
        return state + 1, {"loss": jnp.sum(unlabelled).astype(jnp.float32)}

    seen = []
    epoch = train.make_stepwise_epoch(
        step, settings, progress=lambda i, metrics: seen.append((i, metrics["loss"]))
    )
    import jax

    state, metrics = epoch(jnp.zeros(()), None, None, jax.random.key(0))
    assert [i for i, _ in seen] == list(range(1, steps + 1))
    assert int(state) == steps
    np.testing.assert_allclose(float(metrics["loss"]), np.mean([float(m) for _, m in seen]))


def _tiny(epochs, **train_fields):
    config = small_mnist_config(epochs, labelled_per_class=20)
    config.data.name = "synthetic"
    config.data.max_unlabelled = 400
    config.train.batch_unlabelled = 100
    config.train.batch_labelled = 50
    for name, value in train_fields.items():
        config.train[name] = value
    return config


def test_long_epochs_show_step_progress(tmp_path, capsys):
    """A stepwise epoch (train.epoch_loop='python') moves the bar step by step: the bar
    counts steps (400 unlabelled / 100 a batch = 4 a epoch, 2 epochs), not epochs."""
    config = _tiny(2, epoch_loop="python")
    training.run(config, str(tmp_path / "w"), synthetic_mnist(1200, 200), progress=True)
    err = capsys.readouterr().err
    assert re.search(r"\b8/8 \[.*step", err), err[-2000:]
    assert re.search(r"epoch 1/2: .*\b[1-3]/8 ", err), err[-2000:]  # inside the first epoch
    assert "0/2" not in err
