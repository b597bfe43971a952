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
"""

import dataclasses
import gzip
import hashlib
import importlib
import io
import math
import os
import pickle
import sys
import zipfile
import zlib
from typing import Any, Optional, Sequence

import numpy as np

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

# The classic mnist.pkl.gz (the one scripts/fetch_mnist.py fetches): the only
# pickle of this name that is ever unpickled.
MNIST_PKL_NAME = "mnist.pkl.gz"
MNIST_PKL_SIZE = 17051982
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


class DataError(ValueError):
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


def _validate_dataset(ds: ImageDataset) -> None:
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


def _as_images(images: np.ndarray, where: str) -> np.ndarray:
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


def _make_split(images, labels) -> ImageSplit:
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int32)
    return ImageSplit(images=np.asarray(images), labels=labels)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


# ------------------------------------------------------------ safe unpickling


def _numpy_attr(modules: Sequence[str], name: str):
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {modules}")


def _latin1_encode(text, encoding):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_RECONSTRUCT = ("numpy._core.multiarray", "numpy.core.multiarray")
_FROMBUFFER = ("numpy._core.numeric", "numpy.core.numeric")
# The only globals a pickle may name: what numpy arrays (and bytes in protocol 2) need.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    **{
        (m, "_reconstruct"): (lambda: _numpy_attr(_RECONSTRUCT, "_reconstruct"))
        for m in _RECONSTRUCT
    },
    **{(m, "_frombuffer"): (lambda: _numpy_attr(_FROMBUFFER, "_frombuffer")) for m in _FROMBUFFER},
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers, numbers, strings and numpy arrays; refuses every other class."""

    def __init__(self, file, where: str, encoding: str):
        super().__init__(file, encoding=encoding)
        self._where = where

    def find_class(self, module, name):
        make = _PICKLE_GLOBALS.get((module, name))
        if make is None:
            raise DataError(
                f"{self._where}: the pickle refers to {module}.{name}, which is not "
                f"a numpy array part; refusing to load it (it could run code)"
            )
        return make()


def unpickle_arrays(file, where: str, encoding: str = "bytes") -> Any:
    """Unpickles `file` (a binary file object) admitting only numpy arrays and plain data.

    Lists, dicts, tuples, bytes, str and numbers need no class; the only classes
    admitted are numpy's ndarray, dtype and array reconstructors. Anything else
    (os.system, builtins.exec, ...) raises DataError naming `where`, before it runs.
    """
    try:
        return _ArrayUnpickler(file, where, encoding).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt pickle raises many types
        raise DataError(f"{where}: not a readable pickle ({_short(e)})") from None


# --------------------------------------------------------------- local files


def _read_bytes(path: str) -> bytes:
    """The file's bytes, gunzipped for .gz; DataError naming the file if that fails."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({_short(e)}; corrupt or truncated?)") from None


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally .gz) into a uint8 array of the shape in its header."""
    blob = _read_bytes(path)
    if not blob:
        raise DataError(f"{path}: empty file, not an IDX file")
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
        raise DataError(
            f"{path}: IDX header says {dims} ({size} bytes) but the file holds "
            f"{len(blob) - header} data bytes (truncated or corrupt)"
        )
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
    arrays = {k: read_idx(p) for k, p in paths.items() if p is not None}
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[part + "_images"], arrays[part + "_labels"]
        if images.ndim != 3:
            raise DataError(
                f"{paths[part + '_images']}: expected [N, H, W] images, got shape {images.shape}"
            )
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
    """The pinned mnist.pkl.gz only: size and sha256 are checked before anything is unpickled."""
    size = os.path.getsize(path)
    fix = (
        "convert it to an .npz (train_images, train_labels, test_images, test_labels) or "
        "replace it with the one `python scripts/fetch_mnist.py` fetches"
    )
    if size != MNIST_PKL_SIZE:
        raise DataError(
            f"{path}: {size} bytes, not the pinned MNIST pickle ({MNIST_PKL_SIZE} "
            f"bytes); refusing to unpickle it: {fix}"
        )
    with open(path, "rb") as f:
        blob = f.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_PKL_SHA256:
        raise DataError(
            f"{path}: sha256 {digest} is not the pinned MNIST pickle's "
            f"({MNIST_PKL_SHA256}); refusing to unpickle it: {fix}"
        )
    try:
        with gzip.open(io.BytesIO(blob), "rb") as f:
            content = unpickle_arrays(f, path, encoding="latin1")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip ({_short(e)})") from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
    except (ValueError, TypeError) as e:
        raise DataError(
            f"{path}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)): {e}"
        ) from None
    train = _make_split(
        _pkl_pixels_to_uint8(np.concatenate([train_x, valid_x])), np.concatenate([train_y, valid_y])
    )
    test = _make_split(_pkl_pixels_to_uint8(test_x), test_y)
    return train, test


def _unpickle_dict(path: str) -> dict:
    """A CIFAR-10 batch pickle as a dict with str keys, through the restricted unpickler."""
    try:
        with open(path, "rb") as f:
            d = unpickle_arrays(f, path, encoding="bytes")
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({_short(e)})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _cifar_rows_to_images(rows, path: str) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != 3072:
        raise DataError(f"{path}: expected [n, 3072] rows, got shape {rows.shape}")
    return rows.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _load_cifar10_dir(directory: str) -> tuple[ImageSplit, ImageSplit, tuple[str, ...]]:
    missing = [n for n in _CIFAR_FILES if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise DataError(f"incomplete CIFAR-10 files in {directory}: missing {', '.join(missing)}")
    parts = {}
    for n in _CIFAR_FILES[:-1]:
        path = os.path.join(directory, n)
        d = _unpickle_dict(path)
        absent = [k for k in ("data", "labels") if k not in d]
        if absent:
            raise DataError(f"{path}: missing {', '.join(absent)} (has {sorted(map(str, d))})")
        parts[n] = (_cifar_rows_to_images(d["data"], path), np.asarray(d["labels"]))
    meta_path = os.path.join(directory, "batches.meta")
    meta = _unpickle_dict(meta_path)
    if "label_names" not in meta:
        raise DataError(f"{meta_path}: missing label_names")
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])
    train = _make_split(
        np.concatenate([parts[n][0] for n in _CIFAR_FILES[:5]]),
        np.concatenate([parts[n][1] for n in _CIFAR_FILES[:5]]),
    )
    test = _make_split(*parts["test_batch"])
    return train, test, class_names


def _check_zip_magic(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(6)
    if not head:
        raise DataError(f"{path}: empty file, not an .npz archive")
    if head.startswith(b"\x93NUMPY"):
        raise DataError(
            f"{path}: a single .npy array, not an .npz archive of "
            f"{', '.join(NPZ_KEYS)} (write it with np.savez)"
        )
    if not head.startswith(b"PK"):
        raise DataError(f"{path}: not an .npz (zip) archive (it starts with {head[:4]!r})")


def _npz_member(archive, key: str, path: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as e:
        if "pickle" in str(e).lower() or "object arrays" in str(e).lower():
            raise DataError(
                f"{path}: array {key!r} holds Python objects (a pickle); only plain "
                f"numeric or string arrays are read"
            ) from None
        raise DataError(f"{path}: array {key!r} is corrupt ({_short(e)})") from None
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"{path}: array {key!r} is truncated or corrupt ({_short(e)})") from None


def _load_npz(path: str) -> tuple[ImageSplit, ImageSplit, Optional[tuple[str, ...]]]:
    """(train, test, class_names or None) from an .npz; never unpickles."""
    _check_zip_magic(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise DataError(f"{path}: truncated or corrupt .npz (zip) archive ({_short(e)})") from None
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing arrays {', '.join(missing)} (it holds: "
                f"{', '.join(archive.files) or 'nothing'}); an .npz data set needs "
                f"{', '.join(NPZ_KEYS)}"
            )
        arrays = {k: _npz_member(archive, k, path) for k in NPZ_KEYS}
        names = (
            _npz_member(archive, "class_names", path) if "class_names" in archive.files else None
        )
    splits = [
        _make_split(_as_images(arrays[p + "_images"], f"{path} {p}_images"), arrays[p + "_labels"])
        for p in ("train", "test")
    ]
    class_names = None
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US" or names.size == 0:
            raise DataError(
                f"{path}: class_names must be a 1-D array of strings, got "
                f"{names.dtype} {names.shape}"
            )
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
        if len(set(class_names)) != len(class_names):
            raise DataError(f"{path}: class_names repeat a name: {list(class_names)}")
    return splits[0], splits[1], class_names


def _is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _subdirs(directory: str) -> list[str]:
    return sorted(
        n
        for n in os.listdir(directory)
        if not n.startswith(".") and os.path.isdir(os.path.join(directory, n))
    )


def _class_folders(directory: str) -> list[str]:
    """Sub-folders of `directory` that directly hold image files, sorted."""
    return [
        n
        for n in _subdirs(directory)
        if any(_is_image_file(f) for f in os.listdir(os.path.join(directory, n)))
    ]


def _read_image(path: str) -> np.ndarray:
    """One image file as uint8 [H, W] (grey) or [H, W, 3] (colour; alpha dropped)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("1", "L"):
                return np.asarray(image.convert("L"))
            if mode in ("P", "PA", "RGB", "RGBA", "RGBX", "LA", "CMYK", "YCbCr"):
                return np.asarray(image.convert("RGB"))
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
        raise DataError(
            f"{path}: cannot read the image ({_short(e)}; corrupt or truncated?)"
        ) from None
    raise DataError(
        f"{path}: image mode {mode!r} is not read (only 8-bit grey or colour); "
        f"convert it to an 8-bit PNG"
    )


def _read_class_folders(
    directory: str, classes: Sequence[str], first=None
) -> tuple[list[np.ndarray], np.ndarray, tuple]:
    """Images uint8 [H, W] or [H, W, 3] and labels int32 [N] from directory/<class>/*.

    Class-major, files sorted by name. `first` is (path, (H, W)) of the image every
    image must match in size (default: the first one read); it is returned too.
    """
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(directory, name)
        if not os.path.isdir(folder):
            continue
        files = sorted(f for f in os.listdir(folder) if _is_image_file(f))
        if not files:
            raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            path = os.path.join(folder, f)
            pixels = _read_image(path)
            if first is None:
                first = (path, pixels.shape[:2])
            elif pixels.shape[:2] != first[1]:
                raise DataError(
                    f"{path}: image is {pixels.shape[0]}x{pixels.shape[1]} (HxW) but "
                    f"{first[0]} is {first[1][0]}x{first[1][1]}; all images must "
                    f"have one size (resize them first)"
                )
            images.append(pixels)
            labels.append(label)
    if not images:
        raise DataError(f"{directory}: no images in the class folders {list(classes)}")
    return images, np.asarray(labels, np.int32), first


def _stack_images(*parts: list[np.ndarray]) -> list[np.ndarray]:
    """Each list of [H, W] / [H, W, 3] images as [N, H, W, C]; any colour image makes all colour."""
    colour = any(p.ndim == 3 for part in parts for p in part)
    if colour:
        return [
            np.stack([np.repeat(p[..., None], 3, -1) if p.ndim == 2 else p for p in part])
            for part in parts
        ]
    return [np.stack(part)[..., None] for part in parts]


def holdout_counts(counts, fraction: float) -> np.ndarray:
    """Per-class test counts [K] of a stratified hold-out from class counts [K]: round(fraction *
    n_c), clipped so each class with n_c >= 2 keeps at least one image on each side (a single
    image stays in train)."""
    n = np.asarray(counts, np.int64)
    held = np.floor(fraction * n + 0.5).astype(np.int64)
    return np.where(n >= 2, np.clip(held, 1, n - 1), 0)


def _stratified_pick(labels: np.ndarray, per_class: dict, seed: int) -> np.ndarray:
    """Boolean mask [N] choosing per_class[c] random examples of each class c (sorted classes)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.shape[0], bool)
    for c in sorted(per_class):
        members = np.flatnonzero(labels == c)
        mask[rng.choice(members, size=int(per_class[c]), replace=False)] = True
    return mask


def _load_image_tree(
    directory: str, test_fraction: float, seed: int
) -> tuple[ImageSplit, ImageSplit, tuple[str, ...]]:
    """A folder of class folders: train/<class>/* and test/<class>/*, or <class>/* held out."""
    subdirs = _subdirs(directory)
    if "train" in subdirs and "test" in subdirs:
        train_dir, test_dir = (os.path.join(directory, p) for p in ("train", "test"))
        classes = _class_folders(train_dir)
        if not classes:
            raise DataError(f"{train_dir}: no class folders with images (<class>/*.png)")
        extra = sorted(set(_class_folders(test_dir)) - set(classes))
        if extra:
            raise DataError(f"{test_dir}: class folders {extra} are not in {train_dir}")
        train_images, train_labels, first = _read_class_folders(train_dir, classes)
        test_images, test_labels, _ = _read_class_folders(test_dir, classes, first)
        train_array, test_array = _stack_images(train_images, test_images)
        return (
            _make_split(train_array, train_labels),
            _make_split(test_array, test_labels),
            tuple(classes),
        )
    if "train" in subdirs and not _class_folders(directory):
        raise DataError(
            f"{directory}: has train/ but no test/ (add test/<class>/*, or put the "
            f"class folders directly under {directory}/ to hold out a test fraction)"
        )
    classes = _class_folders(directory)
    image_list, labels, _ = _read_class_folders(directory, classes)
    (images,) = _stack_images(image_list)
    counts = np.bincount(labels, minlength=len(classes))
    held = holdout_counts(counts, test_fraction)
    test_mask = _stratified_pick(labels, dict(enumerate(held)), seed)
    if not test_mask.any():
        raise DataError(
            f"{directory}: too few images to hold out a test set (class counts {counts.tolist()})"
        )
    return (
        _make_split(images[~test_mask], labels[~test_mask]),
        _make_split(images[test_mask], labels[test_mask]),
        tuple(classes),
    )


def _read_location(location: str, name: str, test_fraction: float, seed: int):
    """(train, test, class_names or None) from a file or folder; None when nothing is there."""
    if os.path.isfile(location):
        if location.endswith(".npz"):
            return _load_npz(location)
        if os.path.basename(location) == MNIST_PKL_NAME:
            return (*_load_mnist_pkl(location), None)
        raise DataError(
            f"{location}: unsupported file (expected an .npz, {MNIST_PKL_NAME}, or a "
            f"folder of IDX, CIFAR-10 or class-folder images)"
        )
    if not os.path.isdir(location):
        return None
    own = os.path.join(location, name + ".npz")
    npzs = sorted(
        f
        for f in os.listdir(location)
        if f.endswith(".npz")
        and not f.startswith(".")
        and os.path.isfile(os.path.join(location, f))
    )
    if os.path.isfile(own):
        return _load_npz(own)
    if len(npzs) == 1:
        return _load_npz(os.path.join(location, npzs[0]))
    if len(npzs) > 1:
        raise DataError(
            f"{location}: several .npz files ({', '.join(npzs)}) and none named "
            f"{name}.npz; name the one to read with data.path"
        )
    if any(_find_idx(location, stem) for stem in _IDX_FILES.values()):
        return (*_load_idx_dir(location), None)
    if os.path.isfile(os.path.join(location, MNIST_PKL_NAME)):
        return (*_load_mnist_pkl(os.path.join(location, MNIST_PKL_NAME)), None)
    if os.path.isdir(os.path.join(location, _CIFAR_DIR)):
        return _load_cifar10_dir(os.path.join(location, _CIFAR_DIR))
    if os.path.isfile(os.path.join(location, "data_batch_1")):
        return _load_cifar10_dir(location)
    if _class_folders(location) or "train" in _subdirs(location):
        return _load_image_tree(location, test_fraction, seed)
    return None


def _default_class_names(name: str, train: ImageSplit, test: ImageSplit) -> tuple[str, ...]:
    if name in FILE_DATASETS:
        return FILE_DATASETS[name]
    labels = [s.labels for s in (train, test) if s.labels.size]
    if not labels or not all(np.issubdtype(l.dtype, np.integer) for l in labels):
        return ()  # validation reports the labels
    return tuple(str(i) for i in range(int(max(l.max() for l in labels)) + 1))


def _load_files(
    name: str, data_dir: str, path: str = "", test_fraction: float = 0.1, seed: int = 0
) -> Optional[ImageDataset]:
    """Reads local files for `name`; None when none are present. Raises DataError if broken."""
    if path:
        if not os.path.exists(path):
            raise DataError(f"data path {path} does not exist")
        found = _read_location(path, name, test_fraction, seed)
        if found is None:
            raise DataError(f"{path}: nothing readable there ({_LAYOUTS})")
    else:
        found = None
        for location in (os.path.join(data_dir, name), os.path.join(data_dir, name + ".npz")):
            found = _read_location(location, name, test_fraction, seed)
            if found is not None:
                break
        if found is None:
            return None
    train, test, class_names = found
    if class_names is None:
        class_names = _default_class_names(name, train, test)
    return ImageDataset(train=train, test=test, name=name, class_names=tuple(class_names))


_LAYOUTS = (
    "an .npz with train_images, train_labels, test_images, test_labels; IDX files "
    "(train-images-idx3-ubyte[.gz], ...); cifar-10-batches-py/; or one folder of images "
    "per class: <class>/*.png, or train/<class>/* and test/<class>/*"
)


def _files_hint(name: str, data_dir: str) -> str:
    directory = os.path.join(data_dir, name)
    if name == "mnist":
        return (
            f"run `python scripts/fetch_mnist.py --data-dir {data_dir}` (writes "
            f"{directory}/mnist.npz), or put IDX files (train-images-idx3-ubyte[.gz], ...) "
            f"under {directory}/"
        )
    if name == "cifar10":
        return f"extract CIFAR-10's python version so that {directory}/{_CIFAR_DIR}/ exists"
    return f"put under {directory}/ (or at {directory}.npz) {_LAYOUTS}"


# ---------------------------------------------------------------------- tfds


class _TfdsError(Exception):
    pass


class _TfdsMissingModule(_TfdsError):
    pass


def _missing_module(error: ImportError) -> _TfdsMissingModule:
    module = getattr(error, "name", None) or str(error)
    if module.split(".")[0] == "tensorflow":
        return _TfdsMissingModule(
            "preparing it needs TensorFlow, which exon_jax does not install: run "
            "`pip install tensorflow` where the data set is to be prepared"
        )
    return _TfdsMissingModule(
        f"tensorflow_datasets needs the Python module {module!r}, which is not installed: run "
        f"`{sys.executable} -m pip install -r requirements.txt` from the repository root"
    )


def _prepare_command(name: str, tfds_data_dir: Optional[str]) -> str:
    where = f", data_dir={tfds_data_dir!r}" if tfds_data_dir else ""
    return (
        f'`pip install tensorflow && python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder({name!r}{where}, file_format='array_record').download_and_prepare()\"`"
        f" (needs the network)"
    )


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
    return _make_split(
        _as_images(np.stack(images), f"tfds {name} {split}"), np.stack(labels)
    ), names


NETWORK_PROBE = ("storage.googleapis.com", 443)  # where tfds downloads most data sets from


def _network_unreachable(timeout: float = 5.0) -> str | None:
    """Why NETWORK_PROBE cannot be reached (one short line), or None when it can."""
    import socket

    try:
        socket.create_connection(NETWORK_PROBE, timeout=timeout).close()
    except OSError as error:
        return f"{NETWORK_PROBE[0]}:{NETWORK_PROBE[1]}: {error.strerror or error}"
    return None


def _tfds_not_prepared(tfds, name, data_dir) -> bool:
    try:
        return not tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # noqa: BLE001 - unknown names etc.: let the original error speak
        return False


def _load_tfds(name: str, data_dir: Optional[str], download: bool) -> ImageDataset:
    """Reads train and test through tfds.data_source; raises _TfdsError on any failure."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise _missing_module(e) from e
    except Exception as e:  # noqa: BLE001 - any import failure means tfds cannot serve
        raise _TfdsError(f"tensorflow_datasets cannot be imported ({_short(e)})") from e
    offline = None
    if download and _tfds_not_prepared(tfds, name, data_dir):
        # no network: read only what is there and fail now, not after minutes of download
        # retries and their warnings
        offline = _network_unreachable()
        download = offline is None
    try:
        train, names = _read_tfds_split(tfds, name, "train", data_dir, download)
        test, _ = _read_tfds_split(tfds, name, "test", data_dir, download)
    except _TfdsError:
        raise
    except ImportError as e:
        raise _missing_module(e) from e
    except Exception as e:  # noqa: BLE001 - tfds raises many types; report them as one
        if _tfds_not_prepared(tfds, name, data_dir):
            where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
            tried = f"; preparing it here failed ({_short(e)})" if download else ""
            if offline:
                tried = (
                    f"; it cannot be downloaded: the network is unreachable ({offline}; "
                    f"{_short(e)})"
                )
            raise _TfdsError(
                f"it is not prepared in {where}{tried}. Prepare it with "
                f"{_prepare_command(name, data_dir)}"
            ) from e
        raise _TfdsError(_short(e)) from e
    class_names = FILE_DATASETS.get(name) or names or _default_class_names(name, train, test)
    return ImageDataset(train=train, test=test, name=name, class_names=tuple(class_names))


def _tfds_hint(name: str, tfds_data_dir: Optional[str]) -> str:
    where = tfds_data_dir or "the default tfds data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    return (
        f"or use source='tfds' with a prepared tensorflow_datasets data set {name!r} in "
        f"{where} (source='tfds' tries download_and_prepare where the network allows; "
        f"preparing needs TensorFlow, which exon_jax does not install)"
    )


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
        ds = _load_files(name, data_dir, path, test_fraction, seed)
        if ds is None:
            raise DataError(
                f"no local files for {name!r} under {os.path.join(data_dir, name)}/ "
                f"or at {os.path.join(data_dir, name)}.npz: "
                f"{_files_hint(name, data_dir)}; {_tfds_hint(name, tfds_data_dir)}"
            )
    elif source == "tfds":
        try:
            ds = _load_tfds(name, tfds_data_dir, download=True)
        except _TfdsMissingModule as e:
            raise DataError(f"tfds cannot serve {name!r}: {e}") from e
        except _TfdsError as e:
            reason = str(e).rstrip(".")
            raise DataError(
                f"tfds could not serve {name!r}: {reason}. "
                f"Alternatively use local files (source='files'): "
                f"{_files_hint(name, data_dir)}"
            ) from e
    else:
        ds = _load_files(name, data_dir, path, test_fraction, seed)
        if ds is None:
            try:
                ds = _load_tfds(name, tfds_data_dir, download=False)
            except _TfdsError as e:
                raise DataError(
                    f"cannot load {name!r}: no local files under {os.path.join(data_dir, name)}/ "
                    f"and tfds could not serve it ({str(e).rstrip('.')}). To get the data: "
                    f"{_files_hint(name, data_dir)}; {_tfds_hint(name, tfds_data_dir)}"
                ) from e
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

    return ImageDataset(
        train=subset(dataset.train),
        test=subset(dataset.test),
        name=dataset.name,
        class_names=tuple(dataset.class_names[c] for c in classes),
    )


def validation_counts(counts, num: int) -> np.ndarray:
    """Per-class sizes of a stratified hold-out of `num` from class counts [K].

    Largest remainder: class c gets floor(num * n_c / N), and the leftover
    images go one each to the largest fractional parts (ties: lower class first).
    """
    n_c = np.asarray(counts, np.int64)
    total = int(n_c.sum())
    exact = [(num * int(n), total) for n in n_c]  # num * n_c / N as a fraction
    base = np.array([a // b for a, b in exact], np.int64)
    order = sorted(range(len(n_c)), key=lambda c: (-(exact[c][0] % total), c))
    base[order[: num - int(base.sum())]] += 1
    return base


def split_validation(split: ImageSplit, num: int, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """Holds out `num` examples of `split`, stratified by label: (rest, validation).

    Class sizes follow `validation_counts`; which examples is drawn with
    np.random.default_rng(seed), class by class in sorted label order. Both
    parts keep the original order. Raises DataError unless 1 <= num < len(split).
    """
    if isinstance(num, bool) or int(num) != num or num < 1:
        raise DataError(f"split_validation: num must be a positive integer, got {num!r}")
    num = int(num)
    if num >= len(split):
        raise DataError(
            f"split_validation: cannot hold out {num} of {len(split)} training "
            f"examples (need fewer, so that some remain to train on)"
        )
    classes, labels = np.unique(split.labels, return_inverse=True)
    counts = np.bincount(labels.reshape(-1), minlength=classes.size)
    per_class = validation_counts(counts, num)
    mask = _stratified_pick(labels.reshape(-1), dict(enumerate(per_class)), seed)
    return (
        ImageSplit(split.images[~mask], split.labels[~mask]),
        ImageSplit(split.images[mask], split.labels[mask]),
    )


def _array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def dataset_fingerprint(dataset: ImageDataset) -> dict[str, Any]:
    """The data set's identity, JSON-able.

    Returns {"name", "class_names", "num_classes", "sha256", and for each of
    train_images, train_labels, test_images, test_labels {"shape", "dtype",
    "sha256"}}. An array's sha256 is that of its C-order bytes, images in their
    dtype (little-endian) and labels as int64 little-endian (so int32 and int64
    labels of the same values agree). The top-level sha256 is that of the four
    lines "<key> <dtype> <shape> <sha256>\\n" in the order above: it changes when
    any pixel, label, shape or image dtype does, and ignores the name.
    """
    out: dict[str, Any] = {
        "name": dataset.name,
        "class_names": list(dataset.class_names),
        "num_classes": dataset.num_classes,
    }
    lines = []
    for part in ("train", "test"):
        split = getattr(dataset, part)
        images = np.asarray(split.images)
        images = images.astype(images.dtype.newbyteorder("<"), copy=False)
        labels = np.asarray(split.labels).astype("<i8", copy=False)
        for key, array, dtype in (
            (f"{part}_images", images, images.dtype),
            (f"{part}_labels", labels, np.asarray(split.labels).dtype),
        ):
            digest = _array_digest(array)
            out[key] = {"shape": list(array.shape), "dtype": np.dtype(dtype).name, "sha256": digest}
            lines.append(f"{key} {array.dtype.str} {list(array.shape)} {digest}\n")
    out["sha256"] = hashlib.sha256("".join(lines).encode()).hexdigest()
    return out


def labelled_split(
    labels: np.ndarray, num_per_class: int, seed: int, num_classes: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labelled/unlabelled split of labels int [N].

    Draws num_per_class random indices of each class 0..K-1 (K = num_classes,
    default labels.max() + 1) with np.random.default_rng(seed); all the rest
    are unlabelled. Returns sorted int32 (labelled_idx [K * num_per_class],
    unlabelled_idx [N - K * num_per_class]). Raises DataError when a class has
    fewer than num_per_class examples.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise DataError(
            f"labelled_split: labels must be a non-empty 1-D integer array, "
            f"got {labels.dtype} {labels.shape}"
        )
    if int(num_per_class) != num_per_class or num_per_class < 1:
        raise DataError(
            f"labelled_split: num_per_class must be a positive integer, got {num_per_class}"
        )
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(
            f"labelled_split: labels must lie in [0, {num_classes}), found "
            f"[{labels.min()}, {labels.max()}]"
        )
    counts = np.bincount(labels, minlength=num_classes)
    short = [(c, int(n)) for c, n in enumerate(counts) if n < num_per_class]
    if short:
        detail = ", ".join(f"class {c} has {n}" for c, n in short)
        raise DataError(
            f"labelled_split: {num_per_class} labelled examples per class requested but {detail}"
        )
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=int(num_per_class), replace=False)
        for c in range(num_classes)
    ]
    labelled = np.sort(np.concatenate(chosen)).astype(np.int32)
    mask = np.ones(labels.shape[0], bool)
    mask[labelled] = False
    unlabelled = np.flatnonzero(mask).astype(np.int32)
    return labelled, unlabelled
