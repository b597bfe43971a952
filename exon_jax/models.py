"""Flax linen networks of EXoN: MLP (MNIST) and convolutional (CIFAR-10, paper Tables 1-2).

Only network definitions live here: no losses, no sampling, no training.

Shapes: B batch, K classes (= mixture components), d latent dimension, images
channels-last [B, H, W, C] with pixels in [0, 1].

Matmul precision. Every module takes `compute_dtype`:
- `jnp.float32` (default): flax's ordinary float32 dense / conv path, unchanged.
- `jnp.bfloat16`: the operands of every dense, conv and transposed-conv product
  (activations and kernels) are cast to bfloat16, the product accumulates and
  returns float32 (`preferred_element_type=jnp.float32`). Parameters, biases,
  BatchNorm, activations and outputs stay float32. The hooks used:
  `nn.Dense(dot_general=...)`, `nn.Conv(conv_general_dilated=...)`; `nn.ConvTranspose`
  has no such hook in flax 0.12, so bfloat16 transposed convolutions use our
  `ConvTranspose`, which casts input and kernel (not the bias) itself.

Initialisation follows Keras defaults (the authors' code is Keras): Glorot-uniform
kernels, zero biases; BatchNorm with momentum 0.99 and epsilon 1e-3, its running
statistics in the 'batch_stats' collection.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

__all__ = [
    "Classifier",
    "ConvDecoder",
    "ConvEncoder",
    "EXoNModel",
    "MLPDecoder",
    "MLPEncoder",
    "batch_norm",
    "conv",
    "ConvTranspose",
    "conv_transpose",
    "phase_conv_transpose",
    "dense",
]

_COMPUTE_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
_KERNEL_INIT = nn.initializers.glorot_uniform()


def _is_reduced(compute_dtype: Any) -> bool:
    """True for bfloat16 compute, False for float32; ValueError otherwise."""
    dtype = jnp.dtype(compute_dtype)
    if dtype not in _COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be float32 or bfloat16, got {compute_dtype!r}")
    return dtype != jnp.dtype(jnp.float32)


def _reduced_dot_general(
    lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, *, compute_dtype
):
    """`lax.dot_general` on operands cast to `compute_dtype`, float32 result."""
    del preferred_element_type
    return jax.lax.dot_general(
        lhs.astype(compute_dtype),
        rhs.astype(compute_dtype),
        dimension_numbers,
        precision=precision,
        preferred_element_type=jnp.float32,
    )


def _reduced_conv_general_dilated(lhs, rhs, window_strides, padding, *, compute_dtype, **kwargs):
    """`lax.conv_general_dilated` on operands cast to `compute_dtype`, float32 result."""
    kwargs.pop("preferred_element_type", None)
    return jax.lax.conv_general_dilated(
        lhs.astype(compute_dtype),
        rhs.astype(compute_dtype),
        window_strides,
        padding,
        preferred_element_type=jnp.float32,
        **kwargs,
    )


# ------------------------------------------------------------------ dense product paths
#
# XLA:CPU (jax 0.10) runs a dot whose operands are row-major with the contraction on the
# minor dimension of the lhs (x.W, g.W^T) through its fast YNNPACK kernels, but a dot
# that contracts the MAJOR dimension of both operands -- the weight gradient x^T.g summed
# over the batch rows that jax.grad of x.W produces -- through a slower Eigen kernel
# (measured 106-137 vs 193-196 GFLOP/s on a Zen 4 core at the MNIST shapes). XLA's
# transpose folding turns any plain `x.T @ g` back into that dot, so the custom VJP below
# materialises the transposed operand behind `lax.optimization_barrier`: the transpose
# becomes one cheap copy, the product an ordinary row-major x^T.g that takes the fast
# path. The maths is the same product (float32 operands, float32 accumulation; only the
# summation order inside the kernel may differ); tests/test_speed_paths.py checks the
# forward and all gradients against nn.Dense / jax.grad. In bfloat16 mode the forward
# product takes bf16 operands as before, and the gradient products are float32 products
# of the cotangent with the bf16-rounded x and W, as jax.grad of the stock bf16 product.
#
# WEIGHT_GRADIENT_LAYOUTS:
#   "xla"       : stock jax.grad (the dot XLA picks: Eigen on CPU);
#   "transpose_x": dW = barrier(x^T) @ g        (copies x, B x i);
#   "transpose_g": dW = (barrier(g^T) @ x)^T    (copies g, B x o, and the small i x o result);
#   "smaller"   : whichever of the two copies fewer elements.

WEIGHT_GRADIENT_LAYOUTS = ("xla", "transpose_x", "transpose_g", "smaller")


def _cast(a, dtype):
    return a if dtype is None else a.astype(dtype)


def _matmul(a, b, dtype):
    """a [m, k] @ b [k, n], operands cast to `dtype` (None: as they are), float32 result."""
    return jax.lax.dot_general(
        _cast(a, dtype),
        _cast(b, dtype),
        (((1,), (0,)), ((), ())),
        preferred_element_type=jnp.float32,
    )


def _weight_grad(x, g, layout):
    """x^T.g over the batch rows: x [B, i], g [B, o] -> [i, o], float32."""
    if layout == "smaller":
        layout = "transpose_x" if x.shape[1] <= g.shape[1] else "transpose_g"
    barrier = jax.lax.optimization_barrier
    if layout == "transpose_x":
        return _matmul(barrier(x.T), g, None)
    if layout == "transpose_g":
        return _matmul(barrier(g.T), x, None).T
    return jax.lax.dot_general(x, g, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dense_product(x, kernel, dtype, layout):
    return _matmul(x, kernel, dtype)


def _dense_product_fwd(x, kernel, dtype, layout):
    x, kernel = _cast(x, dtype), _cast(kernel, dtype)
    return _matmul(x, kernel, None), (x, kernel)


def _dense_product_bwd(dtype, layout, residuals, g):
    """The float32 gradient products of y = x.W for a float32 cotangent g, with x and W as
    the forward used them (rounded to bfloat16 in bfloat16 mode, then exact in float32):
    the same maths as jax.grad of the stock product (whose mixed bf16 x f32 gradient dots
    XLA computes in float32 too), only the weight gradient's kernel layout differs."""
    x, kernel = (r.astype(jnp.float32) for r in residuals)
    g = g.astype(jnp.float32)
    dx = jax.lax.dot_general(
        g, kernel, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )
    return dx, _weight_grad(x, g, layout)


_dense_product.defvjp(_dense_product_fwd, _dense_product_bwd)


def _layout_dot_general(
    lhs,
    rhs,
    dimension_numbers,
    precision=None,
    preferred_element_type=None,
    *,
    compute_dtype,
    layout,
):
    """nn.Dense's product [..., i] x [i, o] with the weight gradient in `layout`."""
    del preferred_element_type
    (lhs_contract, rhs_contract), batch_dims = dimension_numbers
    if (
        precision is not None
        or batch_dims != ((), ())
        or tuple(rhs_contract) != (0,)
        or tuple(lhs_contract) != (lhs.ndim - 1,)
        or rhs.ndim != 2
    ):
        raise ValueError("the layout dot_general only does nn.Dense's [..., i] x [i, o]")
    if lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
        raise ValueError(
            f"the layout dot_general takes float32 operands (compute_dtype sets "
            f"the product's precision), got {lhs.dtype} x {rhs.dtype}"
        )
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)
    flat = jnp.reshape(lhs, (-1, lhs.shape[-1]))
    out = _dense_product(flat, rhs, dtype, layout)
    return jnp.reshape(out, (*lhs.shape[:-1], rhs.shape[1]))


def dense(
    features: int,
    compute_dtype: Any = jnp.float32,
    name: Optional[str] = None,
    layout: str = "xla",
) -> nn.Dense:
    """nn.Dense with Keras initialisation and the module-wide matmul precision.

    Args:
      features: output width.
      compute_dtype: float32 (default path) or bfloat16 (bf16 operands, float32
        accumulation and output; float32 parameters).
      name: submodule name.
      layout: the product's weight-gradient layout (WEIGHT_GRADIENT_LAYOUTS; "xla" is
        flax's stock product, `exon_jax.backend.dense_weight_gradient` picks per backend).

    Returns:
      An nn.Dense mapping [..., n] -> [..., features], float32 out; its parameters
      ('kernel' [n, features], 'bias') are nn.Dense's in every layout.
    """
    if layout not in WEIGHT_GRADIENT_LAYOUTS:
        raise ValueError(f"layout must be one of {WEIGHT_GRADIENT_LAYOUTS}, got {layout!r}")
    reduced = _is_reduced(compute_dtype)
    dot_general = None
    if layout != "xla":
        dot_general = functools.partial(
            _layout_dot_general, compute_dtype=compute_dtype if reduced else None, layout=layout
        )
    elif reduced:
        dot_general = functools.partial(_reduced_dot_general, compute_dtype=compute_dtype)
    return nn.Dense(features, kernel_init=_KERNEL_INIT, dot_general=dot_general, name=name)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2 x 2 max-pooling, stride 2, VALID (odd trailing rows/columns dropped):
    [B, H, W, C] -> [B, H // 2, W // 2, C].

    The same values and the same gradient as `nn.max_pool(x, (2, 2), strides=(2, 2))`
    (and as Keras' MaxPool2D): the cotangent goes to the first maximum of each window in
    row-major order, also at ties (MNIST's constant background ties every window). Computed
    as a reshape, a max and a one-hot select instead of XLA's select-and-scatter, which
    XLA:CPU runs several times slower.
    """
    return _max_pool_2x2(x, x.shape[1] % 2, x.shape[2] % 2)


def _pool_windows(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H // 2, W // 2, C, 4], each window's 4 pixels in row-major order."""
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :].reshape(b, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, c, 4)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool_2x2(x, odd_h, odd_w):
    return jnp.max(_pool_windows(x), axis=-1)


def _max_pool_2x2_fwd(x, odd_h, odd_w):
    windows = _pool_windows(x)
    return jnp.max(windows, axis=-1), jnp.argmax(windows, axis=-1)


def _max_pool_2x2_bwd(odd_h, odd_w, first, g):
    b, h2, w2, c = g.shape
    spread = jax.nn.one_hot(first, 4, dtype=g.dtype) * g[..., None]  # [B, h2, w2, C, 4]
    spread = spread.reshape(b, h2, w2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    dx = spread.reshape(b, 2 * h2, 2 * w2, c)
    return (jnp.pad(dx, ((0, 0), (0, odd_h), (0, odd_w), (0, 0))),)


_max_pool_2x2.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


CONV_LAYOUTS = ("xla", "shifted")
_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv_nhwc(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _shifted_conv(x, kernel, padding):
    return _conv_nhwc(x, kernel, padding)


def _shifted_conv_fwd(x, kernel, padding):
    return _conv_nhwc(x, kernel, padding), (x, kernel)


def _shifted_conv_bwd(padding, residuals, g):
    """dx: the transpose of the convolution (XLA's); dW[i, j] = x_shifted(i, j)^T . g,
    one [C, B*H*W] x [B*H*W, O] matmul per kernel offset (`_weight_grad`, "smaller")."""
    x, kernel = residuals
    (dx,) = jax.linear_transpose(lambda x: _conv_nhwc(x, kernel, padding), x)(g)
    kh, kw, c, o = kernel.shape
    h, w = g.shape[1:3]
    padded = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    g2 = g.reshape(-1, o)
    rows = [
        jnp.stack(
            [
                _weight_grad(padded[:, i : i + h, j : j + w, :].reshape(-1, c), g2, "smaller")
                for j in range(kw)
            ]
        )
        for i in range(kh)
    ]
    return dx, jnp.stack(rows).astype(kernel.dtype)


_shifted_conv.defvjp(_shifted_conv_fwd, _shifted_conv_bwd)


def shifted_conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """`lax.conv_general_dilated` whose weight gradient is one matmul per kernel offset.

    XLA:CPU computes a convolution's weight gradient (x^T.g summed over batch and pixels)
    several times slower than the forward convolution; as k*k products of the shifted input
    [C, B*H*W] with the output cotangent [B*H*W, O] it runs at matmul speed (the
    revision's 32 -> 64 3x3 layer on 14x14 images: bench/revision_step.py). Same values.
    Taken for float32, stride 1, undilated, ungrouped NHWC x HWIO products (padding
    explicit or 'SAME' / 'VALID', as nn.Conv passes it); anything else is the stock product.
    """
    stock = functools.partial(
        jax.lax.conv_general_dilated,
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    plain = (
        lhs.ndim == 4
        and tuple(window_strides) == (1, 1)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and precision is None
        and not kwargs
        and lhs.dtype == rhs.dtype == jnp.float32
        and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc
    )
    if not plain:
        return stock()
    if isinstance(padding, str):  # nn.Conv passes 'SAME' as it is
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    return _shifted_conv(lhs, rhs, tuple(tuple(int(p) for p in pair) for pair in padding))


def conv(
    features: int,
    kernel_size: int,
    strides: int = 1,
    compute_dtype: Any = jnp.float32,
    name: Optional[str] = None,
    layout: str = "xla",
) -> nn.Conv:
    """Square nn.Conv, padding SAME, Keras initialisation, module-wide matmul precision.

    `layout` "shifted" computes float32 weight gradients as matmuls
    (`shifted_conv_general_dilated`, chosen only on request); "xla" is flax's stock product
    (the default on every backend, `exon_jax.backend.conv_weight_gradient`). The parameters are nn.Conv's either way.

    Returns:
      An nn.Conv mapping [B, H, W, C] -> [B, ceil(H/strides), ceil(W/strides), features].
    """
    if layout not in CONV_LAYOUTS:
        raise ValueError(f"conv layout must be one of {CONV_LAYOUTS}, got {layout!r}")
    conv_general_dilated: Callable[..., jax.Array] | None = None
    if _is_reduced(compute_dtype):
        conv_general_dilated = functools.partial(
            _reduced_conv_general_dilated, compute_dtype=compute_dtype
        )
    elif layout == "shifted":
        conv_general_dilated = shifted_conv_general_dilated
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(strides, strides),
        padding="SAME",
        kernel_init=_KERNEL_INIT,
        conv_general_dilated=conv_general_dilated,
        name=name,
    )


TRANSPOSED_CONV_PATHS = ("xla", "phases")


def _same_transpose_padding(kernel_size: int, stride: int) -> int:
    """The low padding of the dilated input in lax.conv_transpose's SAME padding."""
    pad_total = kernel_size + stride - 2
    return kernel_size - 1 if stride > kernel_size - 1 else -(-pad_total // 2)


def _phase_taps(kernel_size: int, stride: int) -> tuple[np.ndarray, int, int]:
    """Where the taps of a SAME transposed convolution fall in its sub-pixel form.

    lax.conv_transpose(x, w, (s,), "SAME") dilates x by s, pads it low by a and correlates
    with w, so output pixel s*m + r sums w[i] x[m + (r + i - a) / s] over the taps i with
    r + i = a (mod s): for each phase r, a stride-1 correlation of the undilated x. All the
    phases are read through one window of L input pixels, m - lo ... m - lo + L - 1.

    Returns:
      selection [L, s, k]: 1 where window position u of phase r takes tap i; lo, hi: the
      padding of x, below and above.
    """
    k, s = kernel_size, stride
    pad_low = _same_transpose_padding(k, s)
    taps = [list(range((pad_low - r) % s, k, s)) for r in range(s)]
    offsets = [
        (r + phase_taps[0] - pad_low) // s if phase_taps else 0 for r, phase_taps in enumerate(taps)
    ]
    first = min(offsets)
    window = max(o + len(t) for o, t in zip(offsets, taps)) - first
    selection = np.zeros((window, s, k), np.float32)
    for r, (offset, phase_taps) in enumerate(zip(offsets, taps)):
        for j, tap in enumerate(phase_taps):
            selection[offset - first + j, r, tap] = 1.0
    return selection, -first, first + window - 1


def phase_conv_transpose(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """lax.conv_transpose(x, kernel, (s, s), "SAME") as s*s phases of one stride-1 convolution.

    Sub-pixel form: one correlation of the undilated input with an [L, L, C, s*s*F] kernel
    (each output phase's taps, zeros elsewhere), the phases then interleaved into the
    output's pixels. The stock product correlates a dilated input that is (s*s - 1)/(s*s)
    zeros. Where L exceeds the input (the 2 x 2 and 4 x 4 inputs of the paper's decoder)
    the correlation is one matmul over explicit L x L patches: XLA:CPU's convolution path
    for kernels larger than their input is ~40x slower.

    Args:
      x: [B, H, W, C].
      kernel: [k, k, C, F] (HWIO), same dtype as x.
      stride: s.

    Returns:
      [B, H*s, W*s, F], float32.
    """
    batch, height, width, channels = x.shape
    features = kernel.shape[-1]
    selection, lo, hi = _phase_taps(kernel.shape[0], stride)
    window = selection.shape[0]
    taps = jnp.asarray(selection, kernel.dtype)
    phase_kernel = jnp.einsum("uri,vqj,ijco->uvcrqo", taps, taps, kernel).reshape(
        window, window, channels, stride * stride * features
    )
    if window > min(height, width):
        padded = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
        patches = jnp.stack(
            [
                padded[:, u : u + height, v : v + width, :]
                for u in range(window)
                for v in range(window)
            ],
            axis=3,
        )
        phases = jnp.einsum(
            "bhwpc,pco->bhwo",
            patches,
            phase_kernel.reshape(window * window, channels, -1),
            preferred_element_type=jnp.float32,
        )
    else:
        phases = jax.lax.conv_general_dilated(
            x,
            phase_kernel,
            (1, 1),
            ((lo, hi), (lo, hi)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            preferred_element_type=jnp.float32,
        )
    phases = phases.reshape(batch, height, width, stride, stride, features)
    return phases.transpose(0, 1, 3, 2, 4, 5).reshape(
        batch, height * stride, width * stride, features
    )


class ConvTranspose(nn.Module):
    """Square transposed convolution, padding SAME: [B, H, W, Cin] -> [B, H*s, W*s, features].

    The function and parameters ('kernel' [k, k, Cin, features], 'bias') of
    `nn.ConvTranspose(features, (k, k), strides=(s, s), padding="SAME")`, with the input
    and kernel cast to `compute_dtype`, computed by `path`: "xla" is `lax.conv_transpose`,
    "phases" is `phase_conv_transpose` (the CPU workaround `exon_jax.backend` asks for).
    """

    features: int
    kernel_size: int
    strides: int = 1
    compute_dtype: Any = jnp.float32
    path: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.strides
        kernel = self.param("kernel", _KERNEL_INIT, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        reduced = _is_reduced(self.compute_dtype)
        lhs = x.astype(self.compute_dtype) if reduced else x
        rhs = kernel.astype(self.compute_dtype) if reduced else kernel
        if self.path == "phases":
            return phase_conv_transpose(lhs, rhs, s) + bias
        if self.path != "xla":
            raise ValueError(
                f"transposed conv path must be one of {TRANSPOSED_CONV_PATHS}, got {self.path!r}"
            )
        y = jax.lax.conv_transpose(
            lhs,
            rhs,
            (s, s),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            preferred_element_type=jnp.float32,
        )
        return y + bias


def conv_transpose(
    features: int,
    kernel_size: int,
    strides: int = 1,
    compute_dtype: Any = jnp.float32,
    path: str = "xla",
    name: Optional[str] = None,
) -> nn.Module:
    """Square transposed conv, padding SAME, Keras initialisation, matmul precision.

    Flax's stock `nn.ConvTranspose` for float32 compute on path "xla"; `ConvTranspose`
    for bfloat16 operands or path "phases" (`phase_conv_transpose`).

    Returns:
      A module mapping [B, H, W, C] -> [B, H*strides, W*strides, features].
    """
    if path not in TRANSPOSED_CONV_PATHS:
        raise ValueError(
            f"transposed conv path must be one of {TRANSPOSED_CONV_PATHS}, got {path!r}"
        )
    if path == "xla" and not _is_reduced(compute_dtype):
        return nn.ConvTranspose(
            features,
            (kernel_size, kernel_size),
            strides=(strides, strides),
            padding="SAME",
            kernel_init=_KERNEL_INIT,
            name=name,
        )
    return ConvTranspose(features, kernel_size, strides, compute_dtype, path, name=name)


def batch_norm(train: bool, name: Optional[str] = None) -> nn.BatchNorm:
    """Keras-default BatchNorm: momentum 0.99, epsilon 1e-3, float32.

    With `train`, normalises with the batch statistics and updates the running
    averages in 'batch_stats' (apply with mutable=['batch_stats']); otherwise
    normalises with the running averages.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, name=name)


def _check_rank(array: jax.Array, rank: int, name: str, shape: str) -> None:
    if jnp.ndim(array) != rank:
        raise ValueError(f"{name} must have shape {shape}, got shape {jnp.shape(array)}")


class MLPEncoder(nn.Module):
    """MNIST encoder (paper Section 4.1): logits, means and log-variances from one MLP.

    x -> flatten -> Dense 200 -> leaky_relu -> Dense 400 -> leaky_relu
      -> one fused head Dense(K + 2*K*d), split into (logits, mean, logvar).

    Attributes:
      num_classes: K.
      latent_dim: d.
      hidden: hidden layer widths.
      negative_slope: leaky ReLU slope.
      compute_dtype: matmul operand dtype (module docstring).
    """

    num_classes: int = 10
    latent_dim: int = 2
    hidden: Sequence[int] = (200, 400)
    negative_slope: float = 0.01
    compute_dtype: Any = jnp.float32
    dense_layout: str = "xla"  # weight-gradient layout of its dense layers (`dense`)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        """Encode.

        Args:
          x: [B, ...] images in [0, 1], flattened to [B, m].
          train: unused (no BatchNorm); kept so every encoder has one signature.

        Returns:
          logits [B, K], mean [B, K, d], logvar [B, K, d], float32.
        """
        del train
        if jnp.ndim(x) < 2:
            raise ValueError(f"x must have shape [B, ...], got shape {jnp.shape(x)}")
        k, d = self.num_classes, self.latent_dim
        h = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
        for i, width in enumerate(self.hidden):
            h = dense(width, self.compute_dtype, name=f"hidden_{i}", layout=self.dense_layout)(h)
            h = nn.leaky_relu(h, self.negative_slope)
        out = dense(k + 2 * k * d, self.compute_dtype, name="head", layout=self.dense_layout)(h)
        logits = out[:, :k]
        mean = jnp.reshape(out[:, k : k + k * d], (-1, k, d))
        logvar = jnp.reshape(out[:, k + k * d :], (-1, k, d))
        return logits, mean, logvar


class MLPDecoder(nn.Module):
    """MNIST decoder: z -> Dense 200 -> leaky -> Dense 400 -> leaky -> Dense m -> sigmoid.

    Attributes:
      output_shape: image shape, m = prod(output_shape).
      hidden: hidden layer widths.
      negative_slope: leaky ReLU slope.
      compute_dtype: matmul operand dtype (module docstring).
    """

    output_shape: Sequence[int] = (28, 28, 1)
    hidden: Sequence[int] = (200, 400)
    negative_slope: float = 0.01
    compute_dtype: Any = jnp.float32
    dense_layout: str = "xla"  # weight-gradient layout of its dense layers (`dense`)

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Decode.

        Args:
          z: [B, d] latent codes.
          train: unused (no BatchNorm); kept so every decoder has one signature.

        Returns:
          [B, *output_shape] pixel means in (0, 1), float32.
        """
        del train
        _check_rank(z, 2, "z", "[B, d]")
        h = z.astype(jnp.float32)
        for i, width in enumerate(self.hidden):
            h = dense(width, self.compute_dtype, name=f"hidden_{i}", layout=self.dense_layout)(h)
            h = nn.leaky_relu(h, self.negative_slope)
        h = dense(
            math.prod(self.output_shape),
            self.compute_dtype,
            name="output",
            layout=self.dense_layout,
        )(h)
        return jnp.reshape(nn.sigmoid(h), (-1, *self.output_shape))


class ConvEncoder(nn.Module):
    """CIFAR-10 encoder, paper Table 1: component means and log-variances.

    [B,32,32,3] -> conv5x5 32 s2 -> conv5x5 64 s2 -> conv3x3 128 s2 -> conv3x3 256 s2
    (each relu then BatchNorm, SAME: 16, 8, 4, 2 pixels) -> flatten [B,1024]
    -> Dense 1024 relu BatchNorm -> Dense(2*K*d) split into (mean, logvar).
    The paper's "20 x (300 dense, linear)" heads are the K mean heads and K
    log-variance heads, fused into that one Dense. Mixture logits come from
    `Classifier`.

    Attributes:
      num_classes: K.
      latent_dim: d.
      compute_dtype: matmul operand dtype (module docstring).
    """

    num_classes: int = 10
    latent_dim: int = 300
    compute_dtype: Any = jnp.float32
    dense_layout: str = "xla"  # weight-gradient layout of its dense layers (`dense`)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        """Encode.

        Args:
          x: [B, H, W, C] images in [0, 1] (paper: [B, 32, 32, 3]).
          train: batch statistics and running-average updates in BatchNorm.

        Returns:
          mean [B, K, d], logvar [B, K, d], float32.
        """
        _check_rank(x, 4, "x", "[B, H, W, C]")
        k, d = self.num_classes, self.latent_dim
        h = x.astype(jnp.float32)
        layers = ((32, 5), (64, 5), (128, 3), (256, 3))
        for i, (features, size) in enumerate(layers):
            h = conv(features, size, 2, self.compute_dtype, name=f"conv_{i}")(h)
            h = batch_norm(train, name=f"norm_{i}")(nn.relu(h))
        h = jnp.reshape(h, (h.shape[0], -1))
        h = dense(1024, self.compute_dtype, name="hidden", layout=self.dense_layout)(h)
        h = batch_norm(train, name="norm_hidden")(nn.relu(h))
        out = dense(2 * k * d, self.compute_dtype, name="head", layout=self.dense_layout)(h)
        mean = jnp.reshape(out[:, : k * d], (-1, k, d))
        logvar = jnp.reshape(out[:, k * d :], (-1, k, d))
        return mean, logvar


class ConvDecoder(nn.Module):
    """CIFAR-10 decoder, paper Table 1.

    [B,d] -> Dense 1024 relu BatchNorm -> reshape [B,2,2,256]
    -> convT5x5 256 s2 -> convT5x5 256 s1 -> convT5x5 128 s2 -> convT5x5 64 s2
    -> convT5x5 32 s2 (each relu then BatchNorm, SAME: 4, 4, 8, 16, 32 pixels)
    -> convT1x1 `output_channels` s1 -> sigmoid.

    Attributes:
      output_channels: image channels (3 for CIFAR-10).
      compute_dtype: matmul operand dtype (module docstring).
      transposed_conv: path of its transposed convolutions (`conv_transpose`): "xla"
        (stock) or "phases" (`exon_jax.backend`'s choice on CPU).
    """

    output_channels: int = 3
    compute_dtype: Any = jnp.float32
    dense_layout: str = "xla"  # weight-gradient layout of its dense layers (`dense`)
    transposed_conv: str = "xla"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Decode.

        Args:
          z: [B, d] latent codes (paper: d = 300).
          train: batch statistics and running-average updates in BatchNorm.

        Returns:
          [B, 32, 32, output_channels] pixel means in (0, 1), float32.
        """
        _check_rank(z, 2, "z", "[B, d]")
        h = dense(1024, self.compute_dtype, name="hidden", layout=self.dense_layout)(
            z.astype(jnp.float32)
        )
        h = batch_norm(train, name="norm_hidden")(nn.relu(h))
        h = jnp.reshape(h, (-1, 2, 2, 256))
        layers = ((256, 2), (256, 1), (128, 2), (64, 2), (32, 2))
        for i, (features, stride) in enumerate(layers):
            h = conv_transpose(
                features, 5, stride, self.compute_dtype, self.transposed_conv, name=f"deconv_{i}"
            )(h)
            h = batch_norm(train, name=f"norm_{i}")(nn.relu(h))
        h = conv_transpose(
            self.output_channels, 1, 1, self.compute_dtype, self.transposed_conv, name="output"
        )(h)
        return nn.sigmoid(h)


class Classifier(nn.Module):
    """CIFAR-10 classifier, paper Table 2: mixture logits a(x), w = softmax(a).

    [B,32,32,3] -> 2 x (conv3x3 32 relu) -> maxpool 2 -> 2 x (conv3x3 64 relu)
    -> maxpool 2 -> 2 x (conv3x3 128 relu) -> maxpool 2 -> flatten [B, 4*4*128]
    -> Dense 128 relu -> Dense K. Convs are stride 1, padding SAME (the paper
    gives no padding; VALID would shrink 32 pixels to nothing before the last
    pool). The softmax is left to the losses.

    Attributes:
      num_classes: K.
      compute_dtype: matmul operand dtype (module docstring).
    """

    num_classes: int = 10
    compute_dtype: Any = jnp.float32
    dense_layout: str = "xla"  # weight-gradient layout of its dense layers (`dense`)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Classify.

        Args:
          x: [B, H, W, C] images in [0, 1] (paper: [B, 32, 32, 3]).
          train: unused (no BatchNorm or dropout); kept for one signature.

        Returns:
          [B, K] logits, float32.
        """
        del train
        _check_rank(x, 4, "x", "[B, H, W, C]")
        h = x.astype(jnp.float32)
        for block, features in enumerate((32, 64, 128)):
            for i in range(2):
                h = conv(features, 3, 1, self.compute_dtype, name=f"conv_{block}_{i}")(h)
                h = nn.relu(h)
            h = max_pool_2x2(h)
        h = jnp.reshape(h, (h.shape[0], -1))
        h = nn.relu(dense(128, self.compute_dtype, name="hidden", layout=self.dense_layout)(h))
        return dense(self.num_classes, self.compute_dtype, name="logits", layout=self.dense_layout)(
            h
        )


class EXoNModel(nn.Module):
    """Encoder, decoder and optional classifier under one variable tree.

    Parameters live under 'encoder', 'decoder' and (if given) 'classifier'.
    Sampling (Gumbel-Softmax for y, reparameterisation for z) is not done
    here: it happens in pure functions (`exon_jax.sampling`). The train step
    runs encode -> sample -> decode inside ONE `model.apply` by passing a
    function as `method` (see `exon_jax.train.make_train_step`), so the
    BatchNorm statistics of encoder and decoder are updated together.

    Attributes:
      encoder: returns (logits, mean, logvar) (MLPEncoder) or (mean, logvar)
        (ConvEncoder); called as encoder(x, train=...).
      decoder: called as decoder(z, train=...) -> x_hat.
      classifier: optional, called as classifier(x, train=...) -> [B, K] logits;
        when given it supplies the mixture logits and the encoder's are unused.
    """

    encoder: nn.Module
    decoder: nn.Module
    classifier: Optional[nn.Module] = None

    def encode(self, x: jax.Array, train: bool = False):
        """q(y, z | x) parameters.

        Args:
          x: [B, ...] images in [0, 1].
          train: BatchNorm mode.

        Returns:
          logits [B, K], mean [B, K, d], logvar [B, K, d].
        """
        outputs = self.encoder(x, train=train)
        if self.classifier is not None:
            mean, logvar = outputs[-2:]
            logits = self.classifier(x, train=train)
            return logits, mean, logvar
        if len(outputs) != 3:
            raise ValueError(
                "encoder must return (logits, mean, logvar) when no classifier is "
                f"given, got {len(outputs)} outputs"
            )
        return tuple(outputs)

    def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Decoder mean D(z).

        Args:
          z: [B, d] latent codes.
          train: BatchNorm mode.

        Returns:
          [B, *image_shape] pixel means in (0, 1).
        """
        return self.decoder(z, train=train)

    def __call__(self, x: jax.Array, train: bool = False):
        """Encode x and decode the mean of component 0 (creates every variable in `init`).

        Args:
          x: [B, ...] images in [0, 1].
          train: BatchNorm mode.

        Returns:
          logits [B, K], mean [B, K, d], logvar [B, K, d], x_hat [B, *image_shape].
        """
        logits, mean, logvar = self.encode(x, train)
        x_hat = self.decode(mean[:, 0, :], train)
        return logits, mean, logvar, x_hat
