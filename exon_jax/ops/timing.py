"""Where a run's wall-clock time goes: named phases, summed, written as timings.json."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import time
from typing import Iterator

TIMINGS_FILE = "timings.json"


def process_age_seconds() -> float | None:
    """Seconds since this process started (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Stopwatch:
    """Sums wall-clock seconds per named phase.

    with stopwatch.phase("compile"): ...
    stopwatch.seconds -> {"compile": 3.2, ...}
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - tick

    def write(self, workdir: str, total_seconds: float | None = None) -> str:
        """Writes {"phases": {name: s}, "total": s, "other": total - sum} to timings.json."""
        phases = {k: round(v, 3) for k, v in self.seconds.items()}
        record: dict[str, object] = {"phases": phases}
        if total_seconds is not None:
            record["total"] = round(total_seconds, 3)
            record["other"] = round(total_seconds - sum(self.seconds.values()), 3)
        path = os.path.join(workdir, TIMINGS_FILE)
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
        return path
