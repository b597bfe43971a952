"""The authors' revised EXoN on CIFAR-10 with 4 000 labels (an-seunghwan/EXoN_official,
root-level main.py, model.py, mixup.py, criterion.py + configs/cifar10_4000.yaml; the
values of logs/cifar10_4000/beta_0.05/args_20220422-222239.txt).

400 labelled images a class, 5 000 held out for validation, the rest unlabelled;
256-D latent, prior means e_k (1 in coordinate k < 10, 0 elsewhere: their `dist` 1) with
variance 0.1 on the first 10 coordinates and 1 on the other 246 (`sigma1`, `sigma2`);
their conv encoder (32/64/128/256 channels, Dense 1024, per-class heads), conv-transpose
decoder ending in tanh, and 13-layer CNN classifier (spatial dropout 0.1); beta = 0.05;
lambda1 = 5000, unlabelled mix-up weight ramped up over 50 epochs; flip + reflect-pad-2
crop augmentation; Adam 1e-3 (epoch 0: 0.1x for encoder/decoder, 0.2x for the
classifier); classifier learning rate halved at epochs 250, 350, 450, 550, then ramped
down to epoch 600; decoupled weight decay 5e-4; pseudo-labels without dropout
(`dropout_pseudo` False); 600 epochs.

Following their code: 96 unlabelled + 32 labelled a step (`batch_size` 128 in all); their
unlabelled set is all 50 000 training images and their epoch 50 000 // 128 = 390 steps,
here one pass over the 40 000 other images, ceil(40 000 / 96) = 417 steps;
`adjust_lr` has four milestones in the yaml (the argparse default has three).

Official test errors (logs/cifar10_4000/beta_*/result.txt), %: beta 0.01: 6.78,
0.05: 7.19, 0.1: 7.81, 0.5: 7.54, 1: 8.13.

Needs data/cifar10/cifar-10-batches-py/ or a prepared tfds cifar10; a GPU run.

  python main.py --config=configs/cifar10_4000_revision.py --workdir=workdirs/cifar10_4000_revision
"""

import numpy as np

from configs import mnist, mnist100_revision

NUM_CLASSES = 10
LATENT_DIM = 256


def prior_arrays(dist: float = 1.0, sigma1: float = 0.1, sigma2: float = 1.0):
    """Their CIFAR-10 prior: means [K, d] = dist * e_k, variances [K, d] (sigma1 on the first K)."""
    means = np.zeros((NUM_CLASSES, LATENT_DIM))
    means[:, :NUM_CLASSES] = dist * np.eye(NUM_CLASSES)
    variances = np.full((NUM_CLASSES, LATENT_DIM), sigma2)
    variances[:, :NUM_CLASSES] = sigma1
    return means, variances


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.method = "revision"
    config.revision = mnist100_revision.revision_section(
        network="cifar",
        dropout_rate=0.1,
        augmentation="cifar",
        rampup_epochs=50,
        pseudo_label_dropout=False,
        classifier_schedule="milestones",
        milestones=(250, 350, 450, 550),
        lr_gamma=0.5,
        warmup_autoencoder=0.1,
        warmup_classifier=0.2,
    )

    config.data.name = "cifar10"
    config.data.labelled_per_class = 400
    config.data.validation = 5000

    means, variances = prior_arrays()
    config.prior.layout = "custom"
    config.prior.means = means.tolist()
    config.prior.variances = variances.tolist()
    config.model.network = "conv"  # informational: the revision network is fixed
    config.model.latent_dim = LATENT_DIM
    config.model.beta_mode = "fixed"
    config.model.beta = 0.05

    config.loss.lambda1 = 5000.0
    config.loss.lambda2 = 0.0
    config.loss.hard = True

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3

    config.train.epochs = 600
    config.train.batch_unlabelled = 96
    config.train.batch_labelled = 32
    config.train.checkpoint_every = 10
    config.train.eval_every = 10
    return config
