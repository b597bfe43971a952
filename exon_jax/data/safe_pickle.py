"""Unpickling that can only build NumPy arrays: CIFAR-10's and mnist.pkl.gz's pickles."""

import importlib
import pickle
from typing import Any, Sequence

import numpy as np

from exon_jax.data.core import DataError, short_error

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
        raise DataError(f"{where}: not a readable pickle ({short_error(e)})") from None
