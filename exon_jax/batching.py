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


def labelled_batch_sizes(num_labelled: int, batch_labelled: int, restart: bool) -> tuple[int, ...]:
    """Sizes of the labelled batches of one cycle of labelled steps.

    Cycled (restart False): every step takes `batch_labelled`, the cycle is one step.
    Restarting (the revision's official pipeline: their labelled set batched with
    `drop_remainder=False`, the iterator restarted when exhausted): one pass over the
    labelled set in batches of `batch_labelled` and a short last one, e.g. 100 labels in
    batches of 32 give (32, 32, 32, 4).
    """
    if not restart:
        return (int(batch_labelled),)
    full, rest = divmod(int(num_labelled), int(batch_labelled))
    return (int(batch_labelled),) * full + ((rest,) if rest else ())


def epoch_batch_indices(
    key: jax.Array,
    num_unlabelled: int,
    num_labelled: int,
    batch_unlabelled: int,
    batch_labelled: int,
    steps: int = 0,
    labelled_restart: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Batch indices for one epoch; pure and jit-able with the sizes static.

    Returns int32 (unlabelled [S, batch_unlabelled], labelled [S, batch_labelled]),
    S = `steps`, or when 0 num_steps_per_epoch(num_unlabelled, batch_unlabelled).
    Unlabelled: a permutation of range(num_unlabelled), continued by independent
    permutations when S * batch_unlabelled exceeds it, cut to S batches.
    Labelled, cycled (the default): independent permutations of range(num_labelled)
    concatenated (the labelled set cycled with its own shuffles) and cut to S batches.
    Labelled, restarting (`labelled_restart`): step i is batch i % k of a fresh
    permutation for each cycle of k = len(labelled_batch_sizes(...)) steps; a step whose
    batch is shorter than batch_labelled uses the first `size` entries of its row.
    """
    if num_labelled < 1 or batch_labelled < 1:
        raise ValueError(
            f"num_labelled ({num_labelled}) and batch_labelled ({batch_labelled}) must be positive"
        )
    steps = steps or num_steps_per_epoch(num_unlabelled, batch_unlabelled)
    key_u, key_l = jax.random.split(key)
    unlabelled = _cycled_permutations(key_u, num_unlabelled, steps * batch_unlabelled)
    if not labelled_restart:
        labelled = _cycled_permutations(key_l, num_labelled, steps * batch_labelled)
        return (
            unlabelled.reshape(steps, batch_unlabelled),
            labelled.reshape(steps, batch_labelled),
        )
    cycle = len(labelled_batch_sizes(num_labelled, batch_labelled, True))
    num_cycles = -(-steps // cycle)
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_labelled))(
        jax.random.split(key_l, num_cycles)
    )
    padded = jnp.pad(perms, ((0, 0), (0, cycle * batch_labelled - num_labelled)))
    labelled = padded.reshape(num_cycles * cycle, batch_labelled)[:steps].astype(jnp.int32)
    return unlabelled.reshape(steps, batch_unlabelled), labelled


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
