"""A 3-D odd/even design on the tiny MNIST config: even digits on a ring at z_3 = +6, odd at -6."""

import math

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config("tiny")
    means = []
    for k in range(10):
        angle = 2 * math.pi * (k // 2) / 5
        means.append([8 * math.cos(angle), 8 * math.sin(angle), 6.0 if k % 2 == 0 else -6.0])
    config.prior.layout = "custom"
    config.prior.means = means
    config.prior.variances = 1.0
    config.model.latent_dim = 3
    config.train.epochs = 3
    config.analysis.interpolations = ((0, 1), (4, 9))
    return config
