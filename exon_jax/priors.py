"""The pre-designed Gaussian-mixture prior p(y) p(z | y) of EXoN (paper Section 3.1).

A prior is plain data (a pytree), so a batch of priors with a leading model
axis can be vmapped like any other hyper-parameter.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


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


def make_prior(means, variances, weights=None) -> MixturePrior:
    """Builds a validated prior.

    Args:
      means: [K, d] component means.
      variances: [K, d] or scalar component variances (broadcast to [K, d]).
      weights: optional [K] positive mixture weights (normalised here); uniform if None.

    Returns:
      A float32 MixturePrior.
    """
    means = jnp.asarray(means, jnp.float32)
    if means.ndim != 2:
        raise ValueError(f"prior means must be [K, d], got shape {means.shape}")
    variances = jnp.broadcast_to(jnp.asarray(variances, jnp.float32), means.shape)
    num_classes = means.shape[0]
    if weights is None:
        log_weights = jnp.full((num_classes,), -math.log(num_classes), jnp.float32)
    else:
        weights = jnp.asarray(weights, jnp.float32)
        if weights.shape != (num_classes,):
            raise ValueError(f"prior weights must be [{num_classes}], got shape {weights.shape}")
        log_weights = jnp.log(weights) - jnp.log(jnp.sum(weights))
    return MixturePrior(means, variances, log_weights)


def circle_prior(num_classes: int = 10, radius: float | None = None,
                 variance: float = 4.0) -> MixturePrior:
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
    return MixturePrior(means, jnp.full((2, 2), variance, jnp.float32),
                        jnp.full((2,), -math.log(2.0), jnp.float32))


def blocks_prior(num_classes: int = 10, relevant_dim: int = 100, irrelevant_dim: int = 200,
                 max_mean: float = 6.0, relevant_variance: float = 0.1,
                 irrelevant_variance: float = 1.0) -> MixturePrior:
    """Label-relevant / label-irrelevant block layout (paper Section 4.2, CIFAR-10).

    The first `relevant_dim` coordinates of mu0_k all equal t_k, with t_k evenly
    spaced from +max_mean (k = 0) to -max_mean (k = K-1); the remaining
    `irrelevant_dim` coordinates are 0. Variances are `relevant_variance` and
    `irrelevant_variance` on the two blocks.

    Returns:
      MixturePrior with means/variances [K, relevant_dim + irrelevant_dim].
    """
    levels = jnp.linspace(max_mean, -max_mean, num_classes)
    means = jnp.concatenate([
        jnp.broadcast_to(levels[:, None], (num_classes, relevant_dim)),
        jnp.zeros((num_classes, irrelevant_dim)),
    ], axis=-1)
    variances = jnp.concatenate([
        jnp.full((num_classes, relevant_dim), relevant_variance),
        jnp.full((num_classes, irrelevant_dim), irrelevant_variance),
    ], axis=-1)
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
    return -0.5 * jnp.sum(diff**2 / prior.variances + jnp.log(2.0 * jnp.pi * prior.variances),
                          axis=-1)


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
    y = jax.random.categorical(label_key, prior.log_weights, shape=(num_samples,))
    noise = jax.random.normal(noise_key, (num_samples, prior.latent_dim))
    z = prior.means[y] + jnp.sqrt(prior.variances[y]) * noise
    return z, y.astype(jnp.int32)
