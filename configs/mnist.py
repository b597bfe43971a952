"""EXoN on MNIST, the paper's Section 4.1 setting.

5 000 labelled (500 per class) + 55 000 unlabelled training images, a 2-D latent
with the ten-component circle prior (variance 4), MLP encoder/decoder
(200, 400, leaky ReLU 0.01), Gaussian likelihood with closed-form beta,
lambda1 = 100, lambda2 = 1.1, RMSprop lr 1e-3, 2 000 unlabelled + 179 labelled
examples a step, 200 epochs.

Expected: test classification error about 4-5 %, every class centred on its
designed component (see README for the measured figures).

  python main.py --config=configs/mnist.py --workdir=workdirs/mnist
  python main.py --config=configs/mnist.py --config.train.epochs=5 --config.loss.lambda1=10
  python main.py --config=configs/mnist.py:tiny --workdir=/tmp/tiny   # seconds-long smoke run
"""

import ml_collections


VARIANTS = ("paper", "tiny")


def get_config(arg=None):
    """The paper's MNIST config; `arg` = "tiny" (`configs/mnist.py:tiny`) gives a seconds-long
    smoke run of the same model (50 labels a class, 4 000 unlabelled, 2 epochs), not a
    paper setting."""
    variant = arg or "paper"
    if variant not in VARIANTS:
        raise ValueError(f"configs/mnist.py:{arg}: unknown variant, one of {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.seed = 0  # model initialisation and sampling noise
    config.method = "exon"  # exon (this paper) | revision (the authors' later code)

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist"
    config.data.source = "auto"  # auto | files | tfds
    config.data.dir = "data"  # files: <dir>/<name>/ (npz, IDX, CIFAR batches, image folders)
    config.data.path = ""  # files: an .npz or image folder to read instead of <dir>/<name>/
    config.data.test_fraction = 0.1  # image folder without train/ and test/: share held out as test
    config.data.validation = 0  # training images held out for model selection (0 = none)
    config.data.classes = ()  # a subset of labels, relabelled 0..n-1; () = all
    config.data.labelled_per_class = 500
    config.data.seed = 0  # labelled split and batch order (shared by a grid)
    config.data.max_unlabelled = 0  # 0 = all; a smaller number subsamples (tests, demos)
    config.data.max_test = 0  # 0 = all

    config.prior = ml_collections.ConfigDict()
    config.prior.layout = (
        "circle"  # circle | two_component | blocks | grid | groups | file | custom
    )
    config.prior.variance = 4.0
    config.prior.radius = 0.0  # 0 = 2 sqrt(variance) / sin(pi / K)
    config.prior.distance = 8.0  # two_component only
    config.prior.relevant_dim = 100  # blocks only
    config.prior.max_mean = 6.0  # blocks only
    config.prior.relevant_variance = 0.1  # blocks only
    config.prior.irrelevant_variance = 1.0  # blocks only
    config.prior.columns = 0  # grid only: 0 = ceil(sqrt(K))
    config.prior.spacing = 8.0  # grid: centre spacing; groups: distance inside a group
    config.prior.groups = ()  # groups only: e.g. ((4, 9),) puts 4 and 9 side by side
    config.prior.group_radius = 20.0  # groups only: radius of the circle of group centres
    config.prior.file = ""  # file only: .json / .npz with means, variances, weights
    config.prior.means = None  # custom only: [K, d]
    config.prior.variances = None  # custom only: [K, d], [K] or a scalar
    config.prior.weights = None  # custom only: [K] summing to 1; None = uniform

    config.model = ml_collections.ConfigDict()
    config.model.network = "mlp"  # mlp | conv
    config.model.hidden = (200, 400)
    config.model.latent_dim = 2
    config.model.beta_mode = "closed_form"  # closed_form | learned | fixed
    config.model.beta = 1.0  # fixed beta, or the initial beta when learned
    config.model.compute_dtype = "float32"  # float32 | bfloat16 (matmul inputs only)

    config.loss = ml_collections.ConfigDict()
    config.loss.objective = "exon"  # exon | supervised (ELBO switched off: ablation)
    config.loss.likelihood = "gaussian"  # gaussian | weighted_gaussian
    config.loss.lambda1 = 100.0
    config.loss.lambda2 = 1.1
    config.loss.epsilon = 0.02
    config.loss.temperature = 1.0
    config.loss.hard = False

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "rmsprop"  # rmsprop | adam
    config.optimizer.learning_rate = 1e-3

    config.pretrain = ml_collections.ConfigDict()
    config.pretrain.epochs = 0  # classifier pre-training (conv network only)
    config.pretrain.learning_rate = 2e-3
    config.pretrain.batch_size = 128

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 200
    config.train.batch_unlabelled = 2000
    config.train.batch_labelled = 179
    config.train.checkpoint_every = 20  # epochs; the last epoch is always saved
    config.train.eval_every = 10  # epochs; test metrics logged
    config.train.max_checkpoints = 3
    config.train.keep_best = False  # also keep the lowest-validation-error model (data.validation)
    config.train.model_axis = "auto"  # auto | vmap | map: how a grid's models run
    config.train.epoch_loop = "auto"  # auto | scan | python: steps in one lax.scan or per call
    config.train.dense_layout = "auto"  # auto | xla | smaller | ...: dense weight-gradient kernel
    config.train.conv_layout = "auto"  # auto (= xla) | xla | shifted: revision conv gradients

    config.sweep = ml_collections.ConfigDict()
    config.sweep.lambda1 = ()
    config.sweep.lambda2 = ()
    config.sweep.epsilon = ()
    config.sweep.distance = ()
    config.sweep.beta = ()  # fixed / initial beta (beta_mode fixed or learned)
    config.sweep.seed = ()
    config.sweep.mode = "product"  # product | zip

    config.analysis = ml_collections.ConfigDict()
    config.analysis.grid_size = 13  # decoded grid for negative SSIM (paper: 13 x 13)
    # Decoded grid on [-extent, extent]^2. 0 = auto: the figures' grid (manifold, label map,
    # Figure 3) covers every designed centre +- 3 prior sd; negative SSIM keeps the paper's
    # [-15, 15]^2. A number sets both (the figures warn if it leaves a designed centre out).
    config.analysis.grid_extent = 0.0
    config.analysis.label_map_size = 200
    config.analysis.activation_threshold = 0.1
    config.analysis.posterior = "samples"  # codes of Figures 3-4: samples z ~ q(z|x) (paper) | mean
    # Classes of the activated-subspace figures (5, 6, 7, 10, 13), label indices or class names:
    # the first is probed and measured (Figures 5-7), interpolations go first -> second
    # (Figure 10), traversals use both (Figure 13); further ones get noise probes too.
    # Default (1, 7): automobile and horse in CIFAR-10's label order, as in the paper.
    config.analysis.classes = (1, 7)
    # Interpolations of the run's figures: (from, to) pairs of label indices or class names,
    # each decoded from one designed centre to the other, e.g. ((4, 9), ("0", "6")).
    # () = class 0 -> class K // 2 (the pre-design path for two classes and d = 2).
    config.analysis.interpolations = ()
    config.analysis.figures = True
    config.analysis.figure_workers = 0  # processes drawing figures: 0 = one per core, at most 8
    config.analysis.pdf = False  # True: a PDF beside each PNG too (drawing ~1.5x as long)
    config.analysis.tensorboard_images = True  # reconstructions and decoded grid every eval_every
    if variant == "tiny":
        config.data.labelled_per_class = 50
        config.data.max_unlabelled = 4000
        config.data.max_test = 1000
        config.train.epochs = 2
        config.train.batch_unlabelled = 500
        config.train.batch_labelled = 100
        config.train.checkpoint_every = 1
        config.train.eval_every = 1
    return config
