"""Latent-space analysis tools of EXoN (paper Figures 3, 6, 9-13).

Everything here computes and nothing draws: `plots.py` turns the outputs into
figures. The functions are model-agnostic; they take callables

- `decode_fn(z)`: [N, d] latent codes -> [N, H, W, C] images, floats in [0, 1];
- `classify_fn(images)`: [N, H, W, C] images -> [N, K] logits of w(y | x),

which a caller builds from restored parameters, e.g.
`decode_fn = lambda z: decoder.apply(params, z)`. The callables must be
traceable by JAX (pure jnp code, no host round trips). All functions are pure
JAX; integer arguments that set shapes (`size`, `num`, `count`, `chunk_size`)
are static under `jax.jit`, the rest may be traced.

Grid layout (`latent_grid`, `decode_grid`, `label_map`): a size x size grid of
equally spaced points on [-extent, extent]^2 laid out row-major as an image,
row 0 at the TOP (largest second coordinate z_2), columns increasing in the
first coordinate z_1. So index r * size + c of a flat grid, or [r, c] of a
[size, size] map, is the point

    z = (-extent + c * h, extent - r * h),  h = 2 * extent / (size - 1),

and `imshow` with its default `origin='upper'` shows the map the right way up.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import metrics, sampling
from exon_jax.priors import MixturePrior

DecodeFn = Callable[[jax.Array], jax.Array]
ClassifyFn = Callable[[jax.Array], jax.Array]

# Paper settings (Section 4.1, Appendix 6.3.2, Figures 6 and 13).
GRID_EXTENT = 15.0
GRID_SIZE = 13
PREDESIGN_START = (-10.0, 0.0)
PREDESIGN_END = (10.0, 0.0)
PREDESIGN_NUM = 11
TRAVERSAL_LOW = -2.0
TRAVERSAL_HIGH = 2.0
POSTERIOR_KINDS = ("mean", "samples")
DESIGN_SDS = 3.0  # the automatic grid covers every designed centre +- 3 prior sd


def _check(assertion, *args, name: str, **kwargs) -> None:
    """Runs a chex assertion and raises ValueError naming the argument."""
    assertion(*args, **kwargs, custom_message=f"argument `{name}`", exception_type=ValueError)


def _check_positive_int(value, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"argument `{name}` must be an int >= {minimum}, got {value!r}")


def _check_extent(extent) -> None:
    if isinstance(extent, (int, float)) and not extent > 0:
        raise ValueError(f"argument `extent` must be > 0, got {extent!r}")


def latent_grid(extent, size: int) -> jax.Array:
    """Equally spaced points on [-extent, extent]^2, laid out as an image grid.

    Row-major with row 0 at the top: flat index r * size + c holds
    (z_1, z_2) = (-extent + c * h, extent - r * h), h = 2 * extent / (size - 1).
    So the first coordinate increases along a row (left to right) and the second
    decreases down the rows (top to bottom); both run over the full
    [-extent, extent], endpoints included. Reshaped to [size, size, 2] it is the
    latent point under each pixel of a map drawn with `origin='upper'`.

    Args:
      extent: half-width of the square, > 0 (may be traced).
      size: points per side, >= 2 (static). The paper uses 13 on [-15, 15]^2.

    Returns:
      [size * size, 2] float32 points.
    """
    _check_extent(extent)
    _check_positive_int(size, "size", minimum=2)
    return _latent_grid(extent, size)


@functools.partial(jax.jit, static_argnums=1)  # one program, not one per jnp call
def _latent_grid(extent, size: int) -> jax.Array:
    extent = jnp.asarray(extent, jnp.float32)
    ticks = jnp.linspace(-extent, extent, size, dtype=jnp.float32)
    first = jnp.broadcast_to(ticks[None, :], (size, size))  # varies along columns
    second = jnp.broadcast_to(ticks[::-1, None], (size, size))  # top row = +extent
    return jnp.stack([first, second], axis=-1).reshape(size * size, 2)


def decode_grid(decode_fn: DecodeFn, extent=GRID_EXTENT, size: int = GRID_SIZE) -> jax.Array:
    """Decodes every point of `latent_grid(extent, size)` (paper Figure 3, middle).

    The decodings are the image set X of the negative SSIM of paper eq. 19
    (13 x 13 grid on [-15, 15]^2 for the 2-D MNIST latent), in grid order:
    `tile_images(result, size, size)` in `plots` draws the decoded manifold.

    Args:
      decode_fn: [N, 2] codes -> [N, H, W, C] images.
      extent: half-width of the square, > 0.
      size: points per side, >= 2 (static).

    Returns:
      [size * size, H, W, C] images, row-major as in `latent_grid`.
    """
    images = decode_fn(latent_grid(extent, size))
    _check(chex.assert_rank, images, 4, name="decode_fn(z)")
    _check(chex.assert_axis_dimension, images, 0, size * size, name="decode_fn(z)")
    return images


def label_map(
    decode_fn: DecodeFn,
    classify_fn: ClassifyFn,
    extent=GRID_EXTENT,
    size: int = 200,
    chunk_size: int = 2000,
) -> jax.Array:
    """Predicted label of the decoding of every grid point (paper Figure 3, right).

    label[r, c] = argmax_k w(k | D(z_rc)), z_rc the grid point of `latent_grid`.
    The size^2 points are padded (with copies of the last point) to a multiple of
    the chunk and run through `jax.lax.map`, one chunk of decodings at a time, so
    memory is O(chunk_size * H * W * C) whatever the grid size.

    Args:
      decode_fn: [N, 2] codes -> [N, H, W, C] images.
      classify_fn: [N, H, W, C] images -> [N, K] logits.
      extent: half-width of the square, > 0.
      size: points per side, >= 2 (static).
      chunk_size: points decoded and classified together (static, >= 1); capped
        at size^2.

    Returns:
      [size, size] int32 labels; row 0 is the top (z_2 = +extent), columns
      increase in z_1.
    """
    _check_positive_int(chunk_size, "chunk_size")
    points = latent_grid(extent, size)
    num_points = size * size
    chunk_size = min(chunk_size, num_points)
    num_chunks = -(-num_points // chunk_size)
    padding = num_chunks * chunk_size - num_points
    padded = jnp.concatenate([points, jnp.broadcast_to(points[-1:], (padding, 2))], axis=0)

    def classify_chunk(codes: jax.Array) -> jax.Array:
        logits = classify_fn(decode_fn(codes))
        _check(chex.assert_rank, logits, 2, name="classify_fn(images)")
        _check(chex.assert_axis_dimension, logits, 0, codes.shape[0], name="classify_fn(images)")
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    labels = jax.lax.map(classify_chunk, padded.reshape(num_chunks, chunk_size, 2))
    return labels.reshape(-1)[:num_points].reshape(size, size)


def interpolate(start: jax.Array, end: jax.Array, num: int) -> jax.Array:
    """Points on the segment from `start` to `end` (paper Section 4.2, Figures 1, 9, 10).

    z(t) = t * end + (1 - t) * start for t = linspace(0, 1, num); the paper writes
    z(t) = t mu_k(x) + (1 - t) mu_k'(x'), so pass start = mu_k'(x'), end = mu_k(x).
    Row 0 is exactly `start` and row num - 1 exactly `end`.

    Args:
      start: [d] code at t = 0.
      end: [d] code at t = 1.
      num: number of points, >= 2 (static).

    Returns:
      [num, d] codes.
    """
    _check_positive_int(num, "num", minimum=2)
    _check(chex.assert_rank, start, 1, name="start")
    _check(chex.assert_shape, end, start.shape, name="end")
    t = jnp.linspace(0.0, 1.0, num, dtype=jnp.result_type(start, end, jnp.float32))[:, None]
    return t * end + (1.0 - t) * start


def predesign_path(num: int = PREDESIGN_NUM, start=PREDESIGN_START, end=PREDESIGN_END) -> jax.Array:
    """The pre-design interpolation path of paper Appendix 6.3.2 (Figure 9).

    `num` equally spaced 2-D codes from (-10, 0) to (10, 0) by default: the
    segment through both centres of `two_component_prior(distance)` for every
    distance in {8, 16, 24, 32}, so one path serves all four layouts.

    Args:
      num: number of points, >= 2 (static); 11 in the paper.
      start: [d] first code, default (-10, 0).
      end: [d] last code, default (10, 0).

    Returns:
      [num, d] float32 codes.
    """
    return interpolate(jnp.asarray(start, jnp.float32), jnp.asarray(end, jnp.float32), num)


def centre_interpolation(prior: MixturePrior, k_from: int, k_to: int, num: int) -> jax.Array:
    """Interpolation between two designed centres mu0_{k_from} and mu0_{k_to}.

    `interpolate(prior.means[k_from], prior.means[k_to], num)`: decoding it shows
    how the decoder morphs one designed class into another.

    Args:
      prior: designed mixture, means [K, d].
      k_from: component at t = 0 (may be traced).
      k_to: component at t = 1 (may be traced).
      num: number of points, >= 2 (static).

    Returns:
      [num, d] codes.
    """
    num_classes = prior.num_classes
    for name, k in (("k_from", k_from), ("k_to", k_to)):
        if isinstance(k, int) and not 0 <= k < num_classes:
            raise ValueError(f"argument `{name}` must be in [0, {num_classes}), got {k}")
    return interpolate(prior.means[k_from], prior.means[k_to], num)


def noise_probe(key: jax.Array, code: jax.Array, mask: jax.Array, scale, num: int):
    """Uniform noise on the activated vs the non-activated dims (paper Figures 6, 11, 12).

    on_active[i] = code + u_i * mask and on_inactive[i] = code + u'_i * (1 - mask),
    with u_i, u'_i independent draws of U(-scale, scale)^d: the first changes only
    the activated latent subspace, the second everything else. Decoding both shows
    that only the activated dims change the image. The paper uses scale 1.5
    (Figure 6) and 1 (Figures 11, 12).

    Args:
      key: PRNG key.
      code: [d] base code, e.g. mu_k(x) of one input.
      mask: [d] bool, the activated dims (`activated_subspace`'s mask).
      scale: half-width a of the noise, >= 0 (may be traced).
      num: number of noisy copies of each kind, >= 1 (static).

    Returns:
      (on_active, on_inactive): [num, d] codes each. Dims outside the noised set
      equal `code` exactly.
    """
    _check_positive_int(num, "num")
    _check(chex.assert_rank, code, 1, name="code")
    _check(chex.assert_shape, mask, code.shape, name="mask")
    if isinstance(scale, (int, float)) and scale < 0:
        raise ValueError(f"argument `scale` must be >= 0, got {scale!r}")
    mask = mask.astype(bool)
    active_key, inactive_key = jax.random.split(key)
    shape = (num, code.shape[0])
    dtype = jnp.result_type(code, jnp.float32)

    def uniform(noise_key):
        return sampling.draw_flat(
            jax.random.uniform, noise_key, shape, dtype, minval=-scale, maxval=scale
        )

    base = jnp.broadcast_to(code.astype(dtype), shape)
    on_active = jnp.where(mask, base + uniform(active_key), base)
    on_inactive = jnp.where(mask, base, base + uniform(inactive_key))
    return on_active, on_inactive


def traversal(
    code: jax.Array, axis, num: int = 9, low=TRAVERSAL_LOW, high=TRAVERSAL_HIGH
) -> jax.Array:
    """One-axis latent traversal (paper Figure 13).

    Row i is `code` with coordinate `axis` SET to linspace(low, high, num)[i]
    (not shifted by it): the paper's 'value is changed from -2 to 2' with the
    other dims fixed. All other coordinates equal `code` exactly.

    Args:
      code: [d] base code, e.g. mu_k(x) of one input.
      axis: index of the coordinate to traverse, in [0, d) (may be traced).
      num: number of steps, >= 2 (static).
      low: first value of the traversed coordinate.
      high: last value of the traversed coordinate.

    Returns:
      [num, d] codes.
    """
    _check_positive_int(num, "num", minimum=2)
    _check(chex.assert_rank, code, 1, name="code")
    dim = code.shape[0]
    if isinstance(axis, int) and not 0 <= axis < dim:
        raise ValueError(f"argument `axis` must be in [0, {dim}), got {axis}")
    dtype = jnp.result_type(code, jnp.float32)
    values = jnp.linspace(low, high, num, dtype=dtype)
    return jnp.broadcast_to(code.astype(dtype), (num, dim)).at[:, axis].set(values)


def top_activated_axes(ratios: jax.Array, count: int) -> jax.Array:
    """Indices of the `count` largest activation ratios F_j (for Figure 13's axes).

    Sorted by decreasing F; ties go to the lower index. NaN ratios (a class with
    no inputs, see `activated_subspace_by_class`) rank last.

    Args:
      ratios: [d] activation ratios F of one class (`activated_subspace`).
      count: number of axes, 1 <= count <= d (static).

    Returns:
      [count] int32 axis indices.
    """
    _check(chex.assert_rank, ratios, 1, name="ratios")
    _check_positive_int(count, "count")
    if count > ratios.shape[0]:
        raise ValueError(f"argument `count` must be <= d = {ratios.shape[0]}, got {count}")
    ranked = jnp.where(jnp.isnan(ratios), -jnp.inf, ratios)
    return jax.lax.top_k(ranked, count)[1].astype(jnp.int32)


def posterior_codes(
    logits: jax.Array,
    mean: jax.Array,
    logvar: jax.Array,
    kind: str = "mean",
    key: jax.Array | None = None,
) -> jax.Array:
    """The 2-D codes the posterior scatters draw (paper Figures 3 and 4).

    kind "samples": z_i ~ q(z | x_i), the paper's scatter: a component
    y_i ~ Categorical(w(. | x_i)) (an exact draw: the hard Gumbel-max one-hot),
    then z_i = mu_{y_i}(x_i) + exp(logvar_{y_i}(x_i) / 2) * eps_i, eps_i ~ N(0, I).
    kind "mean": mu_{argmax_k w_k}(x_i), the mean of the most probable component
    (`metrics.posterior_mean_code`, no noise).

    Args:
      logits: [N, K] mixture logits.
      mean, logvar: [N, K, d] component means and log-variances.
      kind: "mean" or "samples".
      key: PRNG key (kind "samples" only).

    Returns:
      [N, d] codes.
    """
    if kind == "mean":
        return metrics.posterior_mean_code(logits, mean)
    if kind != "samples":
        raise ValueError(f"argument `kind` must be one of {POSTERIOR_KINDS}, got {kind!r}")
    if key is None:
        raise ValueError("argument `key` is required for kind 'samples'")
    return sampling.sample_latent(key, logits, mean, logvar, hard=True)


# --- the design on the host: grid extent and principal plane (NumPy, for the figures) ------


def design_extent(prior: MixturePrior, sds: float = DESIGN_SDS) -> float:
    """Half-width of the square grid that holds every designed centre +- `sds` prior sd.

    E = max_j max_k (|mu0_kj| + sds * sqrt(v0_kj)) over the first two axes (j < 2): the
    square [-E, E]^2 of `latent_grid` reaches every component's centre plus `sds` of its
    standard deviations along both axes. The paper's circle (radius 12.94, sd 2) gives 18.94;
    a centre at x = 24 with sd 2 gives 30.

    Args:
      prior: a 2-D (or higher; the first two axes count) mixture, means/variances [K, d].
      sds: prior standard deviations beyond each centre.

    Returns:
      E > 0 as a Python float.
    """
    means = np.asarray(prior.means, np.float64)[:, :2]
    sds_of = np.sqrt(np.asarray(prior.variances, np.float64))[:, :2]
    return float(np.max(np.abs(means) + sds * sds_of))


def centres_outside(means, extent: float) -> list[int]:
    """Indices k of the designed centres mu0_k [K, 2+] outside the square [-extent, extent]^2
    (first two axes): the classes a grid of that extent leaves off the decoded manifold."""
    means = np.asarray(means, np.float64)[:, :2]
    return [int(k) for k in np.nonzero(np.any(np.abs(means) > extent, axis=1))[0]]


class PrincipalPlane(NamedTuple):
    """An orthonormal 2-D view of a d-dimensional latent space (`principal_plane`).

    project(z) = (z - centre) @ basis.T maps [N, d] codes to [N, 2].

    Attributes:
      centre: [d] the mean of the designed centres.
      basis: [2, d] orthonormal rows: the axes of the plane.
      explained: [2] share of the designed centres' variance along each axis (the second is
        0 when the centres lie on a line and the axis comes from the codes instead).
    """

    centre: np.ndarray
    basis: np.ndarray
    explained: np.ndarray

    def project(self, z) -> np.ndarray:
        """[N, d] codes -> [N, 2] coordinates on the plane."""
        return (np.asarray(z, np.float64) - self.centre) @ self.basis.T


def principal_plane(means, codes=None, tol: float = 1e-6) -> PrincipalPlane:
    """The principal plane of the K designed centres mu0_k (PCA of the prior means).

    The axes are the first two right singular vectors of the centred means [K, d]
    (`np.linalg.svd`), each signed so that its largest-magnitude entry is positive. When the
    means span fewer than two directions (e.g. the paper's CIFAR blocks prior: K points on
    one line), the missing axis is the principal direction of `codes` orthogonal to the
    axes found (or the first coordinate axis orthogonal to them, without codes), so the
    plane still shows how the codes spread. d = 1: the second axis is all zeros.

    Args:
      means: [K, d] designed centres.
      codes: optional [N, d] codes completing a degenerate plane.
      tol: a singular value below tol x the largest (or below tol) counts as zero.

    Returns:
      `PrincipalPlane` with centre [d], basis [2, d], explained [2].
    """
    means = np.asarray(means, np.float64)
    dim = means.shape[1]
    centre = means.mean(axis=0)
    _, singular, vt = np.linalg.svd(means - centre, full_matrices=False)
    total = float(np.sum(singular**2))
    rank = int(np.sum(singular > tol * max(float(singular[0]) if singular.size else 0.0, 1.0)))
    axes = [vt[i] for i in range(min(rank, 2))]
    explained = [float(singular[i] ** 2 / total) for i in range(len(axes))]
    while len(axes) < 2:
        if dim <= len(axes):
            axes.append(np.zeros(dim))
        else:
            axes.append(_next_axis(axes, dim, codes))
        explained.append(0.0)
    basis = np.stack([_signed(a) for a in axes])
    return PrincipalPlane(centre, basis, np.asarray(explained))


def _signed(axis: np.ndarray) -> np.ndarray:
    """`axis` with the sign that makes its largest-magnitude entry positive."""
    return axis if axis[np.argmax(np.abs(axis))] >= 0 else -axis


def _next_axis(axes: list[np.ndarray], dim: int, codes) -> np.ndarray:
    """A unit vector orthogonal to `axes`: the codes' principal direction in the orthogonal
    complement, else the first coordinate axis with a component left there."""
    known = np.stack(axes) if axes else np.zeros((0, dim))

    def complement(x):
        return x - (x @ known.T) @ known

    if codes is not None and len(codes) > 1:
        residual = complement(np.asarray(codes, np.float64))
        residual = residual - residual.mean(axis=0)
        _, singular, vt = np.linalg.svd(residual, full_matrices=False)
        if singular.size and singular[0] > 1e-9:
            return vt[0]
    for j in range(dim):
        candidate = complement(np.eye(dim)[j])
        norm = float(np.linalg.norm(candidate))
        if norm > 1e-6:
            return candidate / norm
    return np.zeros(dim)
