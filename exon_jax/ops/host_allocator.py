"""glibc malloc settings for XLA:CPU, applied from inside the process (no JAX import here).

Off unless EXON_MALLOC_TUNING=1: glibc's defaults ran fastest where measured side by side.

XLA:CPU allocates fresh buffers on every call of a compiled program; with glibc's defaults
large ones are mmap'd and returned to the kernel when freed, so the next call faults their
pages in again. `tune()` is the in-process form of
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=...
(tunables are read only when a process starts; mallopt(3) applies from the call on): no
mmap'd chunks, one arena, freed memory never trimmed, so freed pages are reused. On the
MNIST one-step-per-call epoch (AMD EPYC Zen 4, 2 cores) it took 11 074 -> 0 minor page
faults and 23.6 -> 0.4 ms of system time a step. But the single arena makes XLA's threads
queue for its lock: on a 2-core Intel Xeon (bench/allocator.py, fresh processes
alternating) XLA compiled the paper MNIST epoch 1.55x slower and the revision's step ran
1.28x slower than with glibc's defaults, despite 14x fewer page faults (an arena per core:
1.30x / 1.15x; no mmap and no trimming alone: 1.01x / 1.05x, and no fewer faults).
"""

from __future__ import annotations

import os
import sys
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # <malloc.h>
SETTINGS = {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1, "M_ARENA_MAX": 1}


def tune() -> dict[str, Any]:
    """Applies `SETTINGS` with mallopt on Linux/glibc; returns what was done (for records)."""
    if os.environ.get("EXON_MALLOC_TUNING", "0") != "1":
        return {"tuned": False, "reason": "glibc's defaults (EXON_MALLOC_TUNING=1 tunes)"}
    if not sys.platform.startswith("linux"):
        return {"tuned": False, "reason": "not Linux"}
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError) as error:
        return {"tuned": False, "reason": f"no glibc mallopt ({error})"}
    returned = [
        mallopt(M_MMAP_MAX, SETTINGS["M_MMAP_MAX"]),
        mallopt(M_TRIM_THRESHOLD, SETTINGS["M_TRIM_THRESHOLD"]),
        mallopt(M_ARENA_MAX, SETTINGS["M_ARENA_MAX"]),
    ]
    return {"tuned": all(r == 1 for r in returned), "mallopt": dict(SETTINGS), "returned": returned}
