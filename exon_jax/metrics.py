"""The paper's evaluation metrics and latent diagnostics (paper Section 4, eq. 18-20).

Every function here is pure, jit-able and vmap-able over a leading model axis
(e.g. `jax.vmap(negative_ssim)` on [M, N, H, W, C] decodings). Inputs are
checked with chex at entry; a bad shape raises `ValueError` naming the argument.

- `classification_error`, paper eq. 20.
- `mean_kl`, paper eq. 18 (mean of the eq. 14 bound, no sampling).
- `pairwise_ssim`, `negative_ssim`, paper eq. 19 (SSIM as dm-pix computes it).
- `activated_subspace`, `activated_subspace_by_class`, paper Section 3.2.
- `design_fidelity`, with `posterior_mean_code` / `expected_code`: how well the
  codes of each class sit on the component designed for its label.

Empty classes: statistics averaged over the examples of a class are 0/0 = NaN
for a class with no examples; scalar summaries over classes skip those NaNs.
"""

from __future__ import annotations

import functools
from typing import Mapping

import chex
import jax
import jax.numpy as jnp

from exon_jax.losses import kl_upper_bound
from exon_jax.priors import MixturePrior

# SSIM settings of paper eq. 19 (Wang et al. 2004 defaults).
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_MAX_VAL = 1.0


def _check(assertion, *args, name: str, **kwargs) -> None:
    """Runs a chex assertion and raises ValueError naming the argument."""
    assertion(*args, **kwargs, custom_message=f"argument `{name}`", exception_type=ValueError)


def _check_labels(labels, num_examples: int, name: str = "labels") -> None:
    _check(chex.assert_shape, labels, (num_examples,), name=name)
    _check(chex.assert_type, labels, int, name=name)


def classification_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Share of examples whose most probable component is not their label, paper eq. 20.

    error = (1/N) sum_i 1[argmax_k w(k | x_i) != y_i].

    Args:
      logits: [N, K] mixture logits a(x) (w = softmax(logits); argmax is the same).
      labels: [N] integer labels in {0..K-1}.

    Returns:
      [] error rate in [0, 1].
    """
    _check(chex.assert_rank, logits, 2, name="logits")
    _check_labels(labels, logits.shape[0])
    wrong = jnp.argmax(logits, axis=-1) != labels
    return jnp.mean(wrong.astype(jnp.float32))


def mean_kl(
    logits: jax.Array, mean: jax.Array, logvar: jax.Array, prior: MixturePrior
) -> jax.Array:
    """Mean KL upper bound over a data set, paper eq. 18 (eq. 14 per example).

    KL = (1/N) sum_i KLu(x_i), using w, mu, logvar of each example; no sampling.

    Args:
      logits: [N, K] mixture logits.
      mean, logvar: [N, K, d] component means and log-variances.
      prior: designed mixture, means/variances [K, d].

    Returns:
      [] mean bound, nats.
    """
    _check(chex.assert_rank, logits, 2, name="logits")
    _check(chex.assert_shape, mean, (*logits.shape, prior.latent_dim), name="mean")
    _check(chex.assert_shape, logvar, mean.shape, name="logvar")
    return jnp.mean(kl_upper_bound(logits, mean, logvar, prior))


def _check_images(images: jax.Array) -> jax.Array:
    _check(chex.assert_rank, images, 4, name="images")
    height, width = images.shape[1:3]
    if min(height, width) < SSIM_FILTER_SIZE:
        raise ValueError(
            f"argument `images`: SSIM needs images of at least "
            f"{SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE}, got {height}x{width}"
        )
    return images.astype(jnp.float32)


def _gaussian_window_matrix(size: int) -> jax.Array:
    """[size - F + 1, size] matrix of dm-pix's 1-D SSIM filter ('valid', F = SSIM_FILTER_SIZE):
    row o holds the normalised Gaussian window (sigma SSIM_FILTER_SIGMA) at columns o..o+F-1
    (`jnp.convolve`'s flipped kernel), so `A @ z` filters z along its axis."""
    half = SSIM_FILTER_SIZE // 2
    shift = (2 * half - SSIM_FILTER_SIZE + 1) / 2
    taps = jnp.exp(-0.5 * ((jnp.arange(SSIM_FILTER_SIZE) - half + shift) / SSIM_FILTER_SIGMA) ** 2)
    taps = (taps / jnp.sum(taps))[::-1]
    rows = size - SSIM_FILTER_SIZE + 1
    offset = jnp.arange(size)[None, :] - jnp.arange(rows)[:, None]  # [rows, size]
    inside = (offset >= 0) & (offset < SSIM_FILTER_SIZE)
    return jnp.where(inside, taps[jnp.clip(offset, 0, SSIM_FILTER_SIZE - 1)], 0.0)


def pairwise_ssim(images: jax.Array, rows_per_block: int | None = None) -> jax.Array:
    """SSIM of every ordered pair of images (the matrix behind paper eq. 19).

    SSIM is single scale with an 11x11 Gaussian window (sigma 1.5), k1 = 0.01,
    k2 = 0.03, data range 1, as `dm_pix.ssim` computes it: 'valid' separable filtering,
    variances clipped at eps^2 and the covariance at sqrt(var_a var_b), the SSIM map
    averaged over pixels and channels. The filtered means and second moments of each
    image are computed once; a pair needs only the filtered product of its two images
    (two small matmuls), rows by `jax.lax.map`, each row one image against all N, so
    memory is O(rows_per_block * N * H * W * C) rather than O(N^2 * H * W * C).

    Args:
      images: [N, H, W, C] images in [0, 1], H and W >= 11.
      rows_per_block: rows computed together per `lax.map` step (static);
        None means one row at a time.

    Returns:
      [N, N] matrix S with S[i, j] = SSIM(images[i], images[j]); symmetric,
      ones on the diagonal.
    """
    images = jnp.moveaxis(_check_images(images), 3, 1)  # [N, C, H, W]: channels batch
    across_h = _gaussian_window_matrix(images.shape[2])
    across_w = _gaussian_window_matrix(images.shape[3])

    def blur(x):  # [..., H, W] -> [..., H', W']
        return jnp.matmul(jnp.matmul(across_h, x), across_w.T)

    mu = blur(images)  # [N, C, H', W']
    variance = jnp.maximum(jnp.finfo(jnp.float32).eps ** 2, blur(images**2) - mu**2)
    c1 = (SSIM_K1 * SSIM_MAX_VAL) ** 2
    c2 = (SSIM_K2 * SSIM_MAX_VAL) ** 2

    def ssim_row(row):
        image, mu_i, variance_i = row
        mu_ij = mu_i * mu
        covariance = blur(image * images) - mu_ij
        covariance = jnp.sign(covariance) * jnp.minimum(
            jnp.sqrt(variance_i * variance), jnp.abs(covariance)
        )
        numerator = (2 * mu_ij + c1) * (2 * covariance + c2)
        denominator = (mu_i**2 + mu**2 + c1) * (variance_i + variance + c2)
        return jnp.mean(numerator / denominator, axis=(1, 2, 3))

    return jax.lax.map(ssim_row, (images, mu, variance), batch_size=rows_per_block)


def negative_ssim(images: jax.Array, rows_per_block: int | None = None) -> jax.Array:
    """Negative SSIM of an image set, paper eq. 19.

    nSSIM(X) = 1/2 (1 - (1/|X|^2) sum_{(x, x') in X x X} SSIM(x, x')), over all
    ordered pairs including x = x'. 0 for a set of identical images; larger
    means a more diverse set.

    Args:
      images: [N, H, W, C] images in [0, 1], H and W >= 11.
      rows_per_block: see `pairwise_ssim`.

    Returns:
      [] negative SSIM.
    """
    return 0.5 * (1.0 - jnp.mean(pairwise_ssim(images, rows_per_block)))


def activated_subspace(mean: jax.Array, logvar: jax.Array, threshold=0.1):
    """Activated latent dimensions of one class, paper Section 3.2 (Figures 5, 14).

    F_j = Var_x[mu_j(x)] / E_x[exp(logvar_j(x))]   (SSR / SSE),
    with the population variance (ddof = 0) and both moments over the inputs x
    of the class; dimension j is activated when F_j > threshold.

    Args:
      mean: [N, d] class-k component means mu_k(x) of the class-k inputs.
      logvar: [N, d] matching component log-variances.
      threshold: delta, scalar (may be traced).

    Returns:
      (F, mask): [d] float ratios and [d] bool mask F > threshold.
    """
    _check(chex.assert_rank, mean, 2, name="mean")
    _check(chex.assert_shape, logvar, mean.shape, name="logvar")
    explained = jnp.var(mean, axis=0)
    residual = jnp.mean(jnp.exp(logvar), axis=0)
    ratio = explained / residual
    return ratio, ratio > threshold


def activated_subspace_by_class(
    mean: jax.Array, logvar: jax.Array, labels: jax.Array, num_classes: int, threshold=0.1
):
    """`activated_subspace` for every class at once, paper Section 3.2.

    F_kj = Var_{x: y=k}[mu_kj(x)] / E_{x: y=k}[exp(logvar_kj(x))]: for class k the
    moments are over the inputs labelled k, using component k of the posterior.
    Computed with per-class masked means (no loop over classes). A class with no
    inputs gets F = NaN and mask False.

    Args:
      mean: [N, K, d] component means mu(x).
      logvar: [N, K, d] component log-variances.
      labels: [N] integer labels in {0..K-1}.
      num_classes: K (static).
      threshold: delta, scalar (may be traced).

    Returns:
      (F, mask): [K, d] float ratios and [K, d] bool mask F > threshold.
    """
    _check(chex.assert_rank, mean, 3, name="mean")
    _check(chex.assert_axis_dimension, mean, 1, num_classes, name="mean")
    _check(chex.assert_shape, logvar, mean.shape, name="logvar")
    _check_labels(labels, mean.shape[0])
    weights = jax.nn.one_hot(labels, num_classes, dtype=mean.dtype)  # [N, K]
    counts = jnp.sum(weights, axis=0)[:, None]  # [K, 1]

    def class_mean(values):  # [N, K, d] -> [K, d], mean over inputs of class k
        return jnp.einsum("nk,nkd->kd", weights, values) / counts

    centre = class_mean(mean)
    explained = class_mean((mean - centre) ** 2)
    residual = class_mean(jnp.exp(logvar))
    ratio = explained / residual
    return ratio, ratio > threshold


def posterior_mean_code(logits: jax.Array, mean: jax.Array) -> jax.Array:
    """Mean of the most probable posterior component: mu_{argmax_k w_k}(x).

    Args:
      logits: [N, K] mixture logits.
      mean: [N, K, d] component means.

    Returns:
      [N, d] codes.
    """
    _check(chex.assert_rank, logits, 2, name="logits")
    _check(chex.assert_rank, mean, 3, name="mean")
    _check(chex.assert_equal_shape_prefix, [logits, mean], 2, name="mean")
    best = jnp.argmax(logits, axis=-1)
    return jnp.take_along_axis(mean, best[:, None, None], axis=1)[:, 0]


def expected_code(logits: jax.Array, mean: jax.Array) -> jax.Array:
    """Posterior mean of z: E_q[z | x] = sum_k w_k mu_k(x).

    Args:
      logits: [N, K] mixture logits (w = softmax(logits)).
      mean: [N, K, d] component means.

    Returns:
      [N, d] codes.
    """
    _check(chex.assert_rank, logits, 2, name="logits")
    _check(chex.assert_rank, mean, 3, name="mean")
    _check(chex.assert_equal_shape_prefix, [logits, mean], 2, name="mean")
    return jnp.einsum("nk,nkd->nd", jax.nn.softmax(logits, axis=-1), mean)


@functools.partial(jax.jit, static_argnames=("dof", "iterations"))
def chi2_quantile(probability, dof: int, iterations: int = 64) -> jax.Array:
    """Quantile of the chi-square distribution with `dof` degrees of freedom.

    Solves P(dof/2, q/2) = probability (regularised lower incomplete gamma) by
    bisection, so it is pure JAX and jit-able; `probability` may be traced.

    Args:
      probability: scalar in (0, 1).
      dof: degrees of freedom (static, >= 1).
      iterations: bisection steps (static).

    Returns:
      [] float32 quantile q.
    """
    if dof < 1:  # static, so checked once per trace
        raise ValueError(f"argument `dof` must be >= 1, got {dof}")
    probability = jnp.asarray(probability, jnp.float32)
    half_dof = jnp.float32(0.5 * dof)
    # The chi2(d) quantile for any p < 1 - 1e-12 is far below d + 20 sqrt(2d) + 60.
    upper = jnp.float32(dof + 20.0 * (2.0 * dof) ** 0.5 + 60.0)

    def bisect(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        below = jax.scipy.special.gammainc(half_dof, 0.5 * middle) < probability
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    low, high = jax.lax.fori_loop(0, iterations, bisect, (jnp.float32(0.0), upper))
    return 0.5 * (low + high)


def design_fidelity(
    codes: jax.Array, labels: jax.Array, prior: MixturePrior
) -> Mapping[str, jax.Array]:
    """How closely each class's codes follow the prior component designed for its label.

    With m_k the mean code of the examples labelled k and (mu0_k, v0_k) the
    designed centre and variances:
      centre_distance_k = || (m_k - mu0_k) / sqrt(v0_k) ||_2
        (distance of the class centroid from its centre, in prior standard deviations);
      inside_95_k = share of class-k codes z with
        sum_j (z_j - mu0_kj)^2 / v0_kj <= chi2.ppf(0.95, d)
        (inside the 95% ellipsoid of component k; 0.95 when codes follow N(mu0_k, v0_k)).
    Codes are usually `posterior_mean_code` or `expected_code` of the encoder output.
    A class with no examples gets NaN in both; the scalar summaries skip NaNs.

    Args:
      codes: [N, d] latent codes.
      labels: [N] integer labels in {0..K-1}.
      prior: designed mixture, means/variances [K, d].

    Returns:
      dict with `centre_distance` [K], `inside_95` [K], `max_centre_distance` [],
      `mean_inside_95` [] (mean over classes, unweighted).
    """
    num_classes, latent_dim = prior.num_classes, prior.latent_dim
    _check(chex.assert_shape, codes, (None, latent_dim), name="codes")
    _check_labels(labels, codes.shape[0])
    codes = codes.astype(jnp.float32)
    weights = jax.nn.one_hot(labels, num_classes, dtype=codes.dtype)  # [N, K]
    counts = jnp.sum(weights, axis=0)  # [K]
    centroid = (weights.T @ codes) / counts[:, None]  # [K, d]
    centre_distance = jnp.sqrt(jnp.sum((centroid - prior.means) ** 2 / prior.variances, axis=-1))
    squared_distance = jnp.sum(
        (codes - prior.means[labels]) ** 2 / prior.variances[labels], axis=-1
    )  # [N]
    inside = (squared_distance <= chi2_quantile(0.95, latent_dim)).astype(codes.dtype)
    inside_95 = (weights.T @ inside) / counts
    return {
        "centre_distance": centre_distance,
        "inside_95": inside_95,
        "max_centre_distance": jnp.nanmax(centre_distance),
        "mean_inside_95": jnp.nanmean(inside_95),
    }
