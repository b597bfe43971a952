"""The paper's (lambda1, lambda2) grid on MNIST (Appendix 6.3.1, Figures 4 and 8).

A 5 x 5 grid, all 25 models trained as one vmapped program on the same batches.
The paper's chosen pair (100, 1.1) is one of the points. 20 epochs by default
(the paper trains 200; pass --config.train.epochs=200 for the full grid).

  python main.py --config=configs/mnist_sweep.py --workdir=workdirs/mnist_sweep
  python -m experiments.sweep_figures --workdir=workdirs/mnist_sweep
"""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.train.epochs = 20
    config.train.checkpoint_every = 5
    config.train.eval_every = 5
    config.sweep.lambda1 = (1.0, 10.0, 50.0, 100.0, 500.0)
    config.sweep.lambda2 = (0.1, 0.5, 1.1, 2.5, 5.0)
    config.sweep.mode = "product"
    return config
