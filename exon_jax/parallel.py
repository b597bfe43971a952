"""Device layout: one `Mesh` with a 'model' axis (sweeps) and a 'data' axis (batches).

G models on n devices use a (gcd(G, n), n / gcd(G, n)) mesh: the model axis of
a sweep is split over as many devices as divide it, and each model's batch is
split over the rest (data parallel). One model on n devices is pure data
parallelism; n models on n devices is pure model parallelism. Works unchanged
on one device. `jax.jit` + `NamedSharding`, no pmap.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from exon_jax.errors import ExpectedError

MODEL_AXIS = "model"
DATA_AXIS = "data"


def make_mesh(num_models: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('model', 'data') mesh over `devices` (default: all) for `num_models` models."""
    devices = list(devices if devices is not None else jax.devices())
    model_size = math.gcd(num_models, len(devices))
    return jax.make_mesh(
        (model_size, len(devices) // model_size),
        (MODEL_AXIS, DATA_AXIS),
        devices=devices,
        axis_types=(AxisType.Auto, AxisType.Auto),
    )


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
    return (
        f"{mesh.devices.size} x {'/'.join(kinds)} ({jax.default_backend()}), "
        f"mesh model={mesh.shape[MODEL_AXIS]} x data={mesh.shape[DATA_AXIS]}"
    )


def global_array(value, sharding: NamedSharding) -> jax.Array:
    """A global array from a host value every process holds in full (numpy or jax).

    Each process builds only the shards of its own devices (`make_array_from_callback`),
    so the same call works on one device, many devices and many processes. PRNG key
    arrays keep their key type.
    """
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = global_array(jax.random.key_data(value), sharding)
        return _key_wrapper(jax.random.key_impl(value), sharding)(data)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


@functools.cache
def _key_wrapper(impl, sharding: NamedSharding):
    """The jitted key-data -> key program of `global_array`, made once per key kind and
    sharding (a new function each call was lowered again every epoch)."""
    return jax.jit(lambda data: jax.random.wrap_key_data(data, impl=impl), out_shardings=sharding)


def global_tree(tree, sharding: NamedSharding):
    """`global_array` on every leaf of a pytree."""
    return jax.tree.map(lambda leaf: global_array(leaf, sharding), tree)


def to_host(tree):
    """NumPy copies of a pytree of (possibly multi-process) arrays, on every process.

    PRNG keys come back as their raw key data. With several processes this is a collective:
    every process must call it.
    """

    def gather(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return leaf

    # one device_get for the whole tree: every copy starts before the first is awaited
    return jax.tree.map(np.asarray, jax.device_get(jax.tree.map(gather, tree)))


def with_sharding(abstract_tree, sharding: NamedSharding):
    """`jax.ShapeDtypeStruct`s of `abstract_tree` placed on `sharding` (restore targets)."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract_tree
    )


def tree_bytes(tree) -> int:
    """Bytes held by the leaves of a pytree of arrays or ShapeDtypeStructs."""
    return sum(
        int(np.prod(leaf.shape)) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)
    )


def compile_ahead(fn: Callable, *args) -> tuple[Callable, dict[str, float]]:
    """`fn` compiled for `args` once, ahead of its first call, and XLA's memory analysis.

    The compiled executable is what the caller then calls (a jitted function lowered and
    compiled separately would compile again on its first call). A plain Python function
    (e.g. a stepwise epoch) is returned as it is, with no analysis.

    Returns:
      (callable, {"gib_per_device", "temp_gib"} or {} when unknown).
    """
    if not hasattr(fn, "lower"):
        return fn, {}
    compiled = fn.lower(*args).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        return compiled, {}
    total = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
    return compiled, {"gib_per_device": total / 2**30, "temp_gib": stats.temp_size_in_bytes / 2**30}


def device_memory_limit_gib() -> float | None:
    """Memory of one local device in GiB: the accelerator's limit, or the host's RAM on CPU."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] / 2**30
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


# --- processes that must agree -------------------------------------------------------------


class ProcessMismatch(ExpectedError, ValueError):
    """The processes of one run were given different configs, data or code."""


def _digest_words(value) -> np.ndarray:
    """[2] uint32: the first 8 bytes of the sha256 of `value`'s canonical JSON."""
    import hashlib
    import json

    text = json.dumps(value, sort_keys=True, default=str).encode()
    return np.frombuffer(hashlib.sha256(text).digest()[:8], dtype=np.uint32).copy()


def _gather_rows(rows: np.ndarray) -> np.ndarray:
    """[P, *rows.shape]: every process's `rows` (a collective)."""
    return np.asarray(multihost_utils.process_allgather(rows, tiled=False))


def check_processes_agree(groups: dict[str, dict]) -> None:
    """Refuses to go on unless every process holds the same `groups` (a collective).

    Args:
      groups: {group name: {field name: JSON-able value}}, the same group names on every
        process, e.g. {"config": {"config.loss.lambda1": 100.0, ...}, "data": {...}}.

    Raises:
      ProcessMismatch: on every process alike, naming the first process that differs from
        process 0 and the field (for a group whose field names agree) or the group.
    """
    if jax.process_count() == 1:
        return
    names = sorted(groups)
    summary = np.stack(
        [_digest_words(sorted(groups[n])) for n in names]
        + [_digest_words(groups[n]) for n in names]
    )
    gathered = _gather_rows(summary)  # [P, 2 * groups, 2]
    for process in range(1, gathered.shape[0]):
        differs = np.any(gathered[process] != gathered[0], axis=-1)
        if not differs.any():
            continue
        for i, name in enumerate(names):
            if differs[i]:  # field names differ: no per-field comparison possible
                raise ProcessMismatch(_mismatch(process, f"the fields of {name}"))
            if differs[len(names) + i]:
                fields = sorted(groups[name])
                per_field = _gather_rows(np.stack([_digest_words(groups[name][f]) for f in fields]))
                wrong = np.flatnonzero(np.any(per_field[process] != per_field[0], axis=-1))
                raise ProcessMismatch(_mismatch(process, fields[wrong[0]]))


def _mismatch(process: int, what: str) -> str:
    return (
        f"process {process} differs from process 0 in {what}: every process of a run must "
        "be started with the same config, data and code"
    )
