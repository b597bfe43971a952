"""Pre-design study on the MNIST 0/1 subset (Appendix 6.3.2, Figure 9).

Digits 0 and 1 only, 500 labelled per class, the rest unlabelled; a two-component
prior with centres (-r, 0), (r, 0), variance 4, and the distance 2r swept over
{8, 16, 24, 32} as one vmapped program. Other settings as configs/mnist.py.

  python main.py --config=configs/mnist_predesign.py --workdir=workdirs/mnist_predesign
  python -m experiments.sweep_figures --workdir=workdirs/mnist_predesign
"""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.data.classes = (0, 1)
    config.prior.layout = "two_component"
    config.prior.distance = 8.0
    config.sweep.distance = (8.0, 16.0, 24.0, 32.0)
    # 0/1 leave 11 665 unlabelled training images: keep 2 000 + 179 a step.
    return config
