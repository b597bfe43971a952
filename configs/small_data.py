"""A template for a small data set of one's own (a folder of images or an .npz, see the
README's "Your own data"): the paper's MNIST model with sizes that adapt to the data.

`data.labelled_per_class = 0` labels a tenth of the smallest class (at least one image a
class: `configuration.adapted_labelled_per_class`); `train.batch_unlabelled = 0` and
`train.batch_labelled = 0` give about ten steps an epoch with labelled images in the data's
proportion (`configuration.adapted_batches`); the circle prior has one component per class
of the data. Any of them may be set by hand instead.

  python main.py --config=configs/small_data.py --config.data.path=/path/to/my_images \
      --workdir=workdirs/my_images
"""

from configs import mnist


def get_config(arg=None):
    config = mnist.get_config(arg)
    config.data.name = "my_images"
    config.data.source = "files"
    config.data.labelled_per_class = 0
    config.train.batch_unlabelled = 0
    config.train.batch_labelled = 0
    config.train.epochs = 100
    config.train.eval_every = 10
    config.train.checkpoint_every = 10
    return config
