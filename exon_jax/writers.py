"""Metric writers: one interface, JSON-lines and TensorBoard back-ends."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np


def _to_python(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


class MetricWriter:
    """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard event files.

    Only process 0 writes. Each JSONL line is one object: {"epoch": e, **scalars}.
    """

    def __init__(self, workdir: str, tensorboard: bool = True):
        self._active = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write_scalars(self, epoch: int, scalars: Mapping[str, Any]) -> None:
        """Appends one row of scalars (keys like 'train/loss', 'eval/error')."""
        if not self._active:
            return
        row = {"epoch": int(epoch), **{k: _to_python(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for name, value in row.items():
                if name != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(name, value, epoch)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Records the run's hyper-parameters as TensorBoard text."""
        if self._active and self._tb is not None:
            self._tb.add_text("hparams", json.dumps(hparams, indent=1, default=str), 0)

    def flush(self) -> None:
        if self._active:
            self._jsonl.flush()
            if self._tb is not None:
                self._tb.flush()

    def close(self) -> None:
        if self._active:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()
