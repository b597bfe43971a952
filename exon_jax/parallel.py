"""Device layout: one `Mesh` with a 'model' axis (sweeps) and a 'data' axis (batches).

G models on n devices use a (gcd(G, n), n / gcd(G, n)) mesh: the model axis of
a sweep is split over as many devices as divide it, and each model's batch is
split over the rest (data parallel). One model on n devices is pure data
parallelism; n models on n devices is pure model parallelism. Works unchanged
on one device. `jax.jit` + `NamedSharding`, no pmap.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MODEL_AXIS = "model"
DATA_AXIS = "data"


def make_mesh(num_models: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('model', 'data') mesh over `devices` (default: all) for `num_models` models."""
    devices = list(devices if devices is not None else jax.devices())
    model_size = math.gcd(num_models, len(devices))
    return jax.make_mesh((model_size, len(devices) // model_size), (MODEL_AXIS, DATA_AXIS),
                         devices=devices, axis_types=(AxisType.Auto, AxisType.Auto))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (data sets, shared keys)."""
    return NamedSharding(mesh, P())


def model_sharded(mesh: Mesh) -> NamedSharding:
    """Leading model axis split over the mesh's 'model' axis."""
    return NamedSharding(mesh, P(MODEL_AXIS))


def batch_sharded(mesh: Mesh) -> NamedSharding | None:
    """Leading batch axis split over the 'data' axis; None when that axis has one device."""
    if mesh.shape[DATA_AXIS] == 1:
        return None
    return NamedSharding(mesh, P(DATA_AXIS))


def describe(mesh: Mesh) -> str:
    """One line: platform, device count and the mesh shape."""
    kinds = sorted({d.device_kind for d in mesh.devices.flat})
    return (f"{mesh.devices.size} x {'/'.join(kinds)} ({jax.default_backend()}), "
            f"mesh model={mesh.shape[MODEL_AXIS]} x data={mesh.shape[DATA_AXIS]}")
