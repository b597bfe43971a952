"""EXoN on CIFAR-10, the paper's Section 4.2 setting.

10 000 labelled (1 000 per class) + 40 000 unlabelled training images; a 300-D
latent with the `blocks` prior (100 label-relevant dims with means evenly spaced
from +6 to -6 and variance 0.1, 200 label-irrelevant dims at 0 with variance 1);
the conv encoder/decoder of the paper's Table 1 and the classifier of Table 2;
weighted Gaussian likelihood (eq. 13) with epsilon = 0.02; lambda1 = 100 (beta and
lambda2 unused); Adam lr 5e-3; 128 unlabelled + 32 labelled a step; 200 epochs;
the classifier pre-trained first for 15 epochs (Adam 2e-3, batch 128).

Needs the data: data/cifar10/cifar-10-batches-py/ or a prepared tfds cifar10.

  python main.py --config=configs/cifar10.py --workdir=workdirs/cifar10
  python -m experiments.activated_subspace --workdir=workdirs/cifar10
"""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.data.name = "cifar10"
    config.data.labelled_per_class = 1000

    config.prior.layout = "blocks"
    config.prior.relevant_dim = 100
    config.prior.max_mean = 6.0
    config.prior.relevant_variance = 0.1
    config.prior.irrelevant_variance = 1.0

    config.model.network = "conv"
    config.model.latent_dim = 300
    config.model.beta_mode = "fixed"  # unused by the weighted Gaussian likelihood

    config.loss.likelihood = "weighted_gaussian"
    config.loss.epsilon = 0.02
    config.loss.lambda1 = 100.0
    config.loss.lambda2 = 0.0

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 5e-3

    config.pretrain.epochs = 15
    config.pretrain.learning_rate = 2e-3
    config.pretrain.batch_size = 128

    config.train.batch_unlabelled = 128
    config.train.batch_labelled = 32
    config.train.checkpoint_every = 5
    config.train.eval_every = 5
    return config
