"""The data types (`ImageSplit`, `ImageDataset`), their checks and the known class names."""

import dataclasses

import numpy as np
from exon_jax.errors import ExpectedError

SOURCES = ("auto", "files", "tfds")

MNIST_CLASS_NAMES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Class names of well-known data sets whose files carry none (IDX, a bare .npz).
FILE_DATASETS = {
    "mnist": MNIST_CLASS_NAMES,
    "fashion_mnist": FASHION_MNIST_CLASS_NAMES,
    "cifar10": CIFAR10_CLASS_NAMES,
}


class DataError(ExpectedError, ValueError):
    """Data that cannot be loaded or is malformed (shape, dtype, labels, counts)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split: images uint8 [N, H, W, C] (or float32 in [0, 1]) and labels int32 [N]."""

    images: np.ndarray  # uint8 or float32 [N, H, W, C]
    labels: np.ndarray  # int32 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """Train and test splits of one image-classification data set."""

    train: ImageSplit
    test: ImageSplit
    name: str
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes K; labels lie in [0, K)."""
        return len(self.class_names)


# ---------------------------------------------------------------- validation


def validate_split(split: ImageSplit, num_classes: int, where: str = "split") -> None:
    """Checks images [N, H, W, C] uint8 or float32 in [0, 1], labels integer [N] in [0, K).

    Raises DataError naming the problem (and `where`, e.g. "mnist train").
    """
    images, labels = split.images, split.labels
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DataError(
            f"{where}: images and labels must be numpy arrays, got "
            f"{type(images).__name__} and {type(labels).__name__}"
        )
    if images.ndim != 4:
        raise DataError(f"{where}: images must be 4-D [N, H, W, C], got shape {images.shape}")
    if images.dtype not in (np.uint8, np.float32):
        raise DataError(
            f"{where}: images must be uint8 (0..255) or float32 in [0, 1], got {images.dtype}"
        )
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D [N], got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"{where}: no examples")
    if images.dtype == np.float32:
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise DataError(
                f"{where}: float images must lie in [0, 1], found values in "
                f"[{lo}, {hi}] (store 0..255 pixels as uint8)"
            )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        raise DataError(
            f"{where}: labels must lie in [0, {num_classes}), found values in "
            f"[{lo}, {hi}] ({bad.size} bad, first at index {bad[0]})"
        )


def validate_dataset(ds: ImageDataset) -> None:
    if ds.num_classes < 1:
        raise DataError(f"{ds.name}: no class names")
    validate_split(ds.train, ds.num_classes, f"{ds.name} train")
    validate_split(ds.test, ds.num_classes, f"{ds.name} test")
    if ds.train.images.shape[1:] != ds.test.images.shape[1:]:
        raise DataError(
            f"{ds.name}: train images are {ds.train.images.shape[1:]} but test "
            f"images are {ds.test.images.shape[1:]} (H, W, C must agree)"
        )
    if ds.train.images.dtype != ds.test.images.dtype:
        raise DataError(
            f"{ds.name}: train images are {ds.train.images.dtype} but test images "
            f"are {ds.test.images.dtype}"
        )


def as_images(images: np.ndarray, where: str) -> np.ndarray:
    """[N, H, W] or [N, H, W, C]; uint8 kept, floating cast to float32 (range checked later)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32, copy=False)
    raise DataError(
        f"{where}: images must be uint8 (0..255) or float in [0, 1], got "
        f"{images.dtype} (convert 0..255 pixels with .astype(np.uint8))"
    )


def make_split(images, labels) -> ImageSplit:
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int32)
    return ImageSplit(images=np.asarray(images), labels=labels)


def short_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__
