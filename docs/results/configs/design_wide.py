"""The issue's 2 x 5 design at x = -20 .. 20 on the tiny MNIST config (wider than +-15)."""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config("tiny")
    config.prior.layout = "custom"
    config.prior.means = [[x, y] for y in (4.0, -4.0) for x in (-20.0, -10.0, 0.0, 10.0, 20.0)]
    config.prior.variances = 4.0
    config.train.epochs = 3
    return config
