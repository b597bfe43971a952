"""The pre-designed Gaussian-mixture prior p(y) p(z | y) of EXoN (paper Section 3.1).

A prior is plain data (a pytree), so a batch of priors with a leading model
axis can be vmapped like any other hyper-parameter.
"""

from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from exon_jax import sampling
from exon_jax.errors import ExpectedError


class MixturePrior(NamedTuple):
    """p(y = k) = softmax(log_weights)_k, z | y = k ~ N(means[k], diag(variances[k])).

    Attributes:
      means: [K, d] component means mu0_k.
      variances: [K, d] component variances v0_k (variances, not standard deviations).
      log_weights: [K] log mixture weights log w0_k (normalised).
    """

    means: jax.Array
    variances: jax.Array
    log_weights: jax.Array

    @property
    def num_classes(self) -> int:
        return self.means.shape[-2]

    @property
    def latent_dim(self) -> int:
        return self.means.shape[-1]

    @property
    def weights(self) -> jax.Array:
        """[K] mixture weights w0_k = softmax(log_weights), summing to 1."""
        return jax.nn.softmax(jnp.asarray(self.log_weights), axis=-1)


def make_prior(means, variances, weights=None) -> MixturePrior:
    """Builds a validated prior.

    Args:
      means: [K, d] component means.
      variances: [K, d] or scalar component variances (broadcast to [K, d]).
      weights: optional [K] positive mixture weights (normalised here); uniform if None.

    Returns:
      A float32 MixturePrior.
    """
    # float32 conversions and broadcasts on the host (the same rounding as XLA's, and no
    # program to compile for each); only the normalisation of given weights runs in XLA
    means = np.asarray(means, np.float32)
    if means.ndim != 2:
        raise ValueError(f"prior means must be [K, d], got shape {means.shape}")
    variances = np.broadcast_to(np.asarray(variances, np.float32), means.shape)
    num_classes = means.shape[0]
    if weights is None:
        log_weights = jax.device_put(np.full((num_classes,), -math.log(num_classes), np.float32))
    else:
        weights = jax.device_put(np.asarray(weights, np.float32))
        if weights.shape != (num_classes,):
            raise ValueError(f"prior weights must be [{num_classes}], got shape {weights.shape}")
        log_weights = jnp.log(weights) - jnp.log(jnp.sum(weights))
    return MixturePrior(jax.device_put(means), jax.device_put(variances), log_weights)


def circle_prior(
    num_classes: int = 10, radius: float | None = None, variance: float = 4.0
) -> MixturePrior:
    """Components on a circle in 2-D (paper Section 4.1, Figure 2).

    mu0_k = r (cos theta_k, sin theta_k), theta_k = (2k + 1) pi / K, so label 0 sits
    at 18 degrees for K = 10. The default radius r = 2 sqrt(v) / sin(pi / K) puts
    neighbouring centres 4 prior standard deviations apart (r = 4 / sin(pi/10) for v = 4).

    Returns:
      MixturePrior with means/variances [K, 2].
    """
    if radius is None:
        radius = 2.0 * math.sqrt(variance) / math.sin(math.pi / num_classes)
    theta = (2.0 * jnp.arange(num_classes) + 1.0) * jnp.pi / num_classes
    means = radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    return make_prior(means, variance)


def two_component_prior(distance, variance: float = 4.0) -> MixturePrior:
    """Two components at (-distance/2, 0) and (+distance/2, 0) (paper Appendix 6.3.2).

    `distance` may be a traced scalar, so a sweep over distances vmaps.

    Returns:
      MixturePrior with means/variances [2, 2].
    """
    half = 0.5 * jnp.asarray(distance, jnp.float32)
    means = jnp.stack([jnp.stack([-half, 0.0 * half]), jnp.stack([half, 0.0 * half])])
    return MixturePrior(
        means, jnp.full((2, 2), variance, jnp.float32), jnp.full((2,), -math.log(2.0), jnp.float32)
    )


def blocks_prior(
    num_classes: int = 10,
    relevant_dim: int = 100,
    irrelevant_dim: int = 200,
    max_mean: float = 6.0,
    relevant_variance: float = 0.1,
    irrelevant_variance: float = 1.0,
) -> MixturePrior:
    """Label-relevant / label-irrelevant block layout (paper Section 4.2, CIFAR-10).

    The first `relevant_dim` coordinates of mu0_k all equal t_k, with t_k evenly
    spaced from +max_mean (k = 0) to -max_mean (k = K-1); the remaining
    `irrelevant_dim` coordinates are 0. Variances are `relevant_variance` and
    `irrelevant_variance` on the two blocks.

    Returns:
      MixturePrior with means/variances [K, relevant_dim + irrelevant_dim].
    """
    levels = jnp.linspace(max_mean, -max_mean, num_classes)
    means = jnp.concatenate(
        [
            jnp.broadcast_to(levels[:, None], (num_classes, relevant_dim)),
            jnp.zeros((num_classes, irrelevant_dim)),
        ],
        axis=-1,
    )
    variances = jnp.concatenate(
        [
            jnp.full((num_classes, relevant_dim), relevant_variance),
            jnp.full((num_classes, irrelevant_dim), irrelevant_variance),
        ],
        axis=-1,
    )
    return make_prior(means, variances)


def component_log_density(z: jax.Array, prior: MixturePrior) -> jax.Array:
    """log N(z; mu0_k, diag(v0_k)) for every component.

    Args:
      z: [..., d] latent points.
      prior: K-component prior.

    Returns:
      [..., K] log-densities.
    """
    chex.assert_axis_dimension(z, -1, prior.latent_dim)
    diff = z[..., None, :] - prior.means
    return -0.5 * jnp.sum(
        diff**2 / prior.variances + jnp.log(2.0 * jnp.pi * prior.variances), axis=-1
    )


def prior_log_density(z: jax.Array, prior: MixturePrior) -> jax.Array:
    """log p(z) = logsumexp_k [log w0_k + log N(z; mu0_k, v0_k)].

    Args:
      z: [..., d] latent points.

    Returns:
      [...] log-densities.
    """
    return jax.nn.logsumexp(prior.log_weights + component_log_density(z, prior), axis=-1)


def sample_prior(key: jax.Array, prior: MixturePrior, num_samples: int):
    """Draws (z, y) from the prior.

    Returns:
      z: [num_samples, d] latent samples; y: [num_samples] int32 component labels.
    """
    label_key, noise_key = jax.random.split(key)
    y = sampling.categorical(label_key, prior.log_weights, num_samples)
    noise = sampling.draw_flat(jax.random.normal, noise_key, (num_samples, prior.latent_dim))
    z = prior.means[y] + jnp.sqrt(prior.variances[y]) * noise
    return z, y


# ------------------------------------------------------------ priors as data


# Weights written to 4 significant figures are each within 5e-4 of their value relative
# to it, so their sum is within 5e-4 of 1; they are then normalised.
WEIGHTS_SUM_TOLERANCE = 1e-3
MIN_VARIANCE = 1e-6  # smallest component variance a prior may have (sd 1e-3)


class PriorError(ExpectedError, ValueError):
    """Prior arrays that do not describe a usable mixture (shape, sign, normalisation)."""


def check_prior_arrays(
    means,
    variances,
    weights=None,
    num_classes: int | None = None,
    latent_dim: int | None = None,
    where: str = "prior",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates user-given prior arrays and returns them as float64 NumPy arrays.

    Args:
      means: [K, d] component means.
      variances: [K, d], [K] (one per component) or a scalar, all >= MIN_VARIANCE.
      weights: optional [K] positive mixture weights summing to 1 to within 1e-3 (so
        weights written to 4 significant figures pass); uniform if None.
      num_classes: K the data set needs (checked when given).
      latent_dim: d of the model (checked when given).
      where: the name used in error messages (e.g. "config.prior.file (my.json)").

    Returns:
      means [K, d], variances [K, d], weights [K] normalised: weights / sum(weights).

    Raises:
      PriorError: naming `where`, the field and what is wrong.
    """

    def array(value, field):
        try:
            out = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PriorError(f"{where}: {field} must be numbers ({error})") from None
        if not np.all(np.isfinite(out)):
            raise PriorError(f"{where}: {field} must be finite")
        return out

    means = array(means, "means")
    if means.ndim != 2 or means.size == 0:
        raise PriorError(f"{where}: means must be [K, d], got shape {means.shape}")
    k, d = means.shape
    if num_classes is not None and k != num_classes:
        raise PriorError(
            f"{where}: means has K = {k} components but the data has {num_classes} classes"
        )
    if latent_dim is not None and d != latent_dim:
        raise PriorError(f"{where}: means has d = {d} but model.latent_dim = {latent_dim}")
    variances = array(variances, "variances")
    if variances.ndim == 1 and variances.shape == (k,):
        variances = variances[:, None]
    if (
        variances.ndim > 2
        or (variances.ndim == 2 and variances.shape not in ((k, d), (k, 1)))
        or variances.ndim == 1
    ):
        raise PriorError(
            f"{where}: variances must be [K, d] = [{k}, {d}], [K] = [{k}] or a "
            f"scalar, got shape {variances.shape}"
        )
    variances = np.broadcast_to(variances, (k, d)).copy()
    if np.any(variances <= 0):
        raise PriorError(f"{where}: variances must be > 0")
    if np.any(variances < MIN_VARIANCE):
        raise PriorError(
            f"{where}: variances must be >= {MIN_VARIANCE:g}, got {float(np.min(variances)):g} "
            "(a narrower component's float32 log-density and gradients overflow)"
        )
    if weights is None or np.size(weights) == 0:
        weights = np.full((k,), 1.0 / k)
    weights = array(weights, "weights")
    if weights.shape != (k,):
        raise PriorError(f"{where}: weights must be [K] = [{k}], got shape {weights.shape}")
    if np.any(weights <= 0):
        raise PriorError(f"{where}: weights must be > 0")
    if abs(float(np.sum(weights)) - 1.0) > WEIGHTS_SUM_TOLERANCE:
        raise PriorError(
            f"{where}: weights must sum to 1 (to {WEIGHTS_SUM_TOLERANCE:g}), they sum to "
            f"{float(np.sum(weights)):.9g}"
        )
    return means, variances, weights / np.sum(weights)


def load_prior_file(path: str) -> dict[str, np.ndarray]:
    """Reads `means`, `variances` and optional `weights` from a .json or .npz file.

    JSON: {"means": [[...], ...], "variances": ..., "weights": [...]}; NPZ: arrays of those
    names (read without pickle). Shapes are checked by `check_prior_arrays`.

    Raises:
      PriorError: the file is missing, unreadable or lacks `means` / `variances`.
    """
    where = f"prior file {path}"
    if not os.path.isfile(path):
        raise PriorError(f"{where}: no such file")
    try:
        if path.endswith(".json"):
            with open(path) as f:
                content = json.load(f)
            if not isinstance(content, dict):
                raise PriorError(f"{where}: must hold a JSON object with means and variances")
        elif path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                content = {name: f[name] for name in f.files}
        else:
            raise PriorError(f"{where}: must end in .json or .npz")
    except PriorError:
        raise
    except Exception as error:  # json / zip / numpy each raise their own types
        raise PriorError(f"{where}: cannot be read ({type(error).__name__}: {error})") from None
    missing = [name for name in ("means", "variances") if name not in content]
    if missing:
        raise PriorError(f"{where}: missing {', '.join(missing)} (has {sorted(content)})")
    return {name: content[name] for name in ("means", "variances", "weights") if name in content}


def prior_to_arrays(prior: MixturePrior) -> dict[str, list]:
    """JSON-able {"means", "variances", "weights"} of a prior (float32 values, exactly)."""
    as_list = lambda a: np.asarray(a, np.float32).astype(np.float64).tolist()
    return {
        "means": as_list(prior.means),
        "variances": as_list(prior.variances),
        "weights": as_list(jnp.exp(prior.log_weights)),
    }


def prior_from_arrays(arrays: dict[str, list]) -> MixturePrior:
    """The prior of `prior_to_arrays` (its log-weights recomputed from the stored weights).

    Converted to float32 by NumPy (the same rounding as XLA's, nothing compiled but the log).
    """
    as_array = lambda a: jax.device_put(np.asarray(a, np.float32))
    log_weights = jnp.log(as_array(arrays["weights"]))
    return MixturePrior(as_array(arrays["means"]), as_array(arrays["variances"]), log_weights)


def grid_prior(
    num_classes: int, columns: int = 0, spacing: float = 8.0, variance: float = 4.0
) -> MixturePrior:
    """Components on a square grid in 2-D, row by row from the top left, centred on 0.

    Args:
      num_classes: K.
      columns: grid width; 0 = ceil(sqrt(K)).
      spacing: distance between neighbouring centres.
      variance: component variance (both axes).

    Returns:
      MixturePrior with means/variances [K, 2].
    """
    columns = columns or math.ceil(math.sqrt(num_classes))
    rows = math.ceil(num_classes / columns)
    k = np.arange(num_classes)
    x = (k % columns - (columns - 1) / 2) * spacing
    y = ((rows - 1) / 2 - k // columns) * spacing
    return make_prior(np.stack([x, y], axis=-1), variance)


def groups_prior(
    num_classes: int,
    groups,
    group_radius: float = 20.0,
    within_distance: float = 8.0,
    variance: float = 4.0,
) -> MixturePrior:
    """Classes that share a region: each group's members close together, groups far apart.

    Every class not named in `groups` is a group of its own. Groups sit on a circle of
    radius `group_radius` (in the order: given groups first, then singletons by label);
    the members of a group sit on a small circle around the group's centre, neighbours
    `within_distance` apart (two members: `within_distance` apart on a line).

    Args:
      num_classes: K.
      groups: sequence of sequences of class labels, e.g. ((4, 9), (3, 5, 8)).
      group_radius: radius of the circle of group centres.
      within_distance: distance between neighbouring members of a group.
      variance: component variance (both axes).

    Returns:
      MixturePrior with means/variances [K, 2].
    """
    groups = [tuple(int(c) for c in g) for g in groups]
    named = [c for g in groups for c in g]
    if len(set(named)) != len(named) or any(not 0 <= c < num_classes for c in named):
        raise PriorError(f"groups {groups}: each class in [0, {num_classes}) at most once")
    groups += [(c,) for c in range(num_classes) if c not in named]
    means = np.zeros((num_classes, 2))
    for g, members in enumerate(groups):
        angle = 2 * math.pi * g / len(groups)
        centre = group_radius * np.array([math.cos(angle), math.sin(angle)])
        n = len(members)
        small = 0.0 if n == 1 else within_distance / (2 * math.sin(math.pi / n))
        for j, c in enumerate(members):
            phi = angle + math.pi / 2 + 2 * math.pi * j / n
            means[c] = centre + small * np.array([math.cos(phi), math.sin(phi)])
    return make_prior(means, variance)
