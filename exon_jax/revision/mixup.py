"""Mix-up, straight-through Gumbel-max and clipped log-probabilities of the revised code.

Follows an-seunghwan/EXoN_official: `non_smooth_mixup` (mnist/mixup.py, mixup.py),
the mix-up cross-entropies in `train` (mnist/main.py, main.py), and
`MixtureVAE.gumbel_max_sample` (mnist/model.py, model.py). Pure functions; the random
draws are split from the pure maths so the maths can be checked by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_LOG_CLIP = 1e-10  # tf.clip_by_value(prob, 1e-10, 1.) before every log in their losses
_GUMBEL_EPS = 1e-8  # their log(prob + 1e-8) and -log(-log(U + 1e-8) + 1e-8)


def clipped_log_prob(logits: jax.Array) -> jax.Array:
    """log(clip(softmax(logits), 1e-10, 1)), [..., K]: their classifiers output softmax."""
    return jnp.log(jnp.clip(jax.nn.softmax(logits, axis=-1), _LOG_CLIP, 1.0))


def mixup(images: jax.Array, targets: jax.Array, weight: jax.Array, permutation: jax.Array):
    """Mixes each example with a shuffled partner ("non-smooth" mix-up).

    Args:
      images: [B, H, W, C].
      targets: [B, K] one-hot labels or soft pseudo-labels.
      weight: [] mixing weight w (drawn once per batch).
      permutation: int [B] the shuffle.

    Returns:
      (w * images[perm] + (1 - w) * images  [B, H, W, C],  targets[perm]  [B, K]).
    """
    shuffled = images[permutation]
    return weight * shuffled + (1.0 - weight) * images, targets[permutation]


def mixup_cross_entropy(
    log_probs: jax.Array, targets: jax.Array, shuffled_targets: jax.Array, weight: jax.Array
) -> jax.Array:
    """-sum_b [w <t_perm(b), log p_b> + (1 - w) <t_b, log p_b>], summed over the batch; [].

    Args:
      log_probs: [B, K] (clipped) log-probabilities on the mixed images.
      targets, shuffled_targets: [B, K].
      weight: [] the mixing weight.
    """
    mixed = weight * shuffled_targets + (1.0 - weight) * targets
    return -jnp.sum(mixed * log_probs)


def beta_pair(key: jax.Array, alpha_first: float, alpha_second: float) -> jax.Array:
    """Two independent draws w1 ~ Beta(a1, a1), w2 ~ Beta(a2, a2); [2] float32.

    Beta(a, a) = G1 / (G1 + G2) with G1, G2 ~ Gamma(a), from ONE log-gamma sampler call
    (the sampler is a rejection loop that is slow to compile on XLA:CPU; jax.random.beta
    would compile it twice per draw).
    """
    alphas = jnp.asarray([alpha_first, alpha_first, alpha_second, alpha_second], jnp.float32)
    log_g = jax.random.loggamma(key, alphas).reshape(2, 2)
    return jnp.exp(log_g[:, 0] - jax.nn.logsumexp(log_g, axis=1))


def draw_mixup(key: jax.Array, images: jax.Array, targets: jax.Array, weight: jax.Array):
    """A uniform permutation, then `mixup` with the given weight.

    Returns:
      (mixed images [B, ...], shuffled targets [B, K]).
    """
    return mixup(images, targets, weight, jax.random.permutation(key, images.shape[0]))


def gumbel_max_hard(probs: jax.Array, uniform: jax.Array) -> jax.Array:
    """Straight-through Gumbel-max of their `gumbel_max_sample` (hard=True).

    s = log(p + 1e-8) + g, g = -log(-log(u + 1e-8) + 1e-8). Forward value: one_hot(argmax s)
    (their `tf.equal(s, max s)`; ties have probability 0). Gradient: that of s itself,
    d s_k / d p_k = 1 / (p_k + 1e-8) -- no softmax and no temperature, unlike
    `exon_jax.sampling.gumbel_softmax`.

    Args:
      probs: [B, K] classifier probabilities.
      uniform: [B, K] draws from U[0, 1).

    Returns:
      [B, K], exactly one-hot in the forward pass.
    """
    gumbel = -jnp.log(-jnp.log(uniform + _GUMBEL_EPS) + _GUMBEL_EPS)
    scores = jnp.log(probs + _GUMBEL_EPS) + gumbel
    hard = jax.nn.one_hot(jnp.argmax(scores, axis=-1), scores.shape[-1], dtype=scores.dtype)
    return hard + (scores - jax.lax.stop_gradient(scores))
