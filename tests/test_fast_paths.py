"""Faster forms of network operations equal the plain ones (NumPy oracles)."""

import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import models


def _pool_oracle(x):
    b, h, w, c = x.shape
    out = np.empty((b, h // 2, w // 2, c), x.dtype)
    argmax = np.zeros_like(x)
    for i in range(h // 2):
        for j in range(w // 2):
            window = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, :].reshape(b, 4, c)
            out[:, i, j, :] = window.max(1)
            k = window.argmax(1)  # [b, c]
            for bb in range(b):
                for cc in range(c):
                    argmax[bb, 2 * i + k[bb, cc] // 2, 2 * j + k[bb, cc] % 2, cc] = 1
    return out, argmax


def test_max_pool_2x2_values_and_gradient():
    """Values equal window maxima (odd sizes drop the last row/column); the gradient of
    sum(pool * g) puts g at each window's argmax and 0 elsewhere."""
    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 7, 6, 3)))
    expected, at_max = _pool_oracle(x)
    np.testing.assert_array_equal(models.max_pool_2x2(jnp.asarray(x)), expected)
    g = np.asarray(jax.random.normal(jax.random.key(1), expected.shape))
    grad = jax.grad(lambda x: jnp.sum(models.max_pool_2x2(x) * g))(jnp.asarray(x))
    spread = np.zeros_like(x)
    spread[:, :6, :6, :] = np.repeat(np.repeat(g, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(grad, spread * at_max, rtol=1e-6)
