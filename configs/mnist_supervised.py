"""Ablation: the MNIST encoder trained on the 5 000 labels alone (ELBO term off).

Same network, data split, optimiser and schedule as configs/mnist.py; the loss is
(lambda1 + 1) x cross-entropy of the labelled batch, so the unlabelled images and
the designed prior play no part. Compare its classification error with EXoN's.

  python main.py --config=configs/mnist_supervised.py --workdir=workdirs/mnist_supervised
"""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.loss.objective = "supervised"
    return config
