"""Generated MNIST-shaped data for tests that must not depend on downloads."""

import numpy as np

from exon_jax import data as data_lib


def synthetic_mnist(num_train=1200, num_test=200, num_classes=10, seed=0):
    """Ten classes of 28x28x1 uint8 images: a class-specific bar plus noise; labels balanced."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = np.arange(n) % num_classes
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28, 1))
        for k in range(num_classes):
            images[labels == k, 2 + 2 * k : 5 + 2 * k, :, 0] = 230
        return data_lib.ImageSplit(images.astype(np.uint8), labels.astype(np.int32))

    return data_lib.ImageDataset(
        split(num_train), split(num_test), "synthetic", tuple(str(k) for k in range(num_classes))
    )


def synthetic_cifar(num_train=800, num_test=200, num_classes=10, seed=0):
    """CIFAR-shaped data: 32x32x3 uint8, each class a distinct colour blob plus noise."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 255, size=(num_classes, 3))

    def split(n):
        labels = np.arange(n) % num_classes
        rng.shuffle(labels)
        images = rng.integers(0, 50, size=(n, 32, 32, 3))
        images[:, 8:24, 8:24, :] += palette[labels][:, None, None, :] // 2
        return data_lib.ImageSplit(
            np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int32)
        )

    return data_lib.ImageDataset(
        split(num_train), split(num_test), "cifar10", tuple(f"class{k}" for k in range(num_classes))
    )


def mnist_slice(num_train: int, num_test: int, name: str = "mnist"):
    """The first images of the real MNIST (data/mnist/mnist.npz, written by `make setup`)."""
    import os

    full = data_lib.load_dataset(
        "mnist", "files", os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
    )
    return data_lib.ImageDataset(
        train=data_lib.ImageSplit(full.train.images[:num_train], full.train.labels[:num_train]),
        test=data_lib.ImageSplit(full.test.images[:num_test], full.test.labels[:num_test]),
        name=name,
        class_names=full.class_names,
    )


def small_mnist_config(epochs: int = 1, labelled_per_class: int = 50):
    """configs/mnist.py at batch 500 + 100, evaluated and checkpointed every epoch, no
    figures: the MNIST model on a slice (`mnist_slice`) in seconds."""
    from configs import mnist

    config = mnist.get_config()
    config.data.labelled_per_class = labelled_per_class
    config.train.epochs = epochs
    config.train.batch_unlabelled = 500
    config.train.batch_labelled = 100
    config.train.checkpoint_every = 1
    config.train.eval_every = 1
    config.analysis.figures = False
    return config
