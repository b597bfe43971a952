"""Workarounds for one backend's slow paths, chosen once, by backend, in one place.

XLA:CPU runs three things of EXoN far slower than other backends do, so on CPU:
- a convolutional network's epoch runs one compiled step per Python call instead of
  one `lax.scan` (25.7 s vs 1.9 s per CIFAR-10 step inside a loop);
- a grid of convolutional networks runs its models with `lax.map` instead of `vmap`
  (vmapped convolutions become slow grouped convolutions);
- transposed convolutions with small outputs (up to 16 pixels a side, the 2x2 -> 16x16
  layers of the paper's decoder) run as one matmul over explicit patches
  (`PatchConvTranspose`): XLA:CPU's path for kernels larger than their input is ~45x slower.
Everywhere else the plain programs run: a scanned, vmapped epoch and flax's stock
`nn.ConvTranspose`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from exon_jax import models

CPU_PATCH_MAX_SIZE = 16


def _conv_on_cpu(network: str, backend: str | None) -> bool:
    return network == "conv" and (backend or jax.default_backend()) == "cpu"


def epoch_loop(requested: str, network: str, backend: str | None = None) -> str:
    """'scan' or 'python': `requested`, or for 'auto' scan except conv networks on CPU."""
    if requested != "auto":
        return requested
    return "python" if _conv_on_cpu(network, backend) else "scan"


def model_axis(requested: str, network: str, backend: str | None = None) -> str:
    """'vmap' or 'map': `requested`, or for 'auto' vmap except conv networks on CPU."""
    if requested != "auto":
        return requested
    return "map" if _conv_on_cpu(network, backend) else "vmap"


def transposed_conv_patch_size(backend: str | None = None) -> int:
    """The output size up to which transposed convolutions run as patch matmuls (0 = never)."""
    return CPU_PATCH_MAX_SIZE if (backend or jax.default_backend()) == "cpu" else 0


class PatchConvTranspose(nn.Module):
    """Square transposed convolution, padding SAME: [B, H, W, Cin] -> [B, H*s, W*s, features].

    The same function and parameters ('kernel' [k, k, Cin, features], 'bias') as
    `nn.ConvTranspose(features, (k, k), strides=(s, s), padding="SAME")`. Where the
    output is small (at most `patch_max_size` pixels a side: the 2x2 -> 16x16 layers of
    the paper's decoder) it is computed as one matmul over explicit k x k patches:
    XLA:CPU runs convolutions whose kernel is larger than their input on a slow
    path (3.2 s vs 0.07 s for the 4x4, 256-channel, 5x5 layer at batch 66). With
    `patch_max_size` 0 it is `lax.conv_transpose` with the operands in `compute_dtype`.
    """

    features: int
    kernel_size: int
    strides: int = 1
    compute_dtype: Any = jnp.float32
    patch_max_size: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.strides
        kernel = self.param("kernel", models._KERNEL_INIT, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        reduced = models._is_reduced(self.compute_dtype)
        lhs = x.astype(self.compute_dtype) if reduced else x
        rhs = kernel.astype(self.compute_dtype) if reduced else kernel
        out_h, out_w = x.shape[1] * s, x.shape[2] * s
        if max(out_h, out_w) > self.patch_max_size:
            y = jax.lax.conv_transpose(
                lhs,
                rhs,
                (s, s),
                "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                preferred_element_type=jnp.float32,
            )
            return y + bias
        # lax.conv_transpose's SAME padding: dilate the input by s, pad (a, b), correlate.
        pad_total = k + s - 2
        pad_a = k - 1 if s > k - 1 else -(-pad_total // 2)
        pad_b = pad_total - pad_a
        zero = jnp.zeros((), lhs.dtype)
        padded = jax.lax.pad(
            lhs, zero, ((0, 0, 0), (pad_a, pad_b, s - 1), (pad_a, pad_b, s - 1), (0, 0, 0))
        )
        patches = jnp.stack(
            [padded[:, i : i + out_h, j : j + out_w, :] for i in range(k) for j in range(k)], axis=3
        )
        y = jnp.einsum(
            "bhwpc,pco->bhwo",
            patches,
            rhs.reshape(k * k, *rhs.shape[2:]),
            preferred_element_type=jnp.float32,
        )
        return y + bias
