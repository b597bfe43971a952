"""Workarounds for one backend's slow paths, chosen once, by backend, in one place.

XLA:CPU runs four things of EXoN far slower than other backends do, so on CPU:
- a convolutional network's epoch runs one compiled step per Python call instead of
  one `lax.scan` (25.7 s vs 1.9 s per CIFAR-10 step inside a loop);
- a grid of convolutional networks runs its models with `lax.map` instead of `vmap`
  (vmapped convolutions become slow grouped convolutions);
- transposed convolutions run in sub-pixel form (`models.phase_conv_transpose`: one
  stride-1 convolution of the undilated input, or a patch matmul where its kernel is larger
  than its input): XLA:CPU's own strided transposed convolutions ran 17-43x slower (the
  CIFAR-10 decoders' layers, forward and backward on 128 codes, 2-core Intel Xeon);
- dense layers compute their weight gradient from a transposed copy of the smaller operand
  (`models.dense`, layout "smaller"): XLA:CPU's own x^T.g kernel is slower (bench/speed_paths.py).
Everywhere else the plain programs run: a scanned, vmapped epoch, flax's stock
`nn.ConvTranspose` (path "xla") and `nn.Dense` (layout "xla"). The networks take these choices as
module fields (`exon_jax.methods` passes them); nothing here is global state.
"""

from __future__ import annotations

import jax

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


def transposed_conv_path(backend: str | None = None) -> str:
    """The transposed convolutions' path (`models.conv_transpose`): "phases" on CPU, else "xla"."""
    return "phases" if (backend or jax.default_backend()) == "cpu" else "xla"


def dense_weight_gradient(requested: str = "auto", backend: str | None = None) -> str:
    """The dense layers' weight-gradient layout (`models.WEIGHT_GRADIENT_LAYOUTS`):
    `requested`, or for 'auto' "smaller" on CPU and XLA's own ("xla") elsewhere."""
    if requested != "auto":
        return requested
    return "smaller" if (backend or jax.default_backend()) == "cpu" else "xla"


def conv_weight_gradient(requested: str = "auto") -> str:
    """The revision classifiers' convolution path (`models.CONV_LAYOUTS`): `requested`, or
    for 'auto' XLA's own ("xla") on every backend. The "shifted" weight gradients (one
    matmul per kernel offset) measured 1.45x slower than XLA's own (Eigen) convolutions for
    MNIST's classifier step on a 2-core Intel Xeon (bench/revision_step.py)."""
    return "xla" if requested == "auto" else requested


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags of bfloat16 arithmetic (/proc/cpuinfo)


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU does bfloat16 arithmetic: True / False from the `flags` line of
    `cpuinfo` (one of BF16_CPU_FLAGS), None where that cannot be told (no such file, no
    flags line: e.g. not Linux on x86)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split(":", 1)[1].split() for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return None


def bf16_note(
    compute_dtype: str, backend: str | None = None, cpuinfo: str = "/proc/cpuinfo"
) -> str | None:
    """The start-up note of a bfloat16 run on a CPU without bfloat16 arithmetic (XLA:CPU
    then emulates it, slower than float32), or None: float32, a CPU with it, a CPU that
    cannot be told, or a non-CPU backend."""
    if compute_dtype != "bfloat16" or (backend or jax.default_backend()) != "cpu":
        return None
    if cpu_has_bf16(cpuinfo) is not False:
        return None
    return (
        "model.compute_dtype=bfloat16 on a CPU without bfloat16 arithmetic (no "
        f"{' / '.join(BF16_CPU_FLAGS)} in {cpuinfo}): it is emulated and runs slower than "
        "float32 here"
    )


def warn_bf16(compute_dtype: str, backend: str | None = None) -> None:
    """Warns once at start-up with `bf16_note` when there is one."""
    note = bf16_note(compute_dtype, backend)
    if note is not None:
        import warnings

        warnings.warn(note, stacklevel=2)
