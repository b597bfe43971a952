"""A seconds-long MNIST config for smoke tests and demos (not a paper setting)."""
from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.data.labelled_per_class = 50
    config.data.max_unlabelled = 4000
    config.data.max_test = 1000
    config.train.epochs = 2
    config.train.batch_unlabelled = 500
    config.train.batch_labelled = 100
    config.train.checkpoint_every = 1
    config.train.eval_every = 1
    return config
