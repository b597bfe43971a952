"""On-device image augmentation of the revised code, on images scaled to [-1, 1].

MNIST (`augment` in mnist/mixup.py): rotate each image by an integer angle drawn
uniformly from [-25, 24] degrees (python `random.randrange(-25, 25)`) about its centre,
border pixels extended ('nearest'), then pad 4 pixels with -1 (background) and crop a
random 28 x 28 window, i.e. a translation by -4..4 pixels on each axis.
Deviation: scipy's `rotate` interpolates with cubic splines (order 3); this uses
bilinear interpolation (`jax.scipy.ndimage.map_coordinates` has orders 0 and 1 only).

CIFAR-10 (`augment` in mixup.py): random left-right flip, reflect-pad 2 pixels, random
32 x 32 crop.

Every function maps one image [H, W, C]; the batch versions vmap over per-image keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MNIST_MAX_DEGREES = 25
MNIST_SHIFT = 4
CIFAR_PAD = 2


def rotate(image: jax.Array, degrees: jax.Array) -> jax.Array:
    """Rotates [H, W, C] about its centre ((H-1)/2, (W-1)/2); bilinear, edge pixels extended.

    Output pixel (i, j) samples the input at R(-theta) ((i, j) - c) + c with (row, col)
    coordinates, so a positive angle turns the picture counter-clockwise as displayed
    (scipy.ndimage.rotate's sense for axes (0, 1)).
    """
    h, w = image.shape[:2]
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    ci, cj = (h - 1) / 2.0, (w - 1) / 2.0
    ii, jj = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    di, dj = ii - ci, jj - cj
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    src_i = cos * di + sin * dj + ci
    src_j = -sin * di + cos * dj + cj

    def one_channel(channel):
        return jax.scipy.ndimage.map_coordinates(channel, [src_i, src_j], order=1, mode="nearest")

    return jax.vmap(one_channel, in_axes=-1, out_axes=-1)(image)


def translate(
    image: jax.Array, shift_i: jax.Array, shift_j: jax.Array, pad: int, fill: float
) -> jax.Array:
    """Pads [H, W, C] by `pad` with `fill` and crops H x W at offset (pad - shift_i, pad - shift_j).

    Content moves by (+shift_i, +shift_j) pixels; shifts lie in [-pad, pad].
    """
    h, w, c = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    return jax.lax.dynamic_slice(padded, (pad - shift_i, pad - shift_j, 0), (h, w, c))


def mnist_augment_one(key: jax.Array, image: jax.Array) -> jax.Array:
    """Their MNIST augmentation of one image [28, 28, 1] in [-1, 1]."""
    angle_key, shift_key = jax.random.split(key)
    degrees = jax.random.randint(angle_key, (), -MNIST_MAX_DEGREES, MNIST_MAX_DEGREES)
    shifts = jax.random.randint(shift_key, (2,), -MNIST_SHIFT, MNIST_SHIFT + 1)
    return translate(rotate(image, degrees), shifts[0], shifts[1], MNIST_SHIFT, -1.0)


def cifar_augment_one(key: jax.Array, image: jax.Array) -> jax.Array:
    """Their CIFAR-10 augmentation of one image [32, 32, 3]: flip, reflect-pad 2, crop."""
    flip_key, crop_key = jax.random.split(key)
    image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1, :], image)
    h, w, c = image.shape
    padded = jnp.pad(
        image, ((CIFAR_PAD, CIFAR_PAD), (CIFAR_PAD, CIFAR_PAD), (0, 0)), mode="reflect"
    )
    offsets = jax.random.randint(crop_key, (2,), 0, 2 * CIFAR_PAD + 1)
    return jax.lax.dynamic_slice(padded, (offsets[0], offsets[1], 0), (h, w, c))


AUGMENTATIONS = {"mnist": mnist_augment_one, "cifar": cifar_augment_one}


def augment_batch(key: jax.Array, images: jax.Array, kind: str) -> jax.Array:
    """Augments [B, H, W, C] image by image with independent keys; kind 'mnist' | 'cifar' | 'none'."""
    if kind == "none":
        return images
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(AUGMENTATIONS[kind])(keys, images)
