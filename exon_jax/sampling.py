"""Reparameterised sampling from the mixture posterior q(z | x) (paper Section 3.2)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gumbel_softmax(
    key: jax.Array, logits: jax.Array, temperature: float = 1.0, hard: bool = False
) -> jax.Array:
    """Gumbel-Softmax relaxation of a categorical draw.

    y = softmax((log w + g) / temperature), g_k = -log(-log u_k), u ~ U(0, 1).
    With `hard`, the forward value is one_hot(argmax y) and the gradient is the
    soft sample's (straight-through).

    Args:
      key: PRNG key.
      logits: [..., K] unnormalised log-probabilities (log w up to a constant).
      temperature: relaxation temperature tau > 0.
      hard: straight-through one-hot samples.

    Returns:
      [..., K] samples on the simplex, dtype of `logits`.
    """
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    soft = jax.nn.softmax((jax.nn.log_softmax(logits, axis=-1) + gumbel) / temperature, axis=-1)
    if not hard:
        return soft
    one_hot = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=soft.dtype)
    return one_hot + (soft - jax.lax.stop_gradient(soft))  # exactly one_hot forward


def sample_latent(
    key: jax.Array,
    logits: jax.Array,
    mean: jax.Array,
    logvar: jax.Array,
    temperature: float = 1.0,
    hard: bool = False,
) -> jax.Array:
    """z = sum_k y_k (mu_k + exp(logvar_k / 2) eps_k), y ~ GumbelSoftmax(w).

    Args:
      key: PRNG key.
      logits: [B, K] mixture logits.
      mean, logvar: [B, K, d] component means and log-variances.
      temperature, hard: see `gumbel_softmax`.

    Returns:
      [B, d] one latent sample per example.
    """
    chex.assert_rank(logits, 2)
    chex.assert_rank([mean, logvar], 3)
    chex.assert_equal_shape([mean, logvar])
    chex.assert_equal_shape_prefix([logits, mean], 2)
    gumbel_key, noise_key = jax.random.split(key)
    y = gumbel_softmax(gumbel_key, logits, temperature, hard)
    noise = jax.random.normal(noise_key, mean.shape, mean.dtype)
    components = mean + jnp.exp(0.5 * logvar) * noise
    return jnp.einsum("bk,bkd->bd", y, components)
