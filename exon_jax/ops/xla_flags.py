"""XLA:CPU compiler flags exon_jax sets before the backend starts (no JAX import here).

`CPU_FLAGS` take XLA:CPU's convolutions out of its YNNPACK library fusions, so they run
through Eigen's spatial convolutions again. On the revision's MNIST step (96 + 32 images,
the classifier's 5x5 and 3x3 convolutions on 384 images) that measured 1.39x faster on a
2-core AMD EPYC (bench/revision_step.py): XLA:CPU's YNN weight gradient of the 32 -> 64
3x3 layer ran at 28 GFLOP/s, Eigen's at 83, and the forward products at 92 vs 190 GFLOP/s.
Networks without convolutions (the paper's MNIST MLP) compile to the same program.

Flags are read once, when the first JAX backend starts: `apply()` appends them to
XLA_FLAGS unless the backend has started, the user's XLA_FLAGS already sets the same flag,
or EXON_XLA_CPU_TUNING=0. Other backends ignore XLA:CPU's flags.
"""

from __future__ import annotations

import os
import sys

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def apply(environ=None, backend_started=_backend_started) -> dict:
    """Adds `CPU_FLAGS` to XLA_FLAGS of `environ` (default os.environ) where they can still
    take effect; returns what was done (for records)."""
    environ = os.environ if environ is None else environ
    if environ.get("EXON_XLA_CPU_TUNING", "1") == "0":
        return {"applied": [], "reason": "EXON_XLA_CPU_TUNING=0"}
    if backend_started():
        return {"applied": [], "reason": "a JAX backend had already started"}
    current = environ.get("XLA_FLAGS", "")
    given = {flag.split("=", 1)[0] for flag in current.split()}
    added = [flag for flag in CPU_FLAGS if flag.split("=", 1)[0] not in given]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return {"applied": added, "XLA_FLAGS": environ.get("XLA_FLAGS", "")}


def without(xla_flags: str) -> str:
    """`xla_flags` (an XLA_FLAGS value) with `CPU_FLAGS` taken out: for a child process that
    should run with XLA's own flags (EXON_XLA_CPU_TUNING=0 alone keeps an inherited value)."""
    return " ".join(flag for flag in xla_flags.split() if flag not in CPU_FLAGS)
