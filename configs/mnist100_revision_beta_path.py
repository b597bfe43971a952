"""The revised EXoN's beta path on MNIST-100 (logs/mnist_100/beta_path.csv of
an-seunghwan/EXoN_official): configs/mnist100_revision.py with the fixed observation
noise beta in {0.1, 0.25, 0.5, 0.75, 1, 5, 10, 50}, eight models as one vmapped program
(`sweep.beta` maps to HParams.beta). Everything else as the base config (its docstring
lists where it follows their code rather than the paper).

Official test errors (logs/mnist_100/beta_*/result.txt), %:
  beta   0.1    0.25   0.5    0.75   1      5      10     50
  error  3.290  3.230  3.250  3.330  3.460  3.740  4.070  3.380

  python main.py --config=configs/mnist100_revision_beta_path.py --workdir=workdirs/mnist100_beta_path
"""

from configs import mnist100_revision

BETAS = (0.1, 0.25, 0.5, 0.75, 1.0, 5.0, 10.0, 50.0)


def get_config(arg=None):
    config = mnist100_revision.get_config(arg)
    config.sweep.beta = BETAS
    return config
