"""Image data: find and read local files or tfds, validate, split, identify.

Images are kept on the host as uint8 [N, H, W, C] (or float32 in [0, 1]) and
labels as int32 [N]; `batching.scale_images` turns them into float32 in [0, 1]
on device. Sources:
  files  local files for any data set name: `path` (a file or folder) when
         given, else data_dir/<name>/ or data_dir/<name>.npz. Read there: an
         .npz with train_images, train_labels, test_images, test_labels (and
         optionally class_names), MNIST-style IDX files, CIFAR-10's
         cifar-10-batches-py, the classic mnist.pkl.gz (only the pinned one,
         by sha256), or a folder of images with one sub-folder per class
         (train/<class>/*, test/<class>/*, or <class>/* with a stratified
         test hold-out).
  tfds   tensorflow_datasets by name, read with tfds.data_source (numpy out,
         no TensorFlow needed at read time).
  auto   files if present, else an already prepared tfds data set.
Nothing read at run time can execute code: .npz is read with
allow_pickle=False, and the pickles of CIFAR-10 and MNIST go through an
unpickler that admits only numpy's array constructors.

Modules: `core` (the types, their checks, known class names), `files` (the on-disk
formats), `safe_pickle`, `tfds_source`, `splits` (hold-outs, class subsets, validation,
labelled subsets, fingerprints); this package's namespace is the public API.
"""

import os
from typing import Optional

from exon_jax.data.core import (
    CIFAR10_CLASS_NAMES,
    FASHION_MNIST_CLASS_NAMES,
    FILE_DATASETS,
    MNIST_CLASS_NAMES,
    SOURCES,
    DataError,
    ImageDataset,
    ImageSplit,
    validate_split,
    validate_dataset,
)
from exon_jax.data.files import (
    IMAGE_SUFFIXES,
    MNIST_PKL_NAME,
    MNIST_PKL_SHA256,
    MNIST_PKL_SIZE,
    NPZ_KEYS,
    files_hint,
    load_files,
    read_idx,
)
from exon_jax.data.safe_pickle import unpickle_arrays
from exon_jax.data.splits import (
    dataset_fingerprint,
    holdout_counts,
    labelled_split,
    select_classes,
    split_validation,
    validation_counts,
)
from exon_jax.data.tfds_source import (
    TfdsError,
    TfdsMissingModule,
    load_tfds,
    network_unreachable,
    tfds_hint,
)

__all__ = [
    "CIFAR10_CLASS_NAMES",
    "FASHION_MNIST_CLASS_NAMES",
    "FILE_DATASETS",
    "IMAGE_SUFFIXES",
    "MNIST_CLASS_NAMES",
    "MNIST_PKL_NAME",
    "MNIST_PKL_SHA256",
    "MNIST_PKL_SIZE",
    "NPZ_KEYS",
    "SOURCES",
    "DataError",
    "ImageDataset",
    "ImageSplit",
    "dataset_fingerprint",
    "holdout_counts",
    "labelled_split",
    "load_dataset",
    "network_unreachable",
    "read_idx",
    "select_classes",
    "split_validation",
    "unpickle_arrays",
    "validate_split",
    "validation_counts",
]


# ---------------------------------------------------------------- public API


def load_dataset(
    name: str,
    source: str = "auto",
    data_dir: str = "data",
    path: str = "",
    test_fraction: float = 0.1,
    seed: int = 0,
    tfds_data_dir: Optional[str] = None,
) -> ImageDataset:
    """Loads train/test images [N, H, W, C] (uint8, or float32 in [0, 1]) and int32 labels [N].

    name: the data set's name (any string); for tfds, the tfds name.
    source: "files", "tfds" (tfds.data_source, may download and prepare), or
      "auto" (files if present, else an already prepared tfds data set; never
      downloads).
    data_dir: root of the local files: data_dir/<name>/ or data_dir/<name>.npz.
    path: a file or folder to read instead of looking under data_dir.
    test_fraction: for a folder of class folders without train/ and test/, the
      fraction of each class held out as the test split (drawn with `seed`).
    seed: seed of that hold-out.
    tfds_data_dir: tfds data_dir; None means tfds's default.
    Class names: the sub-folder names, the npz's class_names, the known names of
    mnist/fashion_mnist/cifar10, else "0".."K-1".
    Raises DataError when the data cannot be loaded or is malformed.
    """
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if path and source == "tfds":
        raise DataError(f"a data path ({path}) is read by source='files' or 'auto', not 'tfds'")
    if source == "files":
        ds = load_files(name, data_dir, path, test_fraction, seed)
        if ds is None:
            raise DataError(
                f"no local files for {name!r} under {os.path.join(data_dir, name)}/ "
                f"or at {os.path.join(data_dir, name)}.npz: "
                f"{files_hint(name, data_dir)}; {tfds_hint(name, tfds_data_dir)}"
            )
    elif source == "tfds":
        try:
            ds = load_tfds(name, tfds_data_dir, download=True)
        except TfdsMissingModule as e:
            raise DataError(f"tfds cannot serve {name!r}: {e}") from e
        except TfdsError as e:
            reason = str(e).rstrip(".")
            raise DataError(
                f"tfds could not serve {name!r}: {reason}. "
                f"Alternatively use local files (source='files'): "
                f"{files_hint(name, data_dir)}"
            ) from e
    else:
        ds = load_files(name, data_dir, path, test_fraction, seed)
        if ds is None:
            try:
                ds = load_tfds(name, tfds_data_dir, download=False)
            except TfdsError as e:
                raise DataError(
                    f"cannot load {name!r}: no local files under {os.path.join(data_dir, name)}/ "
                    f"and tfds could not serve it ({str(e).rstrip('.')}). To get the data: "
                    f"{files_hint(name, data_dir)}; {tfds_hint(name, tfds_data_dir)}"
                ) from e
    validate_dataset(ds)
    return ds
