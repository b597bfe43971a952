"""Tests for exon_jax.batching: batch order (pinned to the values before the move), scaling."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_batch_order_unchanged_by_the_move():
    """Values printed by exon_jax.data.epoch_batch_indices at commit a2b6b74 (jax 0.10.2)."""
    u, lab = batching.epoch_batch_indices(jax.random.PRNGKey(42), 7, 3, 3, 2)
    np.testing.assert_array_equal(u, [[3, 2, 6], [1, 0, 5], [4, 1, 2]])
    np.testing.assert_array_equal(lab, [[1, 0], [2, 2], [1, 0]])
    u, lab = batching.epoch_batch_indices(jax.random.key(7), 10, 4, 4, 3)
    np.testing.assert_array_equal(u, [[4, 3, 2, 8], [9, 7, 1, 5], [6, 0, 3, 7]])
    np.testing.assert_array_equal(lab, [[0, 3, 2], [1, 1, 3], [2, 0, 3]])


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


def test_training_code_does_not_import_the_loaders():
    code = "import sys, exon_jax.train, exon_jax.batching; print('exon_jax.data' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        check=True,
    )
    assert out.stdout.strip() == "False"
