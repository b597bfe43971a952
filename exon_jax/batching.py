"""Batch order and pixel scaling: pure JAX, no files.

`epoch_batch_indices` gives one epoch's unlabelled and labelled batch indices
(jit-able with the sizes static); `scale_images` turns stored pixels into the
float32 in [0, 1] the networks read. The loaders live in `exon_jax.data`;
training code imports only this module.
"""

import jax
import jax.numpy as jnp
import numpy as np


def num_steps_per_epoch(num_unlabelled: int, batch_unlabelled: int) -> int:
    """Steps in one epoch (one pass over the unlabelled set): ceil(num_unlabelled / batch)."""
    if num_unlabelled < 1 or batch_unlabelled < 1:
        raise ValueError(
            f"num_unlabelled ({num_unlabelled}) and batch_unlabelled "
            f"({batch_unlabelled}) must be positive"
        )
    return -(-int(num_unlabelled) // int(batch_unlabelled))


def _cycled_permutations(key: jax.Array, n: int, total: int) -> jax.Array:
    """First `total` entries of ceil(total / n) independent permutations of range(n)."""
    num = -(-total // n)
    keys = jax.random.split(key, num)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    return perms.reshape(-1)[:total].astype(jnp.int32)


def epoch_batch_indices(
    key: jax.Array,
    num_unlabelled: int,
    num_labelled: int,
    batch_unlabelled: int,
    batch_labelled: int,
) -> tuple[jax.Array, jax.Array]:
    """Batch indices for one epoch; pure and jit-able with the four sizes static.

    Returns int32 (unlabelled [S, batch_unlabelled], labelled [S, batch_labelled]),
    S = num_steps_per_epoch(num_unlabelled, batch_unlabelled). Unlabelled: a
    permutation of range(num_unlabelled) padded with the start of a second,
    independent permutation. Labelled: independent permutations of
    range(num_labelled) concatenated (the labelled set cycled with its own
    shuffles) and cut to S * batch_labelled.
    """
    if num_labelled < 1 or batch_labelled < 1:
        raise ValueError(
            f"num_labelled ({num_labelled}) and batch_labelled ({batch_labelled}) must be positive"
        )
    steps = num_steps_per_epoch(num_unlabelled, batch_unlabelled)
    key_u, key_l = jax.random.split(key)
    unlabelled = _cycled_permutations(key_u, num_unlabelled, steps * batch_unlabelled)
    labelled = _cycled_permutations(key_l, num_labelled, steps * batch_labelled)
    return (unlabelled.reshape(steps, batch_unlabelled), labelled.reshape(steps, batch_labelled))


def scale_images(images: jax.Array) -> jax.Array:
    """Stored images [..., H, W, C] (numpy or device) to float32 in [0, 1]; jit-able.

    uint8 pixels are divided by 255; floating images are taken to be in [0, 1]
    already (as `exon_jax.data` validates them) and only cast to float32.
    Raises TypeError for any other dtype.
    """
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    if jnp.issubdtype(images.dtype, jnp.floating):
        return images.astype(jnp.float32)
    raise TypeError(
        f"scale_images: images must be uint8 (0..255) or float in [0, 1], "
        f"got {np.dtype(images.dtype).name}"
    )
