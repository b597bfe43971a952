"""tensorflow_datasets as a source: read with tfds.data_source (NumPy out, no TensorFlow)."""

import sys
from typing import Optional

import numpy as np

from exon_jax.data.core import FILE_DATASETS, ImageDataset, as_images, make_split, short_error
from exon_jax.data.files import default_class_names

# ---------------------------------------------------------------------- tfds


class TfdsError(Exception):
    pass


class TfdsMissingModule(TfdsError):
    pass


def _missing_module(error: ImportError) -> TfdsMissingModule:
    module = getattr(error, "name", None) or str(error)
    if module.split(".")[0] == "tensorflow":
        return TfdsMissingModule(
            "preparing it needs TensorFlow, which exon_jax does not install: run "
            "`pip install tensorflow` where the data set is to be prepared"
        )
    return TfdsMissingModule(
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
        raise TfdsError(f"split {split!r} is empty")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise TfdsError(f"split {split!r} has images of several shapes {sorted(shapes)[:3]}")
    label_feature = info.features[label_key] if label_key in info.features else None
    names = tuple(getattr(label_feature, "names", None) or ())
    return make_split(as_images(np.stack(images), f"tfds {name} {split}"), np.stack(labels)), names


NETWORK_PROBE = ("storage.googleapis.com", 443)  # where tfds downloads most data sets from


def network_unreachable(timeout: float = 5.0) -> str | None:
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


def load_tfds(name: str, data_dir: Optional[str], download: bool) -> ImageDataset:
    """Reads train and test through tfds.data_source; raises TfdsError on any failure."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise _missing_module(e) from e
    except Exception as e:  # noqa: BLE001 - any import failure means tfds cannot serve
        raise TfdsError(f"tensorflow_datasets cannot be imported ({short_error(e)})") from e
    offline = None
    if download and _tfds_not_prepared(tfds, name, data_dir):
        # no network: read only what is there and fail now, not after minutes of download
        # retries and their warnings
        offline = network_unreachable()
        download = offline is None
    try:
        train, names = _read_tfds_split(tfds, name, "train", data_dir, download)
        test, _ = _read_tfds_split(tfds, name, "test", data_dir, download)
    except TfdsError:
        raise
    except ImportError as e:
        raise _missing_module(e) from e
    except Exception as e:  # noqa: BLE001 - tfds raises many types; report them as one
        if _tfds_not_prepared(tfds, name, data_dir):
            where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
            tried = f"; preparing it here failed ({short_error(e)})" if download else ""
            if offline:
                tried = (
                    f"; it cannot be downloaded: the network is unreachable ({offline}; "
                    f"{short_error(e)})"
                )
            raise TfdsError(
                f"it is not prepared in {where}{tried}. Prepare it with "
                f"{_prepare_command(name, data_dir)}"
            ) from e
        raise TfdsError(short_error(e)) from e
    class_names = FILE_DATASETS.get(name) or names or default_class_names(name, train, test)
    return ImageDataset(train=train, test=test, name=name, class_names=tuple(class_names))


def tfds_hint(name: str, tfds_data_dir: Optional[str]) -> str:
    where = tfds_data_dir or "the default tfds data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    return (
        f"or use source='tfds' with a prepared tensorflow_datasets data set {name!r} in "
        f"{where} (source='tfds' tries download_and_prepare where the network allows; "
        f"preparing needs TensorFlow, which exon_jax does not install)"
    )
