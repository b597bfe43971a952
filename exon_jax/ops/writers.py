"""Metric writers: one interface, JSON-lines and TensorBoard back-ends."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import math
import os
from typing import Any, Mapping, Sequence, TextIO

import jax
import numpy as np


def to_jsonable(value: Any) -> Any:
    """Plain-Python JSON value of `value`, the one converter of the package.

    Dicts (keys made str), lists and tuples recursively; NumPy / JAX scalars and arrays
    to Python numbers and nested lists; bools stay bools; NaN and +-inf become None, so
    the output is strict JSON. Other values (str, None, ...) are returned unchanged.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, bytes)) or value is None:
        return value
    if hasattr(value, "tolist"):  # NumPy / JAX arrays and scalars
        return to_jsonable(np.asarray(value).tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


TB_FLUSH_SECONDS = 30
TB_QUEUE_EVENTS = 100_000  # tensorboardX blocks each event on a full queue (default 10)
MAX_PENDING_IMAGES = 64  # images waiting for the background thread before a write waits


class MetricWriter:
    """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard event files.

    Only process 0 writes. Each JSONL line is one object: {"epoch": e, **scalars}.
    Each grid point is its own TensorBoard run, `tensorboard/<run name>/`. A writer
    opened at `start_epoch` > 0 (a resumed run) first drops the rows of later epochs
    from metrics.jsonl and tells TensorBoard to purge them, so no epoch appears twice.

    Cost per epoch stays off the training path: TensorBoard images are encoded (PNG, ~30 ms
    each) on a background thread while the device trains; TensorBoard events are queued
    (no wait on its writer thread) and written to disk every `TB_FLUSH_SECONDS` and at
    `close`; metrics.jsonl is flushed every `flush`.
    """

    def __init__(
        self,
        workdir: str,
        run_names: Sequence[str] = ("model",),
        start_epoch: int = 0,
        tensorboard: bool = True,
    ):
        self._active = jax.process_index() == 0
        self._jsonl: TextIO | None = None
        self._tb: list = []
        self._images: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque = collections.deque()
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        _drop_rows_after(path, start_epoch)
        self._jsonl = open(path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            purge = start_epoch + 1 if start_epoch > 0 else None
            self._tb = [
                SummaryWriter(
                    os.path.join(workdir, "tensorboard", name),
                    purge_step=purge,
                    max_queue=TB_QUEUE_EVENTS,
                    flush_secs=TB_FLUSH_SECONDS,
                )
                for name in run_names
            ]
            self._images = concurrent.futures.ThreadPoolExecutor(1, "tensorboard-images")

    def write_scalars(self, epoch: int, scalars: Mapping[str, Any], model: int = 0) -> None:
        """Appends one row of model `model`'s scalars (keys like 'train/loss', 'eval/error')."""
        if self._jsonl is None:
            return
        row = {
            "epoch": int(epoch),
            **{k: to_jsonable(v) for k, v in scalars.items()},
            "model": int(model),
        }
        self._jsonl.write(json.dumps(row) + "\n")
        if self._tb:
            for name, value in row.items():
                if (
                    name not in ("epoch", "model")
                    and isinstance(value, (int, float))
                    and math.isfinite(value)
                ):
                    self._tb[model].add_scalar(name, value, epoch)

    def write_images(self, epoch: int, name: str, images, model: int = 0) -> None:
        """One TensorBoard image: a [N, H, W, C] batch in [0, 1] tiled into a row."""
        if not self._active or not self._tb:
            return
        images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
        assert self._images is not None
        while len(self._pending) >= MAX_PENDING_IMAGES:
            self._pending.popleft().result()
        self._pending.append(
            self._images.submit(self._tb[model].add_images, name, images, epoch, dataformats="NHWC")
        )

    def write_hparams(
        self,
        hparams: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        metrics: Sequence[str] = (),
    ) -> None:
        """Records each model's hyper-parameters in TensorBoard's HParams view (one session
        per grid point's run, so grid points compare by any field, e.g. loss.lambda1,
        against the scalar tags `metrics`), and as text.

        Args:
          hparams: one flat {name: value} per model, or one for every model; a value
            that is not a bool, number or str is recorded as its str.
          metrics: scalar tags the HParams view shows per session (e.g. eval/kl).
        """
        if not self._active or not self._tb:
            return
        from tensorboardX.summary import hparams as hparams_summary

        per_model = [hparams] * len(self._tb) if isinstance(hparams, Mapping) else hparams
        for tb, values in zip(self._tb, per_model):
            plain = {
                k: v if isinstance(v, (bool, int, float, str)) else str(v)
                for k, v in values.items()
            }
            experiment, session, _ = hparams_summary(plain, {m: 0.0 for m in metrics})
            tb.file_writer.add_summary(experiment)
            tb.file_writer.add_summary(session)
            tb.add_text("hparams", json.dumps(values, indent=1, default=str), 0)

    def flush(self) -> None:
        """Flushes metrics.jsonl (TensorBoard flushes itself, and at `close`)."""
        if self._jsonl is not None:
            self._jsonl.flush()

    def close(self) -> None:
        """Waits for the queued images, then closes every file (raises a failed image write)."""
        if self._active and self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
            try:
                if self._images is not None:
                    self._images.shutdown(wait=True)
                while self._pending:
                    self._pending.popleft().result()
            finally:
                for tb in self._tb:
                    tb.close()


def _drop_rows_after(path: str, epoch: int) -> None:
    """Rewrites metrics.jsonl without rows of epochs > `epoch` (and any torn last line)."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("epoch", 0) <= epoch:
                kept.append(json.dumps(row) + "\n")
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)
