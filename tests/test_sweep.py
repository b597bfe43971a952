"""A vmapped grid equals separate runs; sharded runs equal single-device runs."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import mnist
from exon_jax import configuration, experiment
from tests.synthetic import synthetic_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_two_epochs(config, dataset):
    exp = experiment.build_experiment(config, dataset)
    states = experiment.init_states(exp)
    epoch = experiment.compile_epoch(exp)
    data, hparams = experiment.device_data(exp), experiment.sharded_hparams(exp)
    history = []
    for e in range(2):
        states, metrics = epoch(
            states, hparams, data, jax.random.fold_in(experiment.data_key(config.data.seed), e)
        )
        history.append(np.asarray(metrics["loss"]))
    return exp, states, np.stack(history, axis=1)


@pytest.mark.slow  # ~9 s loaded: a grid and two separate runs (sweep wiring)
def test_grid_equals_separate_runs():
    """G = 4 points (lambda1 x seed) trained as one vmapped program match 4 single runs."""
    dataset = synthetic_mnist(num_train=1200, num_test=200)
    config = mnist.get_config("tiny")
    config.data.max_unlabelled = 0
    config.train.batch_unlabelled, config.train.batch_labelled = 250, 50
    config.sweep.lambda1 = (1.0, 100.0)
    config.sweep.seed = (3, 4)
    exp, grid_states, grid_losses = train_two_epochs(config, dataset)
    assert exp.num_models == 4
    for i, point in enumerate(exp.points):
        single = mnist.get_config("tiny")
        single.data.max_unlabelled = 0
        single.train.batch_unlabelled, single.train.batch_labelled = 250, 50
        single.loss.lambda1 = point["lambda1"]
        single.seed = point["seed"]
        _, states, losses = train_two_epochs(single, dataset)
        np.testing.assert_allclose(grid_losses[i], losses[0], rtol=1e-5)
        # Batched and unbatched matmuls sum in different orders; RMSprop's first steps
        # divide by the gradients' own size, so near-zero gradients turn float32 noise
        # into differences below one step (lr = 1e-3) in a few weights: atol 1e-3. The
        # losses above agree to 1e-5 and the rtol check catches any real mismatch.
        for g, s in zip(jax.tree.leaves(grid_states.params), jax.tree.leaves(states.params)):
            np.testing.assert_allclose(np.asarray(g)[i], np.asarray(s)[0], rtol=1e-3, atol=1e-3)
    # The grid really differs across points: no accidental sharing of hyper-parameters.
    assert len({round(float(l), 3) for l in grid_losses[:, -1]}) == 4


def test_sweep_points_product_and_zip():
    """Product grids enumerate every combination; zip pairs lists element by element."""
    config = mnist.get_config("tiny")
    config.sweep.lambda1 = (1.0, 2.0, 3.0)
    config.sweep.lambda2 = (0.5, 1.5)
    points = configuration.sweep_points(config)
    assert len(points) == 6 and {(p["lambda1"], p["lambda2"]) for p in points} == {
        (a, b) for a in (1.0, 2.0, 3.0) for b in (0.5, 1.5)
    }
    config.sweep.mode = "zip"
    config.sweep.lambda2 = (0.5, 1.5, 2.5)
    assert configuration.sweep_points(config) == [
        {"lambda1": 1.0, "lambda2": 0.5},
        {"lambda1": 2.0, "lambda2": 1.5},
        {"lambda1": 3.0, "lambda2": 2.5},
    ]


@pytest.mark.slow  # ~30 s; tests/test_multiprocess.py covers 4 devices in CI
def test_sharded_equals_single_device():
    """On 4 fake CPU devices, model-sharded and data-parallel runs equal one-device runs."""
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "sharding_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    assert report["grid"]["mesh"] == {"model": 4, "data": 1}
    assert report["single"]["mesh"] == {"model": 1, "data": 4}
    assert report["grid"]["max_rel_difference"] < 1e-4
    # Data parallelism reorders the batch reductions; RMSprop's first steps divide by
    # the gradients' own magnitude, so float32 reordering noise grows to ~1e-4 of the
    # weights' scale after one epoch.
    assert report["single"]["max_rel_difference"] < 2e-3
