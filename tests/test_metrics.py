"""Tests for exon_jax.metrics against independent oracles.

Oracles: NumPy re-derivations (eqs. 14, 18, 20, the activated-subspace ratio),
scikit-image's SSIM (eq. 19), SciPy's chi-square quantile, and distributions
whose statistics are known (codes drawn from the prior itself).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import chi2
from skimage.metrics import structural_similarity

from exon_jax import metrics
from exon_jax.priors import blocks_prior, circle_prior, make_prior


# Whole-function jit: one compile per test instead of one per eager op.
design_fidelity = jax.jit(metrics.design_fidelity)
activated_subspace_by_class = jax.jit(
    metrics.activated_subspace_by_class, static_argnames="num_classes"
)


def _random_posterior(rng, num_examples, num_classes, latent_dim):
    logits = rng.normal(size=(num_examples, num_classes)).astype(np.float32)
    mean = rng.normal(scale=3.0, size=(num_examples, num_classes, latent_dim)).astype(np.float32)
    logvar = rng.normal(scale=0.5, size=(num_examples, num_classes, latent_dim)).astype(np.float32)
    return logits, mean, logvar


def _random_prior(rng, num_classes, latent_dim):
    means = rng.normal(scale=4.0, size=(num_classes, latent_dim))
    variances = rng.uniform(0.5, 4.0, size=(num_classes, latent_dim))
    weights = rng.uniform(0.5, 2.0, size=num_classes)
    return make_prior(means, variances, weights)


# ---------------------------------------------------------------- eq. 20, eq. 18


def test_classification_error_matches_numpy_count():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(257, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=257)
    labels[:100] = np.argmax(logits[:100], axis=1)  # make a known share correct
    expected = np.count_nonzero(np.argmax(logits, axis=1) != labels) / 257
    error = metrics.classification_error(jnp.asarray(logits), jnp.asarray(labels))
    assert error.shape == ()
    np.testing.assert_allclose(error, expected, rtol=1e-6)


def test_classification_error_rejects_bad_labels_shape():
    with pytest.raises(ValueError, match="labels"):
        metrics.classification_error(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32))


def _numpy_kl_upper_bound(logits, mean, logvar, prior):
    """Paper eq. 14 in float64, written out term by term."""
    logits, mean, logvar = (np.asarray(a, np.float64) for a in (logits, mean, logvar))
    mu0, v0 = np.asarray(prior.means, np.float64), np.asarray(prior.variances, np.float64)
    log_w0 = np.asarray(prior.log_weights, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_w = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    w = np.exp(log_w)
    label_term = np.sum(w * (log_w - log_w0), axis=1)
    gauss = 0.5 * np.sum(
        (mean - mu0) ** 2 / v0 - 1 + np.log(v0) - logvar + np.exp(logvar) / v0, axis=2
    )
    return label_term + np.sum(w * gauss, axis=1)


def test_mean_kl_matches_numpy_eq14_average():
    rng = np.random.default_rng(1)
    logits, mean, logvar = _random_posterior(rng, 64, 4, 3)
    prior = _random_prior(rng, 4, 3)
    expected = _numpy_kl_upper_bound(logits, mean, logvar, prior).mean()
    value = metrics.mean_kl(jnp.asarray(logits), jnp.asarray(mean), jnp.asarray(logvar), prior)
    assert value.shape == ()
    np.testing.assert_allclose(value, expected, rtol=1e-5)


# ---------------------------------------------------------------- eq. 19 (SSIM)


def _skimage_ssim(a, b):
    """Reference SSIM with the settings of eq. 19 (Gaussian 11x11 window, sigma 1.5)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    if a.shape[-1] == 1:
        return structural_similarity(a[..., 0], b[..., 0], **kwargs)
    return structural_similarity(a, b, channel_axis=-1, **kwargs)


def _skimage_pairwise(images):
    return np.array([[_skimage_ssim(a, b) for b in images] for a in images])


def _structured_images(rng):
    """Smoothed noise, shifted and contrast-changed copies, a blank image: [6, 28, 28, 1]."""
    smooth = np.stack([ndimage.gaussian_filter(rng.random((28, 28)), 2.0) for _ in range(3)])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    shifted = ndimage.shift(smooth[0], (2, 3), order=1, mode="nearest")
    contrast = 0.5 + 0.3 * (smooth[1] - 0.5)
    blank = np.zeros((28, 28))
    return np.concatenate([smooth, shifted[None], contrast[None], blank[None]])[..., None]


@pytest.mark.parametrize("kind", ["random", "structured", "rgb", "constant"])
def test_pairwise_ssim_matches_skimage(kind):
    rng = np.random.default_rng(2)
    if kind == "random":
        images = rng.random((5, 28, 28, 1))
    elif kind == "structured":
        images = _structured_images(rng)
    elif kind == "rgb":
        images = rng.random((4, 32, 32, 3))
    else:  # flat images (e.g. blank decodings): only the stabilising constants matter
        images = np.broadcast_to(np.array([0.0, 0.3, 1.0])[:, None, None, None], (3, 20, 24, 1))
    images = np.asarray(images, np.float32)
    matrix = metrics.pairwise_ssim(jnp.asarray(images))
    assert matrix.shape == (len(images), len(images))
    np.testing.assert_allclose(matrix, _skimage_pairwise(images), atol=1e-4)


def test_pairwise_ssim_is_symmetric_with_unit_diagonal():
    images = jnp.asarray(np.random.default_rng(3).random((7, 28, 28, 1)), jnp.float32)
    matrix = np.asarray(metrics.pairwise_ssim(images))
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)


def test_pairwise_ssim_row_blocks_give_same_matrix():
    images = jnp.asarray(np.random.default_rng(4).random((6, 16, 16, 1)), jnp.float32)
    np.testing.assert_allclose(
        metrics.pairwise_ssim(images, rows_per_block=3), metrics.pairwise_ssim(images), atol=1e-6
    )


def test_negative_ssim_is_zero_for_identical_images():
    image = np.random.default_rng(5).random((28, 28, 1))
    images = jnp.asarray(np.broadcast_to(image, (6, 28, 28, 1)), jnp.float32)
    np.testing.assert_allclose(metrics.negative_ssim(images), 0.0, atol=1e-6)


def test_negative_ssim_matches_skimage_pairs():
    images = np.random.default_rng(6).random((5, 28, 28, 1)).astype(np.float32)
    expected = 0.5 * (1.0 - _skimage_pairwise(images).mean())
    value = metrics.negative_ssim(jnp.asarray(images))
    assert value.shape == ()
    np.testing.assert_allclose(value, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 8, 28, 1)])
def test_ssim_rejects_bad_image_shapes(shape):
    with pytest.raises(ValueError, match="images"):
        metrics.negative_ssim(jnp.zeros(shape))


# ---------------------------------------------------------------- activated subspace


def test_activated_subspace_recovers_designed_dimensions():
    rng = np.random.default_rng(7)
    spread = np.array([0.5, 0.05, 2.0, 0.0, 0.3, 0.1])  # Var_x[mu_j] chosen exactly
    logvar_value = np.log(2.0)  # E_x[exp(logvar_j)] = 2, so F_j = spread_j / 2
    unit = rng.normal(size=(500, 1))
    unit = (unit - unit.mean()) / unit.std()  # mean 0, population variance 1
    mean = 1.0 + unit * np.sqrt(spread)
    logvar = np.full_like(mean, logvar_value)
    ratio, mask = metrics.activated_subspace(
        jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32)
    )
    np.testing.assert_allclose(ratio, spread / 2.0, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(mask, [True, False, True, False, True, False])
    _, loose_mask = metrics.activated_subspace(
        jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32), threshold=0.01
    )
    np.testing.assert_array_equal(loose_mask, [True, True, True, False, True, True])


def test_activated_subspace_matches_numpy():
    rng = np.random.default_rng(8)
    mean = rng.normal(scale=rng.uniform(0.1, 3.0, size=8), size=(300, 8))
    logvar = rng.normal(size=(300, 8))
    expected = np.var(mean, axis=0) / np.mean(np.exp(logvar), axis=0)
    ratio, mask = metrics.activated_subspace(
        jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32)
    )
    np.testing.assert_allclose(ratio, expected, rtol=1e-5)
    np.testing.assert_array_equal(mask, expected > 0.1)


def test_activated_subspace_by_class_matches_per_class_loop():
    rng = np.random.default_rng(9)
    num_classes, latent_dim = 5, 4
    _, mean, logvar = _random_posterior(rng, 120, num_classes, latent_dim)
    labels = rng.integers(0, num_classes - 1, size=120)  # the last class has no inputs
    ratio, mask = activated_subspace_by_class(
        jnp.asarray(mean), jnp.asarray(logvar), jnp.asarray(labels), num_classes=num_classes
    )
    assert ratio.shape == mask.shape == (num_classes, latent_dim)
    for k in range(num_classes - 1):
        rows = labels == k
        expected = np.var(mean[rows, k].astype(np.float64), axis=0) / np.mean(
            np.exp(logvar[rows, k].astype(np.float64)), axis=0
        )
        np.testing.assert_allclose(ratio[k], expected, rtol=1e-5)
        np.testing.assert_array_equal(mask[k], expected > 0.1)
        single_ratio, _ = metrics.activated_subspace(
            jnp.asarray(mean[rows, k]), jnp.asarray(logvar[rows, k])
        )
        np.testing.assert_allclose(ratio[k], single_ratio, rtol=1e-5)
    assert np.all(np.isnan(ratio[-1])) and not np.any(mask[-1])


# ---------------------------------------------------------------- codes and design fidelity


def test_posterior_mean_code_and_expected_code_match_numpy():
    rng = np.random.default_rng(10)
    logits, mean, _ = _random_posterior(rng, 50, 6, 3)
    best = np.argmax(logits, axis=1)
    np.testing.assert_array_equal(
        metrics.posterior_mean_code(jnp.asarray(logits), jnp.asarray(mean)),
        mean[np.arange(50), best],
    )
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        metrics.expected_code(jnp.asarray(logits), jnp.asarray(mean)),
        np.einsum("nk,nkd->nd", w, mean),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("dof", [1, 2, 10, 300])
def test_chi2_quantile_matches_scipy(dof):
    probabilities = np.array([0.05, 0.5, 0.95, 0.999], np.float32)
    quantile = jax.jit(jax.vmap(metrics.chi2_quantile, in_axes=(0, None)), static_argnums=1)
    np.testing.assert_allclose(
        quantile(probabilities, dof), chi2.ppf(probabilities, dof), rtol=1e-5
    )


def _prior_codes(prior, per_class, seed):
    """per_class codes of every class drawn from its own prior component."""
    rng = np.random.default_rng(seed)
    num_classes, latent_dim = prior.means.shape
    labels = np.repeat(np.arange(num_classes), per_class)
    noise = rng.normal(size=(labels.size, latent_dim))
    codes = np.asarray(prior.means)[labels] + np.sqrt(np.asarray(prior.variances))[labels] * noise
    return codes, labels


@pytest.mark.parametrize(
    "prior", [circle_prior(), blocks_prior(3, 4, 6, max_mean=3.0)], ids=["circle", "blocks"]
)
def test_design_fidelity_of_codes_drawn_from_the_prior(prior):
    per_class = 4000
    codes, labels = _prior_codes(prior, per_class, seed=11)
    result = design_fidelity(jnp.asarray(codes, jnp.float32), jnp.asarray(labels), prior)
    latent_dim = codes.shape[1]
    # n_k * distance_k^2 ~ chi2(d) for a centroid of n_k standard normal codes.
    bound = np.sqrt(chi2.ppf(1.0 - 1e-5, latent_dim) / per_class)
    assert np.all(result["centre_distance"] < bound)
    assert float(result["max_centre_distance"]) < bound
    standard_error = np.sqrt(0.95 * 0.05 / per_class)
    np.testing.assert_allclose(result["inside_95"], 0.95, atol=4.5 * standard_error)
    np.testing.assert_allclose(result["mean_inside_95"], 0.95, atol=4.5 * standard_error)


def test_design_fidelity_of_shifted_codes_matches_numpy():
    prior = blocks_prior(3, 4, 6, max_mean=3.0)
    per_class = 4000
    codes, labels = _prior_codes(prior, per_class, seed=12)
    variances = np.asarray(prior.variances)
    codes[:, 5] += 2.0 * np.sqrt(variances[labels, 5])  # 2 prior standard deviations
    result = design_fidelity(jnp.asarray(codes, jnp.float32), jnp.asarray(labels), prior)
    noise_bound = np.sqrt(chi2.ppf(1.0 - 1e-5, codes.shape[1]) / per_class)
    np.testing.assert_allclose(result["centre_distance"], 2.0, atol=noise_bound)
    squared = np.sum((codes - np.asarray(prior.means)[labels]) ** 2 / variances[labels], axis=1)
    inside = squared <= chi2.ppf(0.95, codes.shape[1])
    expected = np.array([inside[labels == k].mean() for k in range(3)])
    np.testing.assert_allclose(result["inside_95"], expected, atol=2.0 / per_class)
    assert np.all(expected < 0.9)  # the shift is visible in the ellipsoid share


def test_design_fidelity_empty_class_is_nan_and_skipped():
    prior = circle_prior(num_classes=4)
    codes, labels = _prior_codes(prior, 200, seed=13)
    keep = labels != 2
    result = design_fidelity(
        jnp.asarray(codes[keep], jnp.float32), jnp.asarray(labels[keep]), prior
    )
    assert np.isnan(result["centre_distance"][2]) and np.isnan(result["inside_95"][2])
    assert np.isfinite(result["max_centre_distance"]) and np.isfinite(result["mean_inside_95"])
    np.testing.assert_allclose(
        result["mean_inside_95"], np.mean(np.asarray(result["inside_95"])[[0, 1, 3]]), rtol=1e-6
    )


def test_design_fidelity_rejects_wrong_latent_dim():
    with pytest.raises(ValueError, match="codes"):
        metrics.design_fidelity(jnp.zeros((5, 3)), jnp.zeros((5,), jnp.int32), circle_prior())


# ---------------------------------------------------------------- jit and vmap over models


def test_metrics_jit_and_vmap_over_model_axis():
    rng = np.random.default_rng(14)
    num_models, num_classes, latent_dim = 3, 4, 2
    posteriors = [_random_posterior(rng, 40, num_classes, latent_dim) for _ in range(num_models)]
    logits, mean, logvar = (jnp.asarray(np.stack(p)) for p in zip(*posteriors))
    labels = jnp.asarray(rng.integers(0, num_classes, size=40))
    prior = circle_prior(num_classes)
    images = jnp.asarray(rng.random((num_models, 4, 16, 16, 1)), jnp.float32)
    by_class = functools.partial(metrics.activated_subspace_by_class, num_classes=num_classes)

    def evaluate(logits, mean, logvar, images):
        codes = metrics.posterior_mean_code(logits, mean)
        return {
            "error": metrics.classification_error(logits, labels),
            "kl": metrics.mean_kl(logits, mean, logvar, prior),
            "nssim": metrics.negative_ssim(images),
            "ratio": by_class(mean, logvar, labels)[0],
            "fidelity": metrics.design_fidelity(codes, labels, prior)["inside_95"],
        }

    batched = jax.jit(jax.vmap(evaluate))(logits, mean, logvar, images)
    evaluate_one = jax.jit(evaluate)
    for m in range(num_models):
        single = evaluate_one(logits[m], mean[m], logvar[m], images[m])
        for name, value in single.items():
            np.testing.assert_allclose(batched[name][m], value, rtol=1e-5, atol=1e-6, err_msg=name)
