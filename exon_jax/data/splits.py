"""Splits and identity: stratified hold-outs, class subsets, validation, labelled subsets,
fingerprints. Pure NumPy on host arrays."""

import hashlib
from typing import Any, Optional, Sequence

import numpy as np

from exon_jax.data.core import DataError, ImageDataset, ImageSplit


def holdout_counts(counts, fraction: float) -> np.ndarray:
    """Per-class test counts [K] of a stratified hold-out from class counts [K]: round(fraction *
    n_c), clipped so each class with n_c >= 2 keeps at least one image on each side (a single
    image stays in train)."""
    n = np.asarray(counts, np.int64)
    held = np.floor(fraction * n + 0.5).astype(np.int64)
    return np.where(n >= 2, np.clip(held, 1, n - 1), 0)


def stratified_pick(labels: np.ndarray, per_class: dict, seed: int) -> np.ndarray:
    """Boolean mask [N] choosing per_class[c] random examples of each class c (sorted classes)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.shape[0], bool)
    for c in sorted(per_class):
        members = np.flatnonzero(labels == c)
        mask[rng.choice(members, size=int(per_class[c]), replace=False)] = True
    return mask


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
    mask = stratified_pick(labels.reshape(-1), dict(enumerate(per_class)), seed)
    return (
        ImageSplit(split.images[~mask], split.labels[~mask]),
        ImageSplit(split.images[mask], split.labels[mask]),
    )


def _array_digest(array: np.ndarray) -> str:
    """sha256 of the C-order bytes, read in place (no copy of the array)."""
    return hashlib.sha256(np.ascontiguousarray(array).reshape(-1).data).hexdigest()


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
