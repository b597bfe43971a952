"""Image data: load arrays from local files or tfds, validate, split, batch indices.

Images are kept as uint8 [N, H, W, C] and labels as int32 [N] on the host;
`scale_images` turns them into float32 in [0, 1] (on device, inside jit).
Sources (DESIGN.md section 6):
  files  local files under data_dir/<name>/: our converted <name>.npz
         (scripts/fetch_mnist.py writes mnist/mnist.npz), MNIST-style IDX
         files, the classic mnist.pkl.gz, or CIFAR-10's cifar-10-batches-py.
  tfds   tensorflow_datasets by name, read with tfds.data_source (numpy out,
         no TensorFlow needed at read time).
  auto   files if present, else an already prepared tfds data set.
"""
import dataclasses
import gzip
import math
import os
import pickle
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SOURCES = ("auto", "files", "tfds")

MNIST_CLASS_NAMES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
# Data sets the `files` source knows how to read, with their class names.
FILE_DATASETS = {
    "mnist": MNIST_CLASS_NAMES,
    "fashion_mnist": FASHION_MNIST_CLASS_NAMES,
    "cifar10": CIFAR10_CLASS_NAMES,
}

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR_DIR = "cifar-10-batches-py"


class DataError(ValueError):
    """Data that cannot be loaded or is malformed (shape, dtype, labels, counts)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split: images uint8 [N, H, W, C] and labels int32 [N]."""

    images: np.ndarray  # uint8 [N, H, W, C]
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
    """Checks images uint8 [N, H, W, C], labels integer [N], labels in [0, num_classes).

    Raises DataError naming the problem (and `where`, e.g. "mnist train").
    """
    images, labels = split.images, split.labels
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DataError(f"{where}: images and labels must be numpy arrays, got "
                        f"{type(images).__name__} and {type(labels).__name__}")
    if images.ndim != 4:
        raise DataError(f"{where}: images must be 4-D [N, H, W, C], got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8, got {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D [N], got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"{where}: no examples")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        raise DataError(f"{where}: labels must lie in [0, {num_classes}), found values in "
                        f"[{lo}, {hi}] ({bad.size} bad, first at index {bad[0]})")


def _validate_dataset(ds: ImageDataset) -> None:
    if ds.num_classes < 1:
        raise DataError(f"{ds.name}: no class names")
    validate_split(ds.train, ds.num_classes, f"{ds.name} train")
    validate_split(ds.test, ds.num_classes, f"{ds.name} test")
    if ds.train.images.shape[1:] != ds.test.images.shape[1:]:
        raise DataError(f"{ds.name}: train images are {ds.train.images.shape[1:]} but test "
                        f"images are {ds.test.images.shape[1:]} (H, W, C must agree)")


def _make_split(images, labels) -> ImageSplit:
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int32)
    return ImageSplit(images=np.asarray(images), labels=labels)


# --------------------------------------------------------------- local files


def _open_maybe_gz(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally .gz) into a uint8 array of the shape in its header."""
    with _open_maybe_gz(path) as f:
        blob = f.read()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if blob[2] != 0x08:
        raise DataError(f"{path}: IDX data type 0x{blob[2]:02x} unsupported (only 0x08, uint8)")
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(blob, ">u4", count=ndim, offset=4))
    size = math.prod(dims)
    if len(blob) - header != size:
        raise DataError(f"{path}: IDX header says {dims} ({size} bytes) but the file holds "
                        f"{len(blob) - header} data bytes")
    return np.frombuffer(blob, np.uint8, offset=header).reshape(dims)


def _find_idx(directory: str, stem: str) -> Optional[str]:
    alt = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte
    for base in (stem, alt):
        for suffix in ("", ".gz"):
            path = os.path.join(directory, base + suffix)
            if os.path.isfile(path):
                return path
    return None


def _load_idx_dir(directory: str) -> tuple[ImageSplit, ImageSplit]:
    paths = {k: _find_idx(directory, stem) for k, stem in _IDX_FILES.items()}
    missing = [_IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"incomplete IDX files in {directory}: missing {', '.join(missing)}")
    arrays = {k: read_idx(p) for k, p in paths.items()}
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[part + "_images"], arrays[part + "_labels"]
        if images.ndim != 3:
            raise DataError(f"{paths[part + '_images']}: expected [N, H, W] images, "
                            f"got shape {images.shape}")
        splits.append(_make_split(images[..., None], labels))
    return splits[0], splits[1]


def _pkl_pixels_to_uint8(x: np.ndarray) -> np.ndarray:
    """Float pixels [n, 784] in [0, 1] to uint8 [n, 28, 28, 1].

    The classic mnist.pkl.gz stores byte / 256, recovered exactly by x * 256;
    anything else is treated as byte / 255 and rounded.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"mnist.pkl.gz: expected [n, 784] pixel rows, got shape {x.shape}")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise DataError(f"mnist.pkl.gz: pixels must lie in [0, 1], found [{x.min()}, {x.max()}]")
    scaled = x * 256.0
    if x.size and np.abs(scaled - np.round(scaled)).max() < 1e-3 and scaled.max() <= 255.5:
        pixels = np.round(scaled)
    else:
        pixels = np.round(x * 255.0)
    return pixels.astype(np.uint8).reshape(-1, 28, 28, 1)


def _load_mnist_pkl(path: str) -> tuple[ImageSplit, ImageSplit]:
    with gzip.open(path, "rb") as f:
        try:
            (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(
                f, encoding="latin1")
        except (ValueError, TypeError) as e:
            raise DataError(f"{path}: expected ((train_x, train_y), (valid_x, valid_y), "
                            f"(test_x, test_y)): {e}") from e
    train = _make_split(_pkl_pixels_to_uint8(np.concatenate([train_x, valid_x])),
                        np.concatenate([train_y, valid_y]))
    test = _make_split(_pkl_pixels_to_uint8(test_x), test_y)
    return train, test


def _unpickle(path: str) -> dict:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _cifar_rows_to_images(rows, path: str) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != 3072:
        raise DataError(f"{path}: expected [n, 3072] rows, got shape {rows.shape}")
    return rows.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _load_cifar10_dir(directory: str) -> tuple[ImageSplit, ImageSplit, tuple[str, ...]]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [n for n in names if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise DataError(f"incomplete CIFAR-10 files in {directory}: missing {', '.join(missing)}")
    parts = {}
    for n in names[:-1]:
        path = os.path.join(directory, n)
        d = _unpickle(path)
        parts[n] = (_cifar_rows_to_images(d["data"], path), np.asarray(d["labels"]))
    meta = _unpickle(os.path.join(directory, "batches.meta"))
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                        for n in meta["label_names"])
    train = _make_split(np.concatenate([parts[n][0] for n in names[:5]]),
                        np.concatenate([parts[n][1] for n in names[:5]]))
    test = _make_split(*parts["test_batch"])
    return train, test, class_names


def _load_npz(path: str) -> tuple[ImageSplit, ImageSplit]:
    with np.load(path, allow_pickle=False) as d:
        keys = ("train_images", "train_labels", "test_images", "test_labels")
        missing = [k for k in keys if k not in d.files]
        if missing:
            raise DataError(f"{path}: missing arrays {missing} (has {d.files})")
        return (_make_split(d["train_images"], d["train_labels"]),
                _make_split(d["test_images"], d["test_labels"]))


def _files_hint(name: str, data_dir: str) -> str:
    directory = os.path.join(data_dir, name)
    if name == "mnist":
        return (f"run `python scripts/fetch_mnist.py --data-dir {data_dir}` (writes "
                f"{directory}/mnist.npz), or put IDX files (train-images-idx3-ubyte[.gz], ...) "
                f"or mnist.pkl.gz under {directory}/")
    if name == "cifar10":
        return f"extract CIFAR-10's python version so that {directory}/{_CIFAR_DIR}/ exists"
    return (f"put IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            f"t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) under {directory}/")


def _load_files(name: str, data_dir: str) -> Optional[ImageDataset]:
    """Reads local files for `name`; None when none are present. Raises DataError if broken."""
    if name not in FILE_DATASETS:
        raise DataError(f"unknown data set {name!r} for source='files'; known: "
                        f"{', '.join(sorted(FILE_DATASETS))} (other names: source='tfds')")
    directory = os.path.join(data_dir, name)
    class_names = FILE_DATASETS[name]
    npz = os.path.join(directory, name + ".npz")
    if os.path.isfile(npz):
        train, test = _load_npz(npz)
    elif any(_find_idx(directory, stem) for stem in _IDX_FILES.values()):
        train, test = _load_idx_dir(directory)
    elif name == "mnist" and os.path.isfile(os.path.join(directory, "mnist.pkl.gz")):
        train, test = _load_mnist_pkl(os.path.join(directory, "mnist.pkl.gz"))
    elif name == "cifar10" and os.path.isdir(os.path.join(directory, _CIFAR_DIR)):
        train, test, class_names = _load_cifar10_dir(os.path.join(directory, _CIFAR_DIR))
    else:
        return None
    return ImageDataset(train=train, test=test, name=name, class_names=tuple(class_names))


# ---------------------------------------------------------------------- tfds


class _TfdsError(Exception):
    pass


def _read_tfds_split(tfds, name, split, data_dir, download):
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    info = source.dataset_info
    keys = info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = ("image", "label")
    image_key, label_key = keys
    images, labels = [], []
    for i in range(len(source)):
        example = source[i]
        images.append(np.asarray(example[image_key]))
        labels.append(np.asarray(example[label_key]))
    if not images:
        raise _TfdsError(f"split {split!r} is empty")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise _TfdsError(f"split {split!r} has images of several shapes {sorted(shapes)[:3]}")
    label_feature = info.features[label_key] if label_key in info.features else None
    names = tuple(getattr(label_feature, "names", None) or ())
    return _make_split(np.stack(images), np.stack(labels)), names


def _tfds_not_prepared(tfds, name, data_dir) -> bool:
    try:
        return not tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # noqa: BLE001 - unknown names etc.: let the original error speak
        return False


def _load_tfds(name: str, data_dir: Optional[str], download: bool) -> ImageDataset:
    """Reads train and test through tfds.data_source; raises _TfdsError on any failure."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except Exception as e:  # noqa: BLE001 - any import failure means tfds cannot serve
        raise _TfdsError(f"tensorflow_datasets cannot be imported ({type(e).__name__}: {e})") from e
    try:
        train, names = _read_tfds_split(tfds, name, "train", data_dir, download)
        test, _ = _read_tfds_split(tfds, name, "test", data_dir, download)
    except _TfdsError:
        raise
    except Exception as e:  # noqa: BLE001 - tfds raises many types; report them as one
        if not download and _tfds_not_prepared(tfds, name, data_dir):
            where = data_dir or "the default tfds data_dir"
            raise _TfdsError(f"it is not prepared in {where}") from e
        msg = str(e).strip().splitlines()
        first = msg[0] if msg else ""
        if len(first) > 300:
            first = first[:300] + "..."
        raise _TfdsError(f"{type(e).__name__}: {first}") from e
    class_names = FILE_DATASETS.get(name) or names
    if not class_names:
        num = int(max(train.labels.max(), test.labels.max())) + 1
        class_names = tuple(str(i) for i in range(num))
    return ImageDataset(train=train, test=test, name=name, class_names=tuple(class_names))


def _tfds_hint(name: str, tfds_data_dir: Optional[str]) -> str:
    where = tfds_data_dir or "the default tfds data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    return (f"or use source='tfds' with a prepared tensorflow_datasets data set {name!r} in "
            f"{where} (source='tfds' tries download_and_prepare where the network allows; "
            f"preparing may need TensorFlow, which exon_jax does not install)")


# ---------------------------------------------------------------- public API


def load_dataset(name: str, source: str = "auto", data_dir: str = "data",
                 tfds_data_dir: Optional[str] = None) -> ImageDataset:
    """Loads train/test images uint8 [N, H, W, C] and labels int32 [N], validated.

    name: "mnist", "fashion_mnist" or "cifar10" for local files; any tfds
      image-classification name for tfds.
    source: "files" (under data_dir/<name>/), "tfds" (tfds.data_source, may
      download and prepare), or "auto" (files if present, else an already
      prepared tfds data set; never downloads).
    data_dir: root of the local files.
    tfds_data_dir: tfds data_dir; None means tfds's default.
    Raises DataError when the data cannot be loaded or is malformed.
    """
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "files":
        ds = _load_files(name, data_dir)
        if ds is None:
            raise DataError(f"no local files for {name!r} under {os.path.join(data_dir, name)}/: "
                            f"{_files_hint(name, data_dir)}; {_tfds_hint(name, tfds_data_dir)}")
    elif source == "tfds":
        try:
            ds = _load_tfds(name, tfds_data_dir, download=True)
        except _TfdsError as e:
            reason = str(e).rstrip(".")
            raise DataError(f"tfds could not serve {name!r}: {reason}. The data set may be "
                            f"unknown or not prepared: preparing it (download_and_prepare) "
                            f"needs the network and may need TensorFlow, which exon_jax "
                            f"does not install. "
                            f"Alternatively use local files (source='files'): "
                            f"{_files_hint(name, data_dir)}") from e
    else:
        ds = _load_files(name, data_dir) if name in FILE_DATASETS else None
        if ds is None:
            try:
                ds = _load_tfds(name, tfds_data_dir, download=False)
            except _TfdsError as e:
                files_part = (_files_hint(name, data_dir) if name in FILE_DATASETS else
                              f"local files exist only for {', '.join(sorted(FILE_DATASETS))}")
                raise DataError(
                    f"cannot load {name!r}: no local files under "
                    f"{os.path.join(data_dir, name)}/ and tfds could not serve it ({e}). "
                    f"To get the data: {files_part}; {_tfds_hint(name, tfds_data_dir)}") from e
    _validate_dataset(ds)
    return ds


def select_classes(dataset: ImageDataset, classes: Sequence[int]) -> ImageDataset:
    """Keeps only `classes`, relabelled 0..len(classes)-1 in the given order.

    Images keep their original order; class_names are subset accordingly.
    E.g. select_classes(mnist, [0, 1]) gives the MNIST 0/1 subset.
    """
    classes = [int(c) for c in classes]
    if not classes:
        raise DataError("select_classes: no classes given")
    if len(set(classes)) != len(classes):
        raise DataError(f"select_classes: repeated classes in {classes}")
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if bad:
        raise DataError(f"select_classes: classes {bad} outside [0, {dataset.num_classes})")
    lookup = np.full(dataset.num_classes, -1, np.int32)
    lookup[classes] = np.arange(len(classes), dtype=np.int32)

    def subset(split: ImageSplit) -> ImageSplit:
        new = lookup[split.labels]
        keep = new >= 0
        return ImageSplit(images=split.images[keep], labels=new[keep])

    return ImageDataset(train=subset(dataset.train), test=subset(dataset.test),
                        name=dataset.name,
                        class_names=tuple(dataset.class_names[c] for c in classes))


def labelled_split(labels: np.ndarray, num_per_class: int, seed: int,
                   num_classes: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labelled/unlabelled split of labels int [N].

    Draws num_per_class random indices of each class 0..K-1 (K = num_classes,
    default labels.max() + 1) with np.random.default_rng(seed); all the rest
    are unlabelled. Returns sorted int32 (labelled_idx [K * num_per_class],
    unlabelled_idx [N - K * num_per_class]). Raises DataError when a class has
    fewer than num_per_class examples.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise DataError(f"labelled_split: labels must be a non-empty 1-D integer array, "
                        f"got {labels.dtype} {labels.shape}")
    if int(num_per_class) != num_per_class or num_per_class < 1:
        raise DataError(f"labelled_split: num_per_class must be a positive integer, "
                        f"got {num_per_class}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"labelled_split: labels must lie in [0, {num_classes}), found "
                        f"[{labels.min()}, {labels.max()}]")
    counts = np.bincount(labels, minlength=num_classes)
    short = [(c, int(n)) for c, n in enumerate(counts) if n < num_per_class]
    if short:
        detail = ", ".join(f"class {c} has {n}" for c, n in short)
        raise DataError(f"labelled_split: {num_per_class} labelled examples per class "
                        f"requested but {detail}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(num_per_class), replace=False)
              for c in range(num_classes)]
    labelled = np.sort(np.concatenate(chosen)).astype(np.int32)
    mask = np.ones(labels.shape[0], bool)
    mask[labelled] = False
    unlabelled = np.flatnonzero(mask).astype(np.int32)
    return labelled, unlabelled


def num_steps_per_epoch(num_unlabelled: int, batch_unlabelled: int) -> int:
    """Steps in one epoch (one pass over the unlabelled set): ceil(num_unlabelled / batch)."""
    if num_unlabelled < 1 or batch_unlabelled < 1:
        raise ValueError(f"num_unlabelled ({num_unlabelled}) and batch_unlabelled "
                         f"({batch_unlabelled}) must be positive")
    return -(-int(num_unlabelled) // int(batch_unlabelled))


def _cycled_permutations(key: jax.Array, n: int, total: int) -> jax.Array:
    """First `total` entries of ceil(total / n) independent permutations of range(n)."""
    num = -(-total // n)
    keys = jax.random.split(key, num)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    return perms.reshape(-1)[:total].astype(jnp.int32)


def epoch_batch_indices(key: jax.Array, num_unlabelled: int, num_labelled: int,
                        batch_unlabelled: int, batch_labelled: int
                        ) -> tuple[jax.Array, jax.Array]:
    """Batch indices for one epoch; pure and jit-able with the four sizes static.

    Returns int32 (unlabelled [S, batch_unlabelled], labelled [S, batch_labelled]),
    S = num_steps_per_epoch(num_unlabelled, batch_unlabelled). Unlabelled: a
    permutation of range(num_unlabelled) padded with the start of a second,
    independent permutation. Labelled: independent permutations of
    range(num_labelled) concatenated (the labelled set cycled with its own
    shuffles) and cut to S * batch_labelled.
    """
    if num_labelled < 1 or batch_labelled < 1:
        raise ValueError(f"num_labelled ({num_labelled}) and batch_labelled "
                         f"({batch_labelled}) must be positive")
    steps = num_steps_per_epoch(num_unlabelled, batch_unlabelled)
    key_u, key_l = jax.random.split(key)
    unlabelled = _cycled_permutations(key_u, num_unlabelled, steps * batch_unlabelled)
    labelled = _cycled_permutations(key_l, num_labelled, steps * batch_labelled)
    return (unlabelled.reshape(steps, batch_unlabelled),
            labelled.reshape(steps, batch_labelled))


def scale_images(images: jax.Array) -> jax.Array:
    """uint8 images [..., H, W, C] (numpy or device) to float32 in [0, 1] (x / 255); jit-able."""
    return jnp.asarray(images).astype(jnp.float32) / 255.0
