"""Runs the authors' own training step (an-seunghwan/EXoN_official: MNIST-100 mnist/main.py,
CIFAR-10-4000 main.py; `train`, eager TensorFlow as their main.py runs it) on request, so
that it can be timed interleaved with exon_jax's revision step (bench/revision_step.py).

Runs under the TensorFlow reference venv (NOT exon_jax's), from a clone of their repository
given by path; their modules are imported unchanged (their main.py's `os.chdir` to their
cluster's folder is made a no-op while it is imported, and their data module `preprocess`,
which needs tensorflow-datasets, is replaced by a stub: the data come from here):

  <tf python> bench/official_driver.py --official <clone> --mnist data/mnist/mnist.npz
  <tf python> bench/official_driver.py --official <clone> --dataset cifar10

Their `train(datasetL, datasetU, ...)` runs `total_length // 128` steps, each with their
augmentation (MNIST: scipy rotation per image; CIFAR-10: flip + reflect-pad crop), mix-up,
buffer-model pseudo-labels, two Adam updates and decoupled weight decay. Data, on their
[-1, 1] scale, batched by their own tf.data code: MNIST, the first 100 training images as
the labelled set (one-hot labels) and 60 000 as the unlabelled set; CIFAR-10, random
32x32x3 images (content does not change the time), 4 000 labelled and 50 000 unlabelled.

Protocol (one JSON object per line on stdout): {"ready": ..., "version", "warmup_s"} after
one warm-up call of 2 steps; then for every line "N" read from stdin their `train` runs N
steps and {"steps": N, "seconds": s} is printed. EOF ends it.
"""

import argparse
import contextlib
import json
import os
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _their_modules(folder: str):
    """Their mnist/ folder importable, `preprocess` stubbed, os.chdir a no-op."""
    # Their code imports its siblings by bare name from their clone (not exon_jax's path,
    # in another venv), so that folder goes on sys.path; nothing of theirs is edited.
    sys.path.insert(0, folder)
    sys.modules["preprocess"] = types.SimpleNamespace(fetch_dataset=None)  # type: ignore
    chdir, os.chdir = os.chdir, lambda path: None
    argv, sys.argv = sys.argv, [sys.argv[0]]
    try:
        yield
    finally:
        os.chdir, sys.argv = chdir, argv


# What their modules import beyond TensorFlow (module -> pip package); tf_keras for CIFAR-10.
THEIR_IMPORTS = {"tqdm": "tqdm", "yaml": "pyyaml", "matplotlib": "matplotlib", "scipy": "scipy"}


def missing_packages(cifar: bool) -> list[str]:
    """The pip packages their code needs that this interpreter cannot import."""
    import importlib.util

    needed = dict(THEIR_IMPORTS, **({"tf_keras": "tf_keras"} if cifar else {}))
    return [pkg for module, pkg in needed.items() if importlib.util.find_spec(module) is None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", required=True, help="root of a clone of EXoN_official")
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10"))
    ap.add_argument("--mnist", help="exon_jax's data/mnist/mnist.npz (MNIST)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    missing = missing_packages(args.dataset == "cifar10")
    if missing:
        sys.exit(
            f"error: their code needs {', '.join(missing)} in this venv "
            f"({sys.executable}): pip install {' '.join(missing)}"
        )
    if args.dataset == "cifar10":
        # Their CIFAR-10 step under Keras 3 gets no gradients ("No gradients provided for any
        # variable" at their optimizer.apply_gradients); Keras 2 (pip install tf_keras) runs it.
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    cifar = args.dataset == "cifar10"
    root = os.path.abspath(args.official)
    folder = root if cifar else os.path.join(root, "mnist")
    with _their_modules(folder):
        import main as theirs  # their main.py (CIFAR-10) or mnist/main.py
        from model import MixtureVAE

        run_args = vars(theirs.get_args())
        run_args["config_path"] = "configs/cifar10_4000.yaml" if cifar else "configs/mnist_100.yaml"
        run_args = theirs.load_config(run_args)

    num_classes = 10
    rng = np.random.default_rng(0)
    if cifar:
        shape = (32, 32, 3)
        images = rng.uniform(-1, 1, size=(50000, *shape)).astype(np.float32)
        num_labelled = 4000
        labels = rng.integers(0, num_classes, size=num_labelled)
    else:
        shape = (28, 28, 1)
        with np.load(args.mnist, allow_pickle=False) as f:
            images, labels = f["train_images"], f["train_labels"]
        images = (images.reshape(-1, *shape).astype(np.float32) - 127.5) / 127.5
        num_labelled = 100
    onehot = np.eye(num_classes, dtype=np.float32)[labels[:num_labelled]]
    dataset_l = tf.data.Dataset.from_tensor_slices((images[:num_labelled], onehot))
    dataset_u = tf.data.Dataset.from_tensor_slices((images, np.full(len(images), -1, np.int64)))

    if cifar:
        model = MixtureVAE(
            run_args,
            num_classes,
            latent_dim=run_args["latent_dim"],
            dropratio=run_args["drop_rate"],
        )
        buffer_model = MixtureVAE(
            run_args,
            num_classes,
            latent_dim=run_args["latent_dim"],
            dropratio=run_args["drop_rate"] if run_args["dropout_pseudo"] else 0,
        )
    else:
        model = MixtureVAE(run_args, num_classes, latent_dim=run_args["latent_dim"])
        buffer_model = MixtureVAE(run_args, num_classes, latent_dim=run_args["latent_dim"])
    model.build(input_shape=(None, *shape))
    buffer_model.build(input_shape=(None, *shape))
    buffer_model.set_weights(model.get_weights())
    # Keras 3's optimisers have no `lr` (their code reads it, as Keras 2 allowed): an alias.
    tf.keras.optimizers.Adam.lr = property(lambda self: self.learning_rate)
    optimizer = tf.keras.optimizers.Adam(learning_rate=run_args["learning_rate"])
    optimizer_classifier = tf.keras.optimizers.Adam(learning_rate=run_args["learning_rate"])
    if cifar:  # their main(): means dist * e_k in the first K coordinates, sigma1 / sigma2
        d = run_args["latent_dim"]
        means = np.zeros((num_classes, d))
        means[:, :num_classes] = np.eye(num_classes) * run_args["dist"]
        scale = np.ones((1, d))
        scale[0, :num_classes], scale[0, num_classes:] = run_args["sigma1"], run_args["sigma2"]
        prior_means, sigma = tf.cast(means[None], tf.float32), tf.cast(scale, tf.float32)
    else:  # their main(): the circle of radius 2 sqrt(sigma) / sin(pi / 10)
        r = 2.0 * np.sqrt(run_args["sigma"]) / np.sin(np.pi / 10.0)
        angles = np.pi * np.arange(1, 20, 2) / 10.0
        means = np.stack([r * np.cos(angles), r * np.sin(angles)], -1)
        prior_means = tf.cast(means[None], tf.float32)
        sigma = tf.cast(run_args["sigma"], tf.float32)
    beta = tf.cast(run_args["beta"], tf.float32)
    batch = run_args["batch_size"]

    def run(steps: int) -> None:
        theirs.train(
            dataset_l,
            dataset_u,
            model,
            buffer_model,
            optimizer,
            optimizer_classifier,
            1,  # an epoch that draws no reconstruction figure (reconstruct_freq 10)
            run_args,
            beta,
            prior_means,
            sigma,
            num_classes,
            steps * batch,
            0.0,
        )

    t0 = time.perf_counter()
    run(2)
    print(
        json.dumps(
            {
                "ready": True,
                "warmup_s": time.perf_counter() - t0,
                "version": f"tensorflow {tf.__version__} (eager, their {args.dataset} train)",
                "batch": [batch - run_args["labeled_batch_size"], run_args["labeled_batch_size"]],
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        run(n)
        print(json.dumps({"steps": n, "seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
