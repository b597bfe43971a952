"""Tests for exon_jax.batching: batch order (its distribution and reproducibility), scaling."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from exon_jax import batching

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_num_steps_per_epoch():
    assert batching.num_steps_per_epoch(55000, 2000) == 28
    assert batching.num_steps_per_epoch(40000, 128) == 313
    assert batching.num_steps_per_epoch(10, 5) == 2
    with pytest.raises(ValueError, match="positive"):
        batching.num_steps_per_epoch(0, 5)


def test_epoch_batch_indices():
    nu, nl, bu, bl = 103, 17, 10, 6
    key = jax.random.PRNGKey(0)
    u, lab = batching.epoch_batch_indices(key, nu, nl, bu, bl)
    steps = batching.num_steps_per_epoch(nu, bu)
    assert u.shape == (steps, bu) and lab.shape == (steps, bl)
    assert u.dtype == jnp.int32 and lab.dtype == jnp.int32
    u, lab = np.asarray(u).ravel(), np.asarray(lab).ravel()
    # First nu entries are one permutation; every index appears at least once.
    np.testing.assert_array_equal(np.sort(u[:nu]), np.arange(nu))
    assert u.min() >= 0 and u.max() < nu
    counts = np.bincount(lab, minlength=nl)
    total = steps * bl
    assert counts.sum() == total
    assert counts.min() >= total // nl and counts.max() <= -(-total // nl)
    # Different keys give different orders; the same key the same order.
    u2, lab2 = batching.epoch_batch_indices(jax.random.PRNGKey(1), nu, nl, bu, bl)
    assert not np.array_equal(u, np.asarray(u2).ravel())
    assert not np.array_equal(lab, np.asarray(lab2).ravel())
    u3, _ = batching.epoch_batch_indices(key, nu, nl, bu, bl)
    np.testing.assert_array_equal(u, np.asarray(u3).ravel())


def test_epoch_batch_indices_jit():
    fn = jax.jit(batching.epoch_batch_indices, static_argnums=(1, 2, 3, 4))
    key = jax.random.key(5)
    u, lab = fn(key, 55, 20, 8, 3)
    u_ref, lab_ref = batching.epoch_batch_indices(key, 55, 20, 8, 3)
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_array_equal(lab, lab_ref)
    assert u.shape == (7, 8) and lab.shape == (7, 3)


def test_unlabelled_order_is_a_uniform_shuffle_continued_by_a_fresh_one():
    """Over 3 000 keys: 7 images in batches of 3 give 3 batches, 9 slots. The first 7 slots
    are a permutation whose every position is uniform over the 7 images (chi-square); the
    last 2 hold two distinct images drawn independently of the first permutation, so they
    repeat its last image with probability 2/7, not 0 (a padded or wrapped permutation
    would give 0, an identity or rotation a constant)."""
    keys = jax.random.split(jax.random.key(3), 3000)
    u, lab = jax.vmap(lambda k: batching.epoch_batch_indices(k, 7, 3, 3, 2))(keys)
    u, lab = np.asarray(u).reshape(3000, 9), np.asarray(lab).reshape(3000, 6)
    np.testing.assert_array_equal(np.sort(u[:, :7], axis=1), np.tile(np.arange(7), (3000, 1)))
    for slot in range(9):
        counts = np.bincount(u[:, slot], minlength=7)
        assert scipy.stats.chisquare(counts).pvalue > 1e-4, (slot, counts)
    assert np.all(u[:, 7] != u[:, 8])
    repeats = np.mean((u[:, 7:] == u[:, 6:7]).any(axis=1))
    assert abs(repeats - 2 / 7) < 0.04
    # Labelled: 3 labels cycled through 6 slots, each block of 3 a permutation, the two
    # blocks independent (equal with probability 1/6) and every slot uniform.
    for block in (lab[:, :3], lab[:, 3:]):
        np.testing.assert_array_equal(np.sort(block, axis=1), np.tile(np.arange(3), (3000, 1)))
    assert abs(np.mean((lab[:, :3] == lab[:, 3:]).all(axis=1)) - 1 / 6) < 0.03
    for slot in range(6):
        assert scipy.stats.chisquare(np.bincount(lab[:, slot], minlength=3)).pvalue > 1e-4


def test_labelled_blocks_are_permutations_over_many_cycles():
    """17 labels in batches of 6 over 18 steps: 108 slots, six whole cycles; every block of
    17 consecutive slots is one permutation of the labelled set."""
    _, lab = batching.epoch_batch_indices(jax.random.key(11), 103, 17, 6, 6)
    lab = np.asarray(lab).ravel()
    assert lab.size == 18 * 6
    for start in range(0, 102, 17):
        np.testing.assert_array_equal(np.sort(lab[start : start + 17]), np.arange(17))


def test_scale_images_uint8():
    x = np.array([[0, 51], [128, 255]], np.uint8)[None, ..., None]
    y = jax.jit(batching.scale_images)(jnp.asarray(x))
    assert y.dtype == jnp.float32 and y.shape == x.shape
    np.testing.assert_allclose(np.asarray(y), x / 255.0, rtol=1e-6)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0


def test_scale_images_float_passes_through():
    x = np.array([0.0, 0.2, 0.5, 1.0], np.float32).reshape(1, 2, 2, 1)
    y = jax.jit(batching.scale_images)(x)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), x)  # bit for bit, not divided again
    y64 = batching.scale_images(x.astype(np.float64))
    assert y64.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y64), x)


def test_scale_images_refuses_other_dtypes():
    with pytest.raises(TypeError, match="uint8"):
        batching.scale_images(np.zeros((1, 2, 2, 1), np.int32))


@pytest.mark.slow  # a second process (import wiring)
def test_training_code_does_not_import_the_loaders_and_order_depends_on_the_key_alone():
    """In a fresh process (no compilation cache, nothing jitted before), the training code
    leaves exon_jax.data unimported and the same key gives the same batches as here: a
    resumed run sees the batches an uninterrupted one would."""
    code = (
        "import sys, jax, exon_jax.train, exon_jax.batching as b\n"
        "print('exon_jax.data' in sys.modules)\n"
        "u, lab = b.epoch_batch_indices(jax.random.key(42), 10, 4, 4, 3)\n"
        "print(u.tolist(), lab.tolist())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "JAX_PLATFORMS": "cpu"},
        check=True,
    )
    loaded, order = out.stdout.strip().split("\n")
    assert loaded == "False"
    u, lab = jax.jit(batching.epoch_batch_indices, static_argnums=(1, 2, 3, 4))(
        jax.random.key(42), 10, 4, 4, 3
    )
    assert order == f"{np.asarray(u).tolist()} {np.asarray(lab).tolist()}"
