"""Figures drawn in worker processes: `FigureJob`s (a `plots` function's name and host
arrays) drawn by a `FigurePool` of spawned, warmed-up Matplotlib processes, started ahead
of the figures (e.g. while the model trains).

Only the processes that draw import Matplotlib (`plots`): the process that builds the jobs
(the training run) does not, unless it draws itself (one worker)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import multiprocessing
import os
from typing import Any, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class FigureJob:
    """One figure to draw from host arrays: `plots.<draw>(*args, **kwargs)` saved to `path`
    (and, with `pdf`, to a PDF beside it).

    Plain data (a function name and NumPy arrays), so a job can be drawn in another process.
    """

    draw: str
    path: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pdf: bool = True


def pdf_path(path: str) -> str:
    """The PDF written beside the PNG `path` (`plots.save`)."""
    return os.path.splitext(path)[0] + ".pdf"


def job_files(job: FigureJob) -> list[str]:
    """The files a job writes: its PNG, and the PDF beside it when the job asks for one."""
    return [job.path, pdf_path(job.path)] if job.pdf else [job.path]


def draw_job(job: FigureJob) -> str:
    """Draws and saves one `FigureJob`; returns its PNG path."""
    from exon_jax import plots

    return plots.save(getattr(plots, job.draw)(*job.args, **job.kwargs), job.path, job.pdf)


MAX_DEFAULT_WORKERS = 8  # a 2-D run draws 6 figures a model


def default_workers() -> int:
    """Drawing processes for `workers=0`: one per usable CPU core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, MAX_DEFAULT_WORKERS)


def _array_bytes(tree: Any) -> int:
    """Bytes of the NumPy arrays in a job's arguments (nested in lists, tuples and dicts):
    a proxy for its drawing time."""
    if isinstance(tree, np.ndarray):
        return tree.nbytes
    if isinstance(tree, FigureJob):
        return _array_bytes([tree.args, tree.kwargs])
    if isinstance(tree, Mapping):
        return _array_bytes(list(tree.values()))
    if isinstance(tree, (list, tuple)):
        return sum(_array_bytes(leaf) for leaf in tree)
    return 0


def _warm_up() -> None:
    """Run by each new worker: loads Matplotlib's Agg and PDF backends and its fonts (what
    the first figure of a process otherwise pays for)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, "warm-up $x$")
    for fmt in ("png", "pdf"):
        fig.savefig(io.BytesIO(), format=fmt)


class FigurePool:
    """Processes that draw `FigureJob`s, started ahead of the figures (e.g. before training).

    Drawing is pure Matplotlib on host arrays, one CPU core per figure. Worker processes are
    spawned (so no JAX state is forked) and warmed up (`_warm_up`) as soon as the pool is
    made, so their start-up overlaps whatever the caller does next. With one worker (or one
    usable core) nothing is started and figures are drawn in this process.

    Use as a context manager; `draw(jobs)` may be called any number of times.

    Args:
      workers: processes; 0 = `default_workers()`; 1 = draw here.
    """

    def __init__(self, workers: int = 0):
        self.workers = workers or default_workers()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up,
            )
            for _ in range(self.workers):  # each submit starts a process while none is idle
                self._pool.submit(int)

    def draw(self, jobs: Sequence[FigureJob]) -> list[str]:
        """Draws `jobs` (a PNG each, and a PDF where a job asks); returns the PNG paths in the
        order of `jobs`."""
        if self._pool is None or len(jobs) <= 1:
            return [draw_job(job) for job in jobs]
        # largest first, so that no big figure starts last while the other workers idle
        order = sorted(range(len(jobs)), key=lambda i: -_array_bytes(jobs[i]))
        futures = {i: self._pool.submit(draw_job, jobs[i]) for i in order}
        return [futures[i].result() for i in range(len(jobs))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "FigurePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_all(
    jobs: Sequence[FigureJob], workers: int = 0, pool: FigurePool | None = None
) -> list[str]:
    """Draws `jobs` (a PNG each, and a PDF where a job asks); returns the PNG paths in order.

    Args:
      jobs: the figures.
      workers: processes to start for them when no `pool` is given: 0 = one per figure, at
        most `default_workers()`; 1 = draw here.
      pool: a `FigurePool` started earlier (its warm workers are used as they are).
    """
    if pool is not None:
        return pool.draw(jobs)
    if not jobs:
        return []
    with FigurePool(min(len(jobs), workers or default_workers())) as fresh:
        return fresh.draw(jobs)
