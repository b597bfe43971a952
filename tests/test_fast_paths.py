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
    sum(pool * g) puts g at each window's first argmax (row-major) and 0 elsewhere."""
    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 7, 6, 3)))
    expected, at_max = _pool_oracle(x)
    np.testing.assert_array_equal(models.max_pool_2x2(jnp.asarray(x)), expected)
    g = np.asarray(jax.random.normal(jax.random.key(1), expected.shape))
    grad = jax.grad(lambda x: jnp.sum(models.max_pool_2x2(x) * g))(jnp.asarray(x))
    spread = np.zeros_like(x)
    spread[:, :6, :6, :] = np.repeat(np.repeat(g, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(grad, spread * at_max, rtol=1e-6)


def test_max_pool_2x2_ties_go_to_the_first_maximum_as_flax_max_pool():
    """A constant background ties every window (MNIST): the whole cotangent goes to the
    window's first pixel, as nn.max_pool's select-and-scatter (and Keras) give it."""
    import flax.linen as nn

    x = np.zeros((2, 7, 8, 3), np.float32)
    x[0, 2, 3, 1] = 5.0  # one window with a clear maximum, the rest tied
    x[1, 4:6, 4:6, :] = 2.0  # a window tied at a non-zero value
    expected, at_max = _pool_oracle(x)  # np.argmax: the first maximum
    g = np.asarray(jax.random.normal(jax.random.key(2), expected.shape))
    grad = jax.grad(lambda x: jnp.sum(models.max_pool_2x2(x) * g))(jnp.asarray(x))
    spread = np.zeros_like(x)
    spread[:, :6, :8, :] = np.repeat(np.repeat(g, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(grad, spread * at_max)
    stock = jax.grad(
        lambda x: jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID") * g)
    )(jnp.asarray(x))
    np.testing.assert_array_equal(grad, stock)
    assert jax.vmap(models.max_pool_2x2)(jnp.stack([x, x])).shape == (2, *expected.shape)


def _conv_oracle(x, kernel):
    """NumPy stride-1 SAME correlation, NHWC x HWIO (odd kernels)."""
    k = kernel.shape[0]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros((x.shape[0], h, w, kernel.shape[-1]), np.float64)
    for i in range(k):
        for j in range(k):
            out += np.einsum("bhwc,co->bhwo", xp[:, i : i + h, j : j + w, :], kernel[i, j])
    return out


def test_shifted_conv_values_and_gradients():
    """nn.Conv with the shifted weight gradient: the same outputs as a NumPy correlation and
    the same input and kernel gradients as the stock conv (float64 oracle for the loss
    sum(y * g): d/dW[i,j] = sum x_shift(i,j)^T g)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 6, 5)).astype(np.float32)
    g = rng.normal(size=(3, 7, 6, 4)).astype(np.float32)
    stock, shifted = models.conv(4, 3), models.conv(4, 3, layout="shifted")
    variables = stock.init(jax.random.key(0), jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"], np.float64)
    np.testing.assert_allclose(
        shifted.apply(variables, x) - variables["params"]["bias"],
        _conv_oracle(x.astype(np.float64), kernel),
        rtol=1e-5,
        atol=1e-5,
    )

    def loss(module):
        return lambda v, x: jnp.sum(module.apply(v, x) * g)

    grads = jax.jit(jax.grad(loss(shifted), argnums=(0, 1)))(variables, jnp.asarray(x))
    ref = jax.grad(loss(stock), argnums=(0, 1))(variables, jnp.asarray(x))
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected_dw = np.stack(
        [
            np.stack([np.einsum("bhwc,bhwo->co", xp[:, i : i + 7, j : j + 6], g) for j in range(3)])
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(grads[0]["params"]["kernel"], expected_dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[1], ref[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[0]["params"]["bias"], g.sum((0, 1, 2)), rtol=1e-5)


def test_shifted_conv_is_taken_inside_nn_conv():
    """nn.Conv passes padding as the string 'SAME': the shifted layout must still compute the
    kernel gradient as matmuls (one per kernel offset), not fall back to XLA's convolution
    (it did, silently, so 'shifted' timed the stock product)."""
    x = jnp.ones((2, 7, 7, 4))
    shifted = models.conv(8, 3, layout="shifted")
    variables = shifted.init(jax.random.key(0), x)
    kernel_grad = jax.jit(jax.grad(lambda v: jnp.sum(shifted.apply(v, x) ** 2)))
    hlo = kernel_grad.lower(variables).as_text()
    assert hlo.count("stablehlo.dot_general") == 9  # 3 x 3 offsets
    assert hlo.count("stablehlo.convolution") == 1  # the forward product (x is a constant)


def test_shifted_conv_falls_back_for_strided_products():
    x = jnp.ones((2, 8, 8, 3))
    stock, shifted = models.conv(4, 3, strides=2), models.conv(4, 3, strides=2, layout="shifted")
    variables = stock.init(jax.random.key(0), x)
    np.testing.assert_array_equal(shifted.apply(variables, x), stock.apply(variables, x))
