"""EXoN on CIFAR-10 over epsilon, the paper's Figure 7 (Section 4.2).

configs/cifar10.py (Tables 1-2 networks, `blocks` prior with d = 300, weighted
Gaussian likelihood eq. 13, classifier pre-training) trained for every epsilon of
the weighted Gaussian in {0.005, 0.02, 0.1, 0.5} (the paper does not list its values;
these are configs/mnist_blocks.py's, around its 0.02) as one grid (a leading model
axis; on CPU the conv grid runs model by model, `train.model_axis` = auto).
`experiments/activated_subspace.py` then draws Figure 7: the number of activated
dims and the negative SSIM of the reconstructions D(mu_k(x_i)) of the training
images x_i of class k (config.analysis.classes[0], automobile) against epsilon,
and the reconstructions of an automobile and a horse for each epsilon.

Expected (paper Figure 7): more activated dims and a larger negative SSIM as epsilon
grows. Needs the data: data/cifar10/cifar-10-batches-py/ or a prepared tfds cifar10.

  python main.py --config=configs/cifar10_epsilon.py --workdir=workdirs/cifar10_epsilon
  python -m experiments.activated_subspace --workdir=workdirs/cifar10_epsilon
"""

from configs import cifar10


def get_config(arg=None):
    config = cifar10.get_config(arg)
    config.sweep.epsilon = (0.005, 0.02, 0.1, 0.5)
    return config
