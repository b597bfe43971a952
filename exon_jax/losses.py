"""EXoN objective terms (paper Section 3): per-example, pure, jit/vmap-able.

Every function returns per-example values ([B]) except the scalar objective.
Natural logs, float32.
"""

from __future__ import annotations

import math
from typing import Mapping

import chex
import jax
import jax.numpy as jnp

from exon_jax.priors import MixturePrior

LIKELIHOODS = ("gaussian", "weighted_gaussian")


def _flatten(images: jax.Array) -> jax.Array:
    return images.reshape(images.shape[0], -1)


def kl_upper_bound(
    logits: jax.Array, mean: jax.Array, logvar: jax.Array, prior: MixturePrior
) -> jax.Array:
    """Upper bound on KL(q(z|x) || p(z)) between the two mixtures, paper eq. 14.

    KLu = sum_k w_k (log w_k - log w0_k)
        + sum_k w_k 1/2 sum_j [(mu_kj - mu0_kj)^2 / v0_kj - 1 + log v0_kj - l_kj + exp(l_kj) / v0_kj]

    Args:
      logits: [B, K] mixture logits (w = softmax(logits)).
      mean, logvar: [B, K, d] component means and log-variances.
      prior: designed mixture, means/variances [K, d].

    Returns:
      [B] per-example bound, nats.
    """
    chex.assert_rank(logits, 2)
    chex.assert_rank([mean, logvar], 3)
    chex.assert_equal_shape([mean, logvar])
    chex.assert_equal_shape_prefix([logits, mean], 2)
    chex.assert_equal_shape_suffix([mean, prior.means], 2)
    log_w = jax.nn.log_softmax(logits, axis=-1)
    w = jnp.exp(log_w)
    kl_label = jnp.sum(w * (log_w - prior.log_weights), axis=-1)
    kl_gauss = 0.5 * jnp.sum(
        (mean - prior.means) ** 2 / prior.variances
        - 1.0
        + jnp.log(prior.variances)
        - logvar
        + jnp.exp(logvar) / prior.variances,
        axis=-1,
    )
    return kl_label + jnp.sum(w * kl_gauss, axis=-1)


def gaussian_log_likelihood(x: jax.Array, x_hat: jax.Array, beta) -> jax.Array:
    """log N(x; x_hat, beta I) with shared variance beta, paper eq. 3.

    Args:
      x, x_hat: [B, ...] images (flattened here to [B, m]).
      beta: scalar variance.

    Returns:
      [B] log-likelihoods: -||x - x_hat||^2 / (2 beta) - (m / 2) log(2 pi beta).
    """
    chex.assert_equal_shape([x, x_hat])
    x, x_hat = _flatten(x), _flatten(x_hat)
    m = x.shape[-1]
    squared_error = jnp.sum((x - x_hat) ** 2, axis=-1)
    return -squared_error / (2.0 * beta) - 0.5 * m * jnp.log(2.0 * jnp.pi * beta)


def weighted_gaussian_log_likelihood(
    x: jax.Array, x_hat: jax.Array, epsilon, include_constant: bool = True
) -> jax.Array:
    """Per-pixel-variance Gaussian log-likelihood, paper eq. 13.

    s_j = x_j (1 - x_j) + epsilon; log p = -1/2 sum_j (x_j - x_hat_j)^2 / s_j
    [- 1/2 sum_j log(2 pi s_j) when include_constant]. The constant depends on x only.

    Args:
      x, x_hat: [B, ...] images in [0, 1] (flattened here to [B, m]).
      epsilon: scalar > 0.
      include_constant: add the parameter-free normalising term.

    Returns:
      [B] log-likelihoods.
    """
    chex.assert_equal_shape([x, x_hat])
    x, x_hat = _flatten(x), _flatten(x_hat)
    pixel_variance = x * (1.0 - x) + epsilon
    log_lik = -0.5 * jnp.sum((x - x_hat) ** 2 / pixel_variance, axis=-1)
    if include_constant:
        log_lik = log_lik - 0.5 * jnp.sum(jnp.log(2.0 * jnp.pi * pixel_variance), axis=-1)
    return log_lik


def optimal_beta(x: jax.Array, x_hat: jax.Array, lambda2) -> jax.Array:
    """beta maximising eq. 12 with everything else fixed.

    beta_hat = (1/N) sum_i ||x_i - x_hat_i||^2 / m + lambda2.

    Args:
      x, x_hat: [B, ...] images.
      lambda2: scalar >= 0.

    Returns:
      [] scalar beta_hat.
    """
    chex.assert_equal_shape([x, x_hat])
    x, x_hat = _flatten(x), _flatten(x_hat)
    return jnp.mean(jnp.sum((x - x_hat) ** 2, axis=-1)) / x.shape[-1] + lambda2


def exon_objective(
    x: jax.Array,
    x_hat: jax.Array,
    logits: jax.Array,
    mean: jax.Array,
    logvar: jax.Array,
    labels: jax.Array,
    labelled: jax.Array,
    prior: MixturePrior,
    *,
    lambda1,
    lambda2=0.0,
    beta=1.0,
    epsilon=0.02,
    likelihood: str = "gaussian",
) -> tuple[jax.Array, Mapping[str, jax.Array]]:
    """Negative of the EXoN objective, paper eq. 12, and its terms.

    J = mean_i [log p(x_i | z_i) - KLu_i] + (lambda1 + 1) mean_{i labelled} log w(y_i | x_i)
        - lambda2 m / (2 beta)
    The beta penalty applies to the Gaussian likelihood only; the weighted Gaussian
    (eq. 13) uses neither beta nor lambda2.

    Args:
      x, x_hat: [B, ...] images and their decodings of one latent sample each.
      logits: [B, K] mixture logits; mean, logvar: [B, K, d] posterior components.
      labels: [B] int labels (ignored where not labelled).
      labelled: [B] bool or {0, 1} mask of the labelled examples.
      prior: designed mixture prior.
      lambda1, lambda2, beta, epsilon: scalars (may be traced).
      likelihood: "gaussian" or "weighted_gaussian" (static).

    Returns:
      (loss, terms): scalar -J and a dict of scalar diagnostics.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    chex.assert_shape([labels, labelled], (x.shape[0],))
    m = math.prod(x.shape[1:])
    if likelihood == "gaussian":
        log_lik = gaussian_log_likelihood(x, x_hat, beta)
        beta_penalty = lambda2 * m / (2.0 * beta)
    else:
        log_lik = weighted_gaussian_log_likelihood(x, x_hat, epsilon)
        beta_penalty = jnp.zeros(())
    kl = kl_upper_bound(logits, mean, logvar, prior)
    mask = labelled.astype(log_lik.dtype)
    num_labelled = jnp.maximum(jnp.sum(mask), 1.0)
    log_w = jax.nn.log_softmax(logits, axis=-1)
    safe_labels = jnp.where(labelled, labels, 0).astype(
        jnp.int32
    )  # unlabelled rows may hold any value
    label_log_w = jnp.take_along_axis(log_w, safe_labels[:, None], axis=-1)[:, 0]
    cross_entropy = -jnp.sum(mask * label_log_w) / num_labelled
    correct = (jnp.argmax(logits, axis=-1) == safe_labels).astype(mask.dtype)
    elbo = jnp.mean(log_lik - kl)
    objective = elbo - (lambda1 + 1.0) * cross_entropy - beta_penalty
    terms = {
        "loss": -objective,
        "elbo": elbo,
        "log_likelihood": jnp.mean(log_lik),
        "kl": jnp.mean(kl),
        "cross_entropy": cross_entropy,
        "beta_penalty": beta_penalty,
        "beta": jnp.asarray(beta, log_lik.dtype),
        "labelled_accuracy": jnp.sum(mask * correct) / num_labelled,
    }
    return -objective, terms
