"""Local files: .npz, IDX, CIFAR-10's python batches, the pinned mnist.pkl.gz, image folders."""

import gzip
import hashlib
import io
import math
import os
import zipfile
import zlib
from typing import Optional, Sequence

import numpy as np

from exon_jax.data.core import (
    FILE_DATASETS,
    DataError,
    ImageDataset,
    ImageSplit,
    as_images,
    make_split,
    short_error,
)
from exon_jax.data.safe_pickle import unpickle_arrays
from exon_jax.data.splits import holdout_counts, stratified_pick

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
        raise DataError(
            f"{path}: cannot read it ({short_error(e)}; corrupt or truncated?)"
        ) from None


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
        splits.append(make_split(images[..., None], labels))
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
        raise DataError(f"{path}: corrupt gzip ({short_error(e)})") from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = content
    except (ValueError, TypeError) as e:
        raise DataError(
            f"{path}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)): {e}"
        ) from None
    train = make_split(
        _pkl_pixels_to_uint8(np.concatenate([train_x, valid_x])), np.concatenate([train_y, valid_y])
    )
    test = make_split(_pkl_pixels_to_uint8(test_x), test_y)
    return train, test


def _unpickle_dict(path: str) -> dict:
    """A CIFAR-10 batch pickle as a dict with str keys, through the restricted unpickler."""
    try:
        with open(path, "rb") as f:
            d = unpickle_arrays(f, path, encoding="bytes")
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({short_error(e)})") from None
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
    train = make_split(
        np.concatenate([parts[n][0] for n in _CIFAR_FILES[:5]]),
        np.concatenate([parts[n][1] for n in _CIFAR_FILES[:5]]),
    )
    test = make_split(*parts["test_batch"])
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
        raise DataError(f"{path}: array {key!r} is corrupt ({short_error(e)})") from None
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(
            f"{path}: array {key!r} is truncated or corrupt ({short_error(e)})"
        ) from None


def _load_npz(path: str) -> tuple[ImageSplit, ImageSplit, Optional[tuple[str, ...]]]:
    """(train, test, class_names or None) from an .npz; never unpickles."""
    _check_zip_magic(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise DataError(
            f"{path}: truncated or corrupt .npz (zip) archive ({short_error(e)})"
        ) from None
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
        make_split(as_images(arrays[p + "_images"], f"{path} {p}_images"), arrays[p + "_labels"])
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
            f"{path}: cannot read the image ({short_error(e)}; corrupt or truncated?)"
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
            make_split(train_array, train_labels),
            make_split(test_array, test_labels),
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
    test_mask = stratified_pick(labels, dict(enumerate(held)), seed)
    if not test_mask.any():
        raise DataError(
            f"{directory}: too few images to hold out a test set (class counts {counts.tolist()})"
        )
    return (
        make_split(images[~test_mask], labels[~test_mask]),
        make_split(images[test_mask], labels[test_mask]),
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


def default_class_names(name: str, train: ImageSplit, test: ImageSplit) -> tuple[str, ...]:
    if name in FILE_DATASETS:
        return FILE_DATASETS[name]
    labels = [s.labels for s in (train, test) if s.labels.size]
    if not labels or not all(np.issubdtype(l.dtype, np.integer) for l in labels):
        return ()  # validation reports the labels
    return tuple(str(i) for i in range(int(max(l.max() for l in labels)) + 1))


def load_files(
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
        class_names = default_class_names(name, train, test)
    return ImageDataset(train=train, test=test, name=name, class_names=tuple(class_names))


_LAYOUTS = (
    "an .npz with train_images, train_labels, test_images, test_labels; IDX files "
    "(train-images-idx3-ubyte[.gz], ...); cifar-10-batches-py/; or one folder of images "
    "per class: <class>/*.png, or train/<class>/* and test/<class>/*"
)


def files_hint(name: str, data_dir: str) -> str:
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
