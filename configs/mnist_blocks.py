"""Activated latent subspace on MNIST: a CPU-sized stand-in for the CIFAR-10 study.

A 16-D latent with a `blocks` prior (4 label-relevant dims, means from +6 to -6,
variance 0.1; 12 label-irrelevant dims, variance 1), the MNIST MLP networks and the
weighted Gaussian likelihood (eq. 13). Epsilon is swept over four values as one
vmapped program so the number of activated dims can be read against epsilon
(paper Figure 7). 30 epochs of the paper's MNIST batches and optimiser.

  python main.py --config=configs/mnist_blocks.py --workdir=workdirs/mnist_blocks
  python -m experiments.activated_subspace --workdir=workdirs/mnist_blocks
"""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.prior.layout = "blocks"
    config.prior.relevant_dim = 4
    config.prior.max_mean = 6.0
    config.prior.relevant_variance = 0.1
    config.prior.irrelevant_variance = 1.0
    config.model.latent_dim = 16
    config.model.beta_mode = "fixed"  # unused by the weighted Gaussian likelihood
    config.loss.likelihood = "weighted_gaussian"
    config.loss.lambda2 = 0.0
    config.sweep.epsilon = (0.005, 0.02, 0.1, 0.5)
    config.train.epochs = 30
    config.train.checkpoint_every = 10
    config.train.eval_every = 10
    return config
