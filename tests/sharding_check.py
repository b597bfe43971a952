"""Run in a subprocess with several fake CPU devices (see test_sweep.py).

Trains a small grid and a single model for one epoch on all devices and on one
device, and prints the largest parameter difference of each as JSON.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import mnist  # noqa: E402
from exon_jax import experiment  # noqa: E402
from tests.synthetic import synthetic_mnist  # noqa: E402


def train_params(config, dataset, devices):
    exp = experiment.build_experiment(config, dataset, devices=devices)
    states = experiment.init_states(exp)
    epoch = experiment.compile_epoch(exp)
    data = experiment.device_data(exp)
    states, _ = epoch(
        states,
        experiment.sharded_hparams(exp),
        data,
        jax.random.fold_in(experiment.data_key(config.data.seed), 0),
    )
    return exp, [np.asarray(x) for x in jax.tree.leaves(states.params)]


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-12)) for x, y in zip(a, b))


def main():
    dataset = synthetic_mnist(num_train=1200, num_test=200)
    report = {"devices": jax.device_count()}
    grid = mnist.get_config("tiny")
    grid.data.max_unlabelled = 0
    grid.train.batch_unlabelled, grid.train.batch_labelled = 250, 50
    grid.sweep.lambda1 = (1.0, 10.0, 50.0, 100.0)
    single = mnist.get_config("tiny")
    single.data.max_unlabelled = 0
    single.train.batch_unlabelled, single.train.batch_labelled = 251, 50  # 301: uneven split
    for name, config in (("grid", grid), ("single", single)):
        exp, many = train_params(config, dataset, jax.devices())
        _, one = train_params(config, dataset, jax.devices()[:1])
        report[name] = {
            "mesh": dict(exp.mesh.shape),
            "max_rel_difference": max_difference(many, one),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
