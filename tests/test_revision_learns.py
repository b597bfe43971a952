"""The revised EXoN (configs/mnist100_revision.py) learns on a small slice of real MNIST.

The revision's step (conv classifier, augmentation, two mix-ups, the pseudo-label model)
costs ~0.1 s for 16 + 16 images on one CPU core, so the run is 96 steps of small
batches, driven by the library's step-wise epoch (as main.py on CPU) and scored by its
evaluation forward pass.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mnist100_revision
from exon_jax import train as train_lib
from exon_jax.revision import step as rstep
from tests.synthetic import mnist_slice
from tests.test_revision import _setup as revision_setup

MNIST_NPZ = os.path.join(os.path.dirname(__file__), "..", "data", "mnist", "mnist.npz")
pytestmark = pytest.mark.skipif(
    not os.path.exists(MNIST_NPZ), reason="run `python scripts/fetch_mnist.py` first"
)


def test_mnist100_revision_learns_on_600_images():
    """600 training images (10 labelled a class, 500 unlabelled), batches of 16 + 16, three
    epochs of 32 steps (the labelled batches cycled: `pipeline = "exon"`, one compiled
    step; the official restarting pipeline unrolls a cycle of steps and compiles for
    minutes). Measured (2 cores, loaded), after 96 steps: test error on 500 images 0.77
    (0.71 in an earlier measurement), the last epoch's labelled cross-entropy 2.16; with
    the lambda1 terms (labelled cross-entropy and mix-up) zeroed in the step's loss 0.90
    and 2.58 (after 64 steps: 0.85 and 2.25 against 0.90 and 2.77, too close, hence three
    epochs). Chance: 0.9 and log 10 = 2.30. Thresholds 0.85 and 2.4. The set-up is
    test_revision's, shared."""
    config = mnist100_revision.get_config()
    dataset = mnist_slice(600, 500)
    rs, settings, model, optimizer, hparams, data, state = revision_setup(
        dataset, config, 10, 16, 16, (28, 28, 1)
    )
    assert settings.num_labelled == 100 and settings.num_unlabelled == 500
    assert settings.steps_per_epoch == 32
    step = rstep.make_revision_train_step(model, optimizer, settings, rs)
    # One compiled step a Python call, as main.py runs convolutional networks on CPU
    # (`backend.epoch_loop`): inside a scanned epoch XLA:CPU's convolutions run ~10x slower.
    epoch = train_lib.make_stepwise_epoch(
        jax.jit(train_lib.make_indexed_step(step), donate_argnums=0), settings
    )
    cross_entropy = []
    for e in range(3):
        state, metrics = epoch(state, hparams, data, jax.random.key(e))
        cross_entropy.append(float(metrics["cross_entropy"]))
    assert int(state.step) == 96
    logits, _, _ = jax.jit(train_lib.make_eval_forward(model))(
        state, jnp.asarray(dataset.test.images)
    )
    error = float(np.mean(np.argmax(np.asarray(logits), axis=-1) != dataset.test.labels))
    assert error < 0.85, (error, cross_entropy)
    assert cross_entropy[-1] < 2.4, (error, cross_entropy)
