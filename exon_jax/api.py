"""A trained run from Python: `load_run(workdir)` needs only the workdir, no training data.

  import exon_jax
  run = exon_jax.load_run("workdirs/mnist")     # read-only: moves, writes, deletes nothing
  probs, means, logvars = run.encode(images)    # [N, K], [N, K, d], [N, K, d]
  codes = run.embed(images)                     # [N, d] (path="codes.npz" / ".csv" exports)
  labels = run.classify(images)                 # int [N]
  pictures = run.decode(codes)                  # [N, H, W, C] in [0, 1]
  again = run.reconstruct(images)               # decode(embed(images))
  drawn = run.sample(0, ["four", 4, 9])         # int seed or jax.random.key; names or indices
  codes, pictures = run.interpolate("four", "nine", steps=8)   # along the designed centres
  codes, pictures = run.traverse("four", axis=0, steps=9, span=3.0)
  centres = run.class_centres(images, labels)   # {class name: CentreStats}
  run.prior.weights                             # [K] normalised mixture weights

Images: uint8 in [0, 255] or float in [0, 1] (finite), [N, H, W, C], [N, H, W] for one
channel, or one image [H, W, C] / [H, W] (its results then have no leading N axis). An
empty batch gives empty results. Classes are int indices 0..K-1 or the run's class names.
Every input is checked first; what cannot be answered raises one `InputError` (a
ValueError) line naming the argument, the value and what is allowed.

The run's prior is the exact one it was trained with (from its checkpoint). Only the
functions a call uses are compiled, on first use (loading compiles no model function).
Batches are padded to the next power of two (up to 1024 rows, then run 1024 at a time),
so calls with varying N reuse a few compiled programs; each row's result does not depend
on the others.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from typing import Any, NamedTuple, Sequence, cast

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exon_jax import configuration, priors, saved_run, train

log = logging.getLogger("exon_jax")

ClassLike = Any  # an int index 0..K-1 (Python or NumPy int) or a class name (str)


CHUNK = 1024  # rows per compiled encode / decode call (smaller batches: a power of two)


class InputError(ValueError):
    """An argument a Run cannot answer for; the message is one line naming it."""


class CentreStats(NamedTuple):
    """Where one class's codes lie relative to its designed component N(mu0_k, diag v0_k).

    Attributes:
      num_codes: number of codes (images) of the class.
      mean: [d] their mean code.
      distance_sd: Mahalanobis distance of `mean` to mu0_k, in prior standard deviations:
        sqrt(sum_j (mean_j - mu0_kj)^2 / v0_kj).
      inside_95: share of the codes inside the component's 95 % region, the ellipsoid
        sum_j (z_j - mu0_kj)^2 / v0_kj <= chi2_d quantile 0.95 (0.95 for codes drawn
        from the prior itself).
    """

    num_codes: int
    mean: np.ndarray
    distance_sd: float
    inside_95: float


# --- pure functions (NumPy) --------------------------------------------------------------------


def chi2_quantile(level: float, dof: int) -> float:
    """The `level` quantile of the chi-square distribution with `dof` degrees of freedom."""
    import scipy.special  # imported here: load_run does not need it

    return float(2.0 * scipy.special.gammaincinv(dof / 2.0, level))


def centre_statistics(
    codes: np.typing.ArrayLike,
    labels: np.typing.ArrayLike,
    means: np.typing.ArrayLike,
    variances: np.typing.ArrayLike,
    class_names: Sequence[str],
    level: float = 0.95,
) -> dict[str, CentreStats]:
    """Per-class mean code, its distance to the design and the share inside the region.

    Args:
      codes: [N, d] latent codes.
      labels: [N] int class of each code, in 0..K-1.
      means, variances: [K, d] the designed prior components.
      class_names: K names, the keys of the result.
      level: the region's probability under the component (0.95: `inside_95`).

    Returns:
      {class name: CentreStats} for every class present in `labels`, in class order.
    """
    codes = np.asarray(codes, np.float64)
    labels = np.asarray(labels)
    means, variances = np.asarray(means, np.float64), np.asarray(variances, np.float64)
    radius2 = chi2_quantile(level, codes.shape[-1])
    out = {}
    for k in np.unique(labels):
        z = codes[labels == k]
        mean = z.mean(axis=0)
        mahalanobis2 = np.sum((z - means[k]) ** 2 / variances[k], axis=-1)
        out[class_names[k]] = CentreStats(
            num_codes=int(z.shape[0]),
            mean=mean,
            distance_sd=float(np.sqrt(np.sum((mean - means[k]) ** 2 / variances[k]))),
            inside_95=float(np.mean(mahalanobis2 <= radius2)),
        )
    return out


def line_codes(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """[steps, d]: (1 - t) a + t b at t = 0, 1/(steps-1), ..., 1 (both ends included)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return (1.0 - t) * np.asarray(a, np.float64) + t * np.asarray(b, np.float64)


def axis_codes(origin: np.ndarray, axis: int, sd: float, span: float, steps: int) -> np.ndarray:
    """[steps, d]: `origin` moved along `axis` by -span..+span times `sd` (evenly spaced)."""
    codes = np.repeat(np.asarray(origin, np.float64)[None], steps, axis=0)
    codes[:, axis] += np.linspace(-span, span, steps) * sd
    return codes


def prior_component(z: np.ndarray, means, variances, log_weights) -> int:
    """argmax_k p(y = k | z) under the prior: log w0_k + log N(z; mu0_k, diag v0_k)."""
    means, variances = np.asarray(means, np.float64), np.asarray(variances, np.float64)
    log_density = -0.5 * np.sum((z - means) ** 2 / variances + np.log(2 * np.pi * variances), -1)
    return int(np.argmax(np.asarray(log_weights, np.float64) + log_density))


def _scalar(value):
    """A 0-d NumPy or JAX array as its Python value (an int, float or str); else as given."""
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return np.asarray(value).item()
    return value


def _is_class(value) -> bool:
    """An int index or a class name (a code is an array of numbers)."""
    return isinstance(value, (str, np.str_, int, np.integer, bool, np.bool_))


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _finite(x: np.ndarray, what: str, unit: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        count = int(bad.sum())
        first = int(np.argwhere(bad)[0][0]) if x.ndim > 1 else 0
        raise InputError(
            f"{what} hold {count} NaN or infinite value{'s' if count > 1 else ''} "
            f"({unit} {first} first)"
        )


class Run:
    """One trained model of a workdir (one point of a grid), in eval mode.

    Attributes:
      config: the config it was trained with.
      point: its grid point ({} for a single run); name: its point name.
      prior: the MixturePrior it was trained with: means/variances [K, d], log_weights
        and weights [K].
      class_names: K names; image_shape: (H, W, C).
      epoch: the restored checkpoint's epoch; checkpoint: its directory.
      skipped: (epoch, reason) of newer checkpoints that did not restore (left in place).
    """

    def __init__(
        self,
        config,
        point,
        prior,
        class_names,
        image_shape,
        model,
        state,
        epoch,
        checkpoint: str = "",
        skipped: Sequence[tuple[int, str]] = (),
    ):
        self.config: ml_collections.ConfigDict = config
        self.point: dict[str, Any] = point
        self.name = configuration.point_name(point)
        self.prior: priors.MixturePrior = prior
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.image_shape: tuple[int, ...] = tuple(image_shape)
        self.epoch = epoch
        self.checkpoint = checkpoint
        self.skipped = list(skipped)
        self._variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
        self._state = state
        self._model = model
        self._jitted: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (
            f"Run(name={self.name!r}, epoch={self.epoch}, classes={self.num_classes}, "
            f"latent_dim={self.latent_dim}, image_shape={self.image_shape})"
        )

    # --- compiled on first use -----------------------------------------------------------------

    def _fn(self, name: str):
        if name not in self._jitted:
            model = self._model
            if name == "encode":
                forward = train.make_eval_forward(model, CHUNK)

                def encode(state, images):
                    logits, mean, logvar = forward(state, images)
                    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1), mean, logvar

                self._jitted[name] = jax.jit(encode)
            else:
                self._jitted[name] = jax.jit(
                    lambda variables, z: model.apply(variables, z, train=False, method=model.decode)
                )
        return self._jitted[name]

    # --- checked inputs ------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def latent_dim(self) -> int:
        return int(self.prior.means.shape[-1])

    def _names_text(self) -> str:
        names = self.class_names
        shown = ", ".join(repr(n) for n in names[:12]) + (", …" if len(names) > 12 else "")
        return f"({shown})"

    def _class(self, value: ClassLike) -> int:
        """One class: an int index 0..K-1 or a class name -> the index."""
        k = self.num_classes
        value = _scalar(value)
        if isinstance(value, (str, np.str_)):
            if str(value) not in self.class_names:
                raise InputError(
                    f"no class {str(value)!r}: this run's classes are {self._names_text()} "
                    f"(or their indices 0..{k - 1})"
                )
            return self.class_names.index(str(value))
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InputError(
                f"class {value!r} must be an int index or a class name (this run has {k} classes)"
            )
        if not 0 <= int(value) < k:
            raise InputError(
                f"class {int(value)} is out of range: this run has {k} classes (0..{k - 1}) "
                f"named {self._names_text()}"
            )
        return int(value)

    def _classes(self, classes, what: str = "classes") -> tuple[np.ndarray, bool]:
        """int [N] indices of a class or a flat sequence of classes; True for one class."""
        classes = _scalar(classes)
        if _is_class(classes):
            return np.asarray([self._class(classes)], np.int32), True
        if isinstance(classes, jax.Array):
            classes = np.asarray(classes)
        if isinstance(classes, np.ndarray) and classes.ndim != 1:
            raise InputError(
                f"{what} must be one class or a flat sequence of classes, "
                f"got an array of shape {classes.shape}"
            )
        try:
            items = list(classes)
        except TypeError:
            raise InputError(
                f"{what} must be one class or a flat sequence of classes "
                f"(int indices or names), got {type(classes).__name__}"
            ) from None
        for item in items:
            if isinstance(item, (list, tuple, np.ndarray)):
                raise InputError(
                    f"{what} must be one class or a flat sequence of classes, "
                    f"got a nested sequence ({item!r})"
                )
        return np.asarray([self._class(c) for c in items], np.int32).reshape(-1), False

    def _labels(self, labels, n: int) -> np.ndarray:
        """int [n] class indices of per-image labels (indices or names)."""
        shape = np.shape(labels)
        if len(shape) != 1 or shape[0] != n:
            raise InputError(
                f"labels must be [N] = [{n}] (one per image), got shape {tuple(shape)}"
            )
        array = np.asarray(labels)
        if array.dtype.kind in "iu":
            bad = (array < 0) | (array >= self.num_classes)
            if bad.any():
                self._class(int(array[np.argmax(bad)]))  # raises, naming the class
            return array.astype(np.int32)
        return self._classes(list(labels), "labels")[0]

    def _key(self, key) -> jax.Array:
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            return jax.random.key(int(key))
        if isinstance(key, jax.Array):
            if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
                return key
            if key.dtype == jnp.uint32 and key.shape == (2,):  # jax.random.PRNGKey(seed)
                return jax.random.wrap_key_data(key)
        raise InputError(
            f"key must be a jax.random.key(seed) or an int seed, got {type(key).__name__}"
            + (f" of shape {np.shape(key)}" if hasattr(key, "shape") else f" {key!r}")
        )

    def _codes(self, z, what: str = "codes") -> tuple[np.ndarray, bool]:
        """float32 [N, d] codes of [N, d] or one code [d]; True for one code."""
        d = self.latent_dim
        x = np.asarray(z)
        if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
            raise InputError(f"{what} must be numbers, got dtype {x.dtype}")
        single = x.ndim == 1 and x.shape == (d,)
        if not single and (x.ndim != 2 or x.shape[1] != d):
            raise InputError(
                f"{what} must be [N, {d}] (this run's latent_dim), or one code [{d}], "
                f"got shape {x.shape}"
            )
        x = x.astype(np.float32).reshape(-1, d)
        _finite(x, what, "row")
        return x, single

    def _end(self, value, what: str) -> np.ndarray:
        """[d] a class's designed centre (an index or name) or a code [d]."""
        value = _scalar(value)
        if _is_class(value):
            return np.asarray(self.prior.means[self._class(value)], np.float64)
        x = np.asarray(value)
        d = self.latent_dim
        if x.dtype.kind not in "fiu" or x.shape != (d,):
            raise InputError(
                f"{what}: a code must be [{d}] (this run's latent_dim), got shape {x.shape} "
                f"dtype {x.dtype}; or pass a class index or name"
            )
        _finite(x[None], what, "code")
        return x.astype(np.float64)

    def _images(self, images) -> tuple[np.ndarray, bool]:
        """uint8 or float32 [N, H, W, C] of the accepted forms; True for one image."""
        try:
            x = np.asarray(images)
        except ValueError as error:  # e.g. a list of images of different shapes
            raise InputError(f"images must be one array: {error}") from None
        shape = self.image_shape
        one_channel = shape[-1] == 1
        if x.shape == shape or (one_channel and x.shape == shape[:-1]):
            single = True
        elif x.ndim == len(shape) + 1 and x.shape[1:] == shape:
            single = False
        elif one_channel and x.ndim == len(shape) and x.shape[1:] == shape[:-1]:
            single = False
        else:
            forms = f"[N, {', '.join(map(str, shape))}]"
            if one_channel:
                forms += f" or [N, {', '.join(map(str, shape[:-1]))}]"
            raise InputError(
                f"images must be {forms}, or one image {_shape(shape)}, got shape {x.shape}"
            )
        x = x.reshape((-1,) + shape)
        if x.dtype == np.uint8:
            return x, single
        if x.dtype.kind != "f":
            raise InputError(
                f"images have dtype {x.dtype}: pass uint8 in [0, 255] "
                f"(e.g. images.astype(np.uint8)) or float in [0, 1]"
            )
        x = x.astype(np.float32)
        _finite(x, "images", "image")
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise InputError(
                f"float images must lie in [0, 1], these lie in [{x.min():g}, {x.max():g}] "
                "(uint8 images may be in [0, 255]; divide floats in [0, 255] by 255)"
            )
        return x, single

    # --- the model ------------------------------------------------------------------------------

    def _batches(self, fn, x: np.ndarray, *args) -> list[np.ndarray]:
        """`fn(*args, rows)` over `x` [N, ...] in padded batches of CHUNK rows (N > CHUNK)
        or of the next power of two: at most log2(CHUNK) + 1 shapes ever compile."""
        outputs = []
        for start in range(0, x.shape[0], CHUNK):
            rows = x[start : start + CHUNK]
            n = rows.shape[0]
            size = CHUNK if x.shape[0] > CHUNK else 1 << (n - 1).bit_length()
            padded = np.concatenate([rows, np.zeros((size - n,) + rows.shape[1:], rows.dtype)])
            out = jax.device_get(fn(*args, padded))
            outputs.append([np.asarray(a, np.float32)[:n] for a in jax.tree.leaves(out)])
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probs [N, K], means [N, K, d], logvars [N, K, d]) of checked images."""
        n, k, d = x.shape[0], self.num_classes, self.latent_dim
        if n == 0:
            return (
                np.zeros((0, k), np.float32),
                np.zeros((0, k, d), np.float32),
                np.zeros((0, k, d), np.float32),
            )
        probs, mean, logvar = self._batches(self._fn("encode"), x, self._state)
        return probs, mean, logvar

    def _decode(self, z: np.ndarray) -> np.ndarray:
        """[N, H, W, C] decoder means of checked codes [N, d]."""
        if z.shape[0] == 0:
            return np.zeros((0,) + self.image_shape, np.float32)
        return self._batches(self._fn("decode"), z, self._variables)[0]

    @staticmethod
    def _one(x: np.ndarray, single: bool) -> np.ndarray:
        return x[0] if single else x

    def encode(self, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """q(y, z | x): probs [N, K] = w(y|x), means [N, K, d], logvars [N, K, d]."""
        x, single = self._images(images)
        return tuple(self._one(a, single) for a in self._encode(x))  # type: ignore[return-value]

    def classify(self, images) -> np.ndarray:
        """int [N]: argmax_y w(y | x) (paper eq. 20)."""
        x, single = self._images(images)
        return self._one(np.argmax(self._encode(x)[0], axis=-1), single)

    def embed(self, images, path: str | None = None, labels=None) -> np.ndarray:
        """[N, d]: the posterior mean of each image's most probable component.

        Args:
          images: see the module docstring.
          path: optional file to export to: `.npz` (arrays codes [N, d], probs [N, K],
            predicted [N], class_names [K], and labels [N] when given) or `.csv` (one row
            per image: label, predicted (class names), z0..z{d-1}, p_<class name>...).
          labels: optional [N] true classes (indices or names) written with the codes.
        """
        x, single = self._images(images)
        if path is not None and os.path.splitext(str(path))[1] not in (".npz", ".csv"):
            raise InputError(f"path must end in .npz or .csv, got {os.path.basename(str(path))!r}")
        if labels is not None:
            labels = self._labels(labels, x.shape[0])
        probs, mean, _ = self._encode(x)
        predicted = np.argmax(probs, axis=-1)
        codes = mean[np.arange(x.shape[0]), predicted]
        if path is not None:
            _export(str(path), codes, probs, predicted, labels, self.class_names)
        return self._one(codes, single)

    def decode(self, z) -> np.ndarray:
        """[N, H, W, C] in [0, 1]: the decoder mean D(z) of codes z [N, d] (or one [d])."""
        codes, single = self._codes(z)
        return self._one(self._decode(codes), single)

    def reconstruct(self, images) -> np.ndarray:
        """[N, H, W, C] in [0, 1]: decode(embed(images)), each image through its code."""
        x, single = self._images(images)
        probs, mean, _ = self._encode(x)
        codes = mean[np.arange(x.shape[0]), np.argmax(probs, axis=-1)]
        return self._one(self._decode(codes), single)

    def sample(self, key, classes) -> np.ndarray:
        """[N, H, W, C]: decoded draws z ~ N(mu0_y, diag(v0_y)) of the given classes.

        Args:
          key: a jax.random.key (or legacy PRNGKey) or an int seed; the noise is
            jax.random.normal(key, (N, d)).
          classes: one class or a sequence of N (int indices 0..K-1 or class names);
            one class gives one image [H, W, C].
        """
        key = self._key(key)
        components, single = self._classes(classes)
        noise = np.asarray(jax.random.normal(key, (components.shape[0], self.latent_dim)))
        means = np.asarray(self.prior.means)[components]
        sd = np.sqrt(np.asarray(self.prior.variances))[components]
        return self._one(self._decode((means + sd * noise).astype(np.float32)), single)

    def interpolate(self, a, b, steps: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The straight line from `a` to `b` in latent space, decoded.

        Args:
          a, b: each a class (index or name: its designed centre mu0_k) or a code [d].
          steps: number of points, both ends included (>= 2).

        Returns:
          (codes [steps, d], images [steps, H, W, C]).
        """
        steps = _steps(steps)
        codes = line_codes(self._end(a, "a"), self._end(b, "b"), steps).astype(np.float32)
        return codes, self._decode(codes)

    def traverse(
        self, origin, axis: int, steps: int = 9, span: float = 3.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Moves along one latent axis from `origin`, decoded.

        Args:
          origin: a class (index or name: its designed centre) or a code [d].
          axis: the latent coordinate to vary, 0..d-1.
          steps: number of points (>= 2), evenly spaced.
          span: the walk covers origin -span..+span prior standard deviations along
            `axis`: those of the origin's class, or for a code of its most probable
            prior component (argmax_k p(y = k | z)).

        Returns:
          (codes [steps, d], images [steps, H, W, C]).
        """
        steps = _steps(steps)
        d = self.latent_dim
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise InputError(f"axis must be an int in 0..{d - 1}, got {axis!r}")
        if not 0 <= int(axis) < d:
            raise InputError(f"axis must be an int in 0..{d - 1}, got {axis}")
        if isinstance(span, bool) or not isinstance(span, (int, float, np.floating, np.integer)):
            raise InputError(f"span must be a positive number of prior sd, got {span!r}")
        if not (math.isfinite(span) and span > 0):
            raise InputError(f"span must be a positive number of prior sd, got {span}")
        z = self._end(origin, "origin")
        if _is_class(_scalar(origin)):
            k = self._class(origin)
        else:
            k = prior_component(z, self.prior.means, self.prior.variances, self.prior.log_weights)
        sd = math.sqrt(float(self.prior.variances[k, int(axis)]))
        codes = axis_codes(z, int(axis), sd, float(span), steps).astype(np.float32)
        return codes, self._decode(codes)

    def class_centres(self, images, labels) -> dict[str, CentreStats]:
        """Where each class's images land against its designed component.

        Args:
          images: [N, ...] images (see the module docstring).
          labels: [N] their true classes (int indices or class names).

        Returns:
          {class name: CentreStats(count, mean [d], distance_sd, inside_95)} for every
          class present, in class order; codes are `embed`'s (posterior mean of the most
          probable component), distances in prior sd (`centre_statistics`).
        """
        x, single = self._images(images)
        if single:
            x = x[:1]
        labels = self._labels(labels, x.shape[0])
        probs, mean, _ = self._encode(x)
        codes = mean[np.arange(x.shape[0]), np.argmax(probs, axis=-1)]
        return centre_statistics(
            codes, labels, self.prior.means, self.prior.variances, self.class_names
        )


def _steps(steps) -> int:
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
        raise InputError(f"steps must be an int >= 2, got {steps!r}")
    if steps < 2:
        raise InputError(f"steps must be an int >= 2, got {steps}")
    return int(steps)


def _export(path, codes, probs, predicted, labels, class_names) -> None:
    """Writes codes (+ labels, class probabilities) to .npz or .csv (see `Run.embed`)."""
    if path.endswith(".npz"):
        arrays = {
            "codes": codes,
            "probs": probs,
            "predicted": predicted,
            "class_names": np.asarray(class_names),
        }
        if labels is not None:
            arrays["labels"] = labels
        np.savez(path, **arrays)
        return
    d = codes.shape[1]
    header = (["label"] if labels is not None else []) + ["predicted"]
    header += [f"z{j}" for j in range(d)] + [f"p_{name}" for name in class_names]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(codes.shape[0]):
            row = [class_names[labels[i]]] if labels is not None else []
            row.append(class_names[predicted[i]])
            row += [repr(float(v)) for v in codes[i]] + [repr(float(p)) for p in probs[i]]
            writer.writerow(row)


WHICH = ("latest", "best")


def load_run(workdir: str, point: int | str | None = None, which: str = "latest") -> Run:
    """Restores one model of a trained workdir (the newest checkpoint that restores).

    Read-only: nothing in `workdir` is moved, written or deleted. A damaged newer
    checkpoint is skipped, left in place and named in a warning; a missing or damaged
    config.json / record.json is read from the newest checkpoint, with a warning. Logs
    which checkpoint it restored (logger "exon_jax", INFO). Compiles no model function:
    each Run method compiles its own on first use.

    Args:
      workdir: a training run's directory.
      point: for a grid, the model's index or name (e.g. "lambda1=10_lambda2=1.1");
        None for a single run.
      which: "latest" (the newest checkpoint) or "best": the model's state of its lowest
        validation error, kept by a run trained with train.keep_best (and data.validation);
        `Run.epoch` is then that state's epoch.

    Returns:
      A Run.
    """
    if which not in WHICH:
        raise InputError(f"which={which!r}: must be one of {WHICH}")
    directory = os.path.join(workdir, "checkpoints" if which == "latest" else "best_checkpoints")
    if which == "best" and not os.path.isdir(directory):
        raise InputError(
            f"which='best': {workdir} has no best checkpoint ({os.path.abspath(directory)}): "
            "train with --config.train.keep_best=True and data.validation > 0"
        )
    restored = saved_run.restore(workdir, which=which, read_only=True)
    for note in restored.notes:  # in memory only: nothing is rewritten
        warnings.warn(f"load_run: {note.replace('rebuilt', 'read')}", stacklevel=3)
    spec = restored.spec
    names = spec.point_names
    if point is None:
        if spec.num_models > 1:
            raise InputError(
                f"{workdir} holds a grid of {spec.num_models} models: pass point= one "
                f"of 0..{spec.num_models - 1} or a name: {names}"
            )
        index = 0
    elif isinstance(point, str):
        if point not in names:
            raise InputError(f"no point {point!r} in {workdir}; its points are {names}")
        index = names.index(point)
    else:
        if not 0 <= int(point) < spec.num_models:
            raise InputError(f"point {point} out of range: {workdir} has {spec.num_models} models")
        index = int(point)
    epoch, skipped = restored.epoch, restored.skipped
    where = os.path.abspath(os.path.join(directory, str(epoch)))
    log.info("load_run: restored checkpoint %d of %s", epoch, os.path.abspath(directory))
    if skipped:
        warnings.warn(
            f"load_run: restored checkpoint {epoch} of {os.path.abspath(directory)}; skipped "
            + "; ".join(f"newer checkpoint {e} ({reason})" for e, reason in skipped)
            + ", left in place",
            stacklevel=3,  # the caller of exon_jax.load_run
        )
    if which == "best":
        epoch = int(restored.meta["best_epochs"][index])  # the saves are counted, not epochs
    states = restored.states
    state = train.TrainState(  # model `index`, on the host: no per-leaf slicing programs
        step=np.asarray(states.step)[index],
        params=jax.tree.map(lambda x: np.asarray(x)[index], states.params),
        batch_stats=jax.tree.map(lambda x: np.asarray(x)[index], states.batch_stats),
        opt_state=(),
        key=cast(jax.Array, None),  # not needed in eval mode
        beta=np.asarray(states.beta)[index],
    )
    return Run(
        spec.config,
        spec.points[index],
        jax.tree.map(lambda x: jax.device_put(np.asarray(x)[index]), spec.hparams.prior),
        spec.dataset.class_names,
        spec.image_shape,
        spec.model,
        state,
        epoch,
        checkpoint=where,
        skipped=skipped,
    )
