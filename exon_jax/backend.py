"""Workarounds for one backend's slow paths, chosen once, by backend, in one place.

XLA:CPU runs three things of EXoN far slower than other backends do, so on CPU:
- a convolutional network's epoch runs one compiled step per Python call instead of
  one `lax.scan` (25.7 s vs 1.9 s per CIFAR-10 step inside a loop);
- a grid of convolutional networks runs its models with `lax.map` instead of `vmap`
  (vmapped convolutions become slow grouped convolutions);
- transposed convolutions with small outputs (up to 16 pixels a side, the 2x2 -> 16x16
  layers of the paper's decoder) run as one matmul over explicit patches
  (`models.PatchConvTranspose`): XLA:CPU's path for kernels larger than their input is
  ~45x slower;
- the revision's classifier convolutions compute their weight gradient as one matmul per
  kernel offset (`models.shifted_conv_general_dilated`, layout "shifted"): XLA:CPU's own
  is several times slower than the forward convolution;
- dense layers compute their weight gradient from a transposed copy of the smaller operand
  (`models.dense`, layout "smaller"): XLA:CPU's own x^T.g kernel is slower (bench/speed_paths.py).
Everywhere else the plain programs run: a scanned, vmapped epoch, flax's stock
`nn.ConvTranspose` and `nn.Dense` (layout "xla"). The networks take these choices as
module fields (`exon_jax.methods` passes them); nothing here is global state.
"""

from __future__ import annotations

import jax

CPU_PATCH_MAX_SIZE = 16
DENSE_LAYOUTS = ("auto", "xla", "transpose_x", "transpose_g", "smaller")
CONV_LAYOUTS = ("auto", "xla", "shifted")


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


def dense_weight_gradient(requested: str = "auto", backend: str | None = None) -> str:
    """The dense layers' weight-gradient layout (`models.WEIGHT_GRADIENT_LAYOUTS`):
    `requested`, or for 'auto' "smaller" on CPU and XLA's own ("xla") elsewhere."""
    if requested != "auto":
        return requested
    return "smaller" if (backend or jax.default_backend()) == "cpu" else "xla"


def conv_weight_gradient(requested: str = "auto", backend: str | None = None) -> str:
    """The revision classifiers' convolution path (`models.CONV_LAYOUTS`): `requested`, or
    for 'auto' "shifted" (weight gradients as matmuls) on CPU and XLA's own elsewhere."""
    if requested != "auto":
        return requested
    return "shifted" if (backend or jax.default_backend()) == "cpu" else "xla"
