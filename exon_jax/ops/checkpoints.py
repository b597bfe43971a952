"""Orbax checkpoints that survive damage: verified saves, restore of the newest good one.

Only this module touches Orbax. A checkpoint (`<dir>/<epoch>/`) holds the train state
(one model or a sweep's stacked states; PRNG keys as their raw key data) and a JSON
`meta` record. `save` refuses a state with a non-finite floating leaf and stores, next
to the meta, a 32-bit checksum of every state leaf and a sha256 of the meta: tensorstore
checks its b-tree nodes but not the array bytes, so a flipped bit in an array file would
otherwise restore silently as a wrong number. `restore_latest` tries checkpoints newest
first, verifies those checksums, and falls back to the newest one that restores; the
damaged ones newer than it are moved to `<dir>/damaged/` (Orbax refuses to save an epoch
at or below its newest step, so a stray `30/` would silently stop every later save).

Saves are synchronous (no Orbax background threads outlive a call) and written to
`<epoch>.orbax-checkpoint-tmp` then renamed, so a process killed mid-save leaves only a
tmp directory, removed by the next `make_manager`. Orbax's own log records (ERROR with
tracebacks from its writer threads on a failed save) are dropped: every failure reaches
the caller as one `CheckpointError` line; `show_orbax_logs()` lets them through again.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint._src import asyncio_utils as _orbax_asyncio

from exon_jax.ops.workdir_lock import held_elsewhere
from exon_jax.errors import ExpectedError

TMP_SUFFIX = ".orbax-checkpoint-tmp"
DAMAGED_DIR = "damaged"
_INTEGRITY = "_integrity"  # meta key holding the checksums (stripped on restore)


class CheckpointError(ExpectedError, RuntimeError):
    """A checkpoint cannot be written, or no usable one exists where one was expected."""


class NonFiniteStateError(CheckpointError):
    """`save` was given a state with NaN or infinite values."""


# --- Orbax's logging -----------------------------------------------------------------------


class _DropOrbaxRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}orbax{os.sep}" not in record.pathname


_ORBAX_FILTER = _DropOrbaxRecords()
_SHOW_ORBAX_LOGS = False
_INSTALLED = False


def show_orbax_logs(show: bool = True) -> None:
    """Lets Orbax's own log records through (e.g. under `--debug`), or drops them again."""
    global _SHOW_ORBAX_LOGS
    _SHOW_ORBAX_LOGS = show
    logger = logging.getLogger("absl")  # orbax logs through absl.logging
    if show:
        logger.removeFilter(_ORBAX_FILTER)
    elif _INSTALLED:
        logger.addFilter(_ORBAX_FILTER)


# --- Orbax's event loops ---------------------------------------------------------------------

_PARKED_LOOPS: list[asyncio.AbstractEventLoop] = []


def _run_sync_via_new_loop(coro):
    """Orbax's `_run_sync_via_new_loop`, but the loop outlives the reads it started.

    When one read of a restore fails, orbax closes the loop while tensorstore still
    completes the others; each completion then calls `call_soon_threadsafe` on the
    closed loop and prints a "RuntimeError: Event loop is closed" traceback (at exit:
    "ImportError: sys.meta_path is None"). Here the unfinished tasks are awaited
    (up to 60 s; past that the loop is parked open, never closed) before closing.
    """
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        try:
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=60))
        finally:
            asyncio.set_event_loop(None)
        for task in pending:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" log
        if any(not task.done() for task in pending):
            _PARKED_LOOPS.append(loop)
        else:
            loop.close()


def install_orbax_workarounds() -> None:
    """Installs, once, what this module needs from Orbax (`make_manager` calls it).

    Orbax's log records are dropped (unless `show_orbax_logs()`), and orbax-checkpoint
    0.12.x's `_run_sync_via_new_loop` is replaced by the one above. Nothing is changed by
    importing this module.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    if not _SHOW_ORBAX_LOGS:
        logging.getLogger("absl").addFilter(_ORBAX_FILTER)
    if hasattr(_orbax_asyncio, "_run_sync_via_new_loop"):  # orbax-checkpoint 0.12.x
        _orbax_asyncio._run_sync_via_new_loop = _run_sync_via_new_loop


# --- PRNG keys and leaf names --------------------------------------------------------------


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _keys_to_data(state):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _data_to_keys(state, abstract_state):
    def wrap(x, a):  # a: a key array or its ShapeDtypeStruct; its dtype names the PRNG impl
        return jax.random.wrap_key_data(x, impl=getattr(a.dtype, "_impl", None))

    return jax.tree.map(lambda x, a: wrap(x, a) if _is_key(a) else x, state, abstract_state)


def _abstract_key_data(abstract_state):
    """Restore target: key leaves of `abstract_state` become their uint32 key data."""

    def target(leaf):
        sharding = getattr(leaf, "sharding", None)
        if _is_key(leaf):
            data = jax.eval_shape(jax.random.key_data, leaf)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree.map(target, abstract_state)


def _path_name(path) -> str:
    """'params/model/encoder/Dense_0/kernel' for a jax key path."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def leaf_names(state) -> list[str]:
    """Path strings of `state`'s leaves, in `jax.tree.leaves` order."""
    return [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


# --- finiteness and checksums: NumPy on the host, or one jitted reduction when sharded ---


def _words(x: jax.Array) -> jax.Array:
    """The bits of `x` as a flat uint32 vector (one word per element, two for 64-bit)."""
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jnp.ravel(jax.lax.bitcast_convert_type(x, unsigned)).astype(jnp.uint32)


def _mix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: every input bit flips about half the output bits."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _checksum(x: jax.Array) -> jax.Array:
    """[] uint32: sum over elements of mix(word ^ mix(index)), modulo 2**32.

    Integer addition is associative, so the value does not depend on how XLA splits
    the reduction (devices, shardings, CPU or GPU).
    """
    words = _words(x)
    index = jax.lax.iota(jnp.uint32, words.size)
    return jnp.sum(_mix(words ^ _mix(index + jnp.uint32(0x9E3779B9))), dtype=jnp.uint32)


@jax.jit
def _inspect(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """([L] bool all-finite per leaf (True for non-floating), [L] uint32 checksums)."""
    finite = [
        jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
        for x in leaves
    ]
    return jnp.stack(finite), jnp.stack([_checksum(x) for x in leaves])


def inspect_state(state) -> tuple[dict[str, bool], dict[str, int]]:
    """({leaf path: all finite}, {leaf path: checksum}) of a state (keys as key data).

    A state whose leaves are all on this process is read on the host with NumPy
    (`_host_checksum`: the same values, nothing compiled); one sharded over processes
    runs one jitted reduction over all leaves, and only the two [L] vectors reach the
    host. That is a collective: every process must call it.
    """
    state = _keys_to_data(state)
    names = leaf_names(state)
    leaves = jax.tree.leaves(state)
    if not leaves:
        return {}, {}
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        host = [np.asarray(x) for x in jax.device_get(leaves)]
        finite = [
            not jnp.issubdtype(x.dtype, jnp.inexact) or bool(np.isfinite(x).all()) for x in host
        ]
        return dict(zip(names, finite)), dict(zip(names, (_host_checksum(x) for x in host)))
    finite_v, sums_v = _inspect([jnp.asarray(x) for x in leaves])
    finite_v, sums_v = _to_host(finite_v), _to_host(sums_v)
    return (
        dict(zip(names, (bool(f) for f in finite_v))),
        dict(zip(names, (int(s) for s in sums_v))),
    )


def _host_checksum(x: np.ndarray) -> int:
    """`_checksum` of a host array, computed by NumPy (the same value, nothing compiled)."""
    x = np.ascontiguousarray(x).reshape(-1)
    if x.dtype == np.bool_:
        words = x.astype(np.uint32)
    else:
        unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}[x.dtype.itemsize]
        words = x.view(unsigned).astype(np.uint32)

    def mix(h):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))

    index = np.arange(words.size, dtype=np.uint32)
    with np.errstate(over="ignore"):
        return int(np.sum(mix(words ^ mix(index + np.uint32(0x9E3779B9))), dtype=np.uint32))


def _to_host(x: jax.Array) -> np.ndarray:
    if not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _meta_digest(meta: dict[str, Any]) -> str:
    canonical = json.dumps(json.loads(json.dumps(meta)), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- managers ------------------------------------------------------------------------------


def make_manager(
    directory: str, max_to_keep: int = 3, read_only: bool = False
) -> ocp.CheckpointManager:
    """A CheckpointManager over `directory` (created if needed), keeping `max_to_keep`.

    Saves are synchronous. Tmp directories of saves that never finished (a killed
    process) are removed first, by process 0, unless another process holds the lock
    (`WorkdirLock`) of the workdir above `directory`: then they may be its saves in
    progress (e.g. `--mode=evaluate` beside a training run). With `read_only` nothing
    is created, removed or saved (`exon_jax.load_run`).
    """
    install_orbax_workarounds()
    directory = os.path.abspath(directory)
    if read_only:
        options = ocp.CheckpointManagerOptions(
            read_only=True,
            create=False,
            max_to_keep=None,
            save_interval_steps=0,
            cleanup_tmp_directories=False,
            enable_async_checkpointing=False,
        )
        return ocp.CheckpointManager(directory, options=options)
    if jax.process_index() == 0 and not held_elsewhere(os.path.dirname(directory)):
        _remove_tmp_dirs(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(directory, options=options)


def _remove_tmp_dirs(directory: str) -> None:
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if TMP_SUFFIX in name:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def newest_meta(directory: str) -> tuple[int, dict[str, Any]] | None:
    """(epoch, meta) of the newest checkpoint in `directory` whose meta record reads and
    matches its sha256; None when none does. Reads only the JSON meta: no arrays, and
    nothing is moved or written."""
    try:
        epochs = sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True)
    except OSError:
        return None
    for epoch in epochs:
        try:
            with open(os.path.join(directory, str(epoch), "meta", "metadata")) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict):
            continue
        integrity = meta.pop(_INTEGRITY, None)
        if integrity is not None and _meta_digest(meta) != integrity.get("meta_sha256"):
            continue
        return epoch, meta
    return None


def latest_epoch(manager: ocp.CheckpointManager) -> int | None:
    """The epoch of the newest checkpoint directory (it may be damaged), or None."""
    return manager.latest_step()


# --- save ----------------------------------------------------------------------------------


def save(
    manager: ocp.CheckpointManager,
    epoch: int,
    state,
    meta: dict[str, Any],
    last_good: int | None = None,
) -> None:
    """Saves `state` and `meta` as checkpoint `epoch`; returns once it is on disk.

    Args:
      manager: from `make_manager`.
      epoch: the checkpoint's step number; must be above every existing checkpoint.
      state: a pytree of arrays (PRNG keys allowed), possibly sharded.
      meta: JSON-serialisable record stored with it.
      last_good: the newest checkpoint known to restore, named in errors (default:
        the manager's newest step).

    Raises:
      NonFiniteStateError: a floating leaf holds NaN or inf (nothing is written).
      CheckpointError: the write failed (cause named, e.g. "no space left on device");
        no trace of `epoch` is left behind, the earlier checkpoints are untouched.
    """
    last_good = manager.latest_step() if last_good is None else last_good
    where = (
        f"the last good checkpoint is epoch {last_good}"
        if last_good is not None
        else "no checkpoint was written yet"
    )
    finite, sums = inspect_state(state)
    bad = [name for name, ok in finite.items() if not ok]
    if bad:
        raise NonFiniteStateError(
            f"refusing to save checkpoint {epoch} in {manager.directory}: non-finite values "
            f"in {', '.join(bad)}; {where}"
        )
    newest = manager.latest_step()
    if newest is not None and newest >= epoch:
        raise CheckpointError(
            f"cannot save checkpoint {epoch} in {manager.directory}: checkpoint {newest} "
            "already exists (restore with restore_latest first, which sets damaged ones aside)"
        )
    meta = dict(meta)
    meta[_INTEGRITY] = {"leaves": sums, "meta_sha256": _meta_digest(meta)}
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(_keys_to_data(state)), meta=ocp.args.JsonSave(meta)
    )
    threads = set(threading.enumerate())
    try:
        saved = manager.save(epoch, args=args)
        manager.wait_until_finished()
    except Exception as error:  # tensorstore / orbax raise ValueError, OSError, ...
        # the first failed write raises while Orbax's other writer threads go on
        # writing into the tmp directory: let them end before removing it
        _join_new_threads(threads, timeout=_SAVE_THREADS_TIMEOUT)
        _discard_step(manager, epoch)
        raise CheckpointError(
            f"cannot save checkpoint {epoch} in {manager.directory}: {_save_cause(error)}; {where}"
        ) from error
    if not saved:
        raise CheckpointError(
            f"cannot save checkpoint {epoch} in {manager.directory}: "
            f"Orbax declined to save it; {where}"
        )


_SAVE_THREADS_TIMEOUT = 60.0  # seconds a failed save waits for Orbax's writer threads


def _join_new_threads(before: set[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread not in before and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def _discard_step(manager: ocp.CheckpointManager, epoch: int) -> None:
    """Removes the tmp directory a failed save of `epoch` left.

    A final `<epoch>/` exists only once Orbax's last step, the rename, succeeded (a
    later failure, e.g. deleting old checkpoints, leaves it complete): it is kept, and
    `restore_latest` verifies it like any other.
    """
    if jax.process_index() == 0:
        directory = str(manager.directory)
        for name in os.listdir(directory):
            if name.startswith(f"{epoch}{TMP_SUFFIX}"):
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    manager.reload()


def _os_error(error: BaseException) -> tuple[int, str] | None:
    """(errno, the file it concerns or '') of the first OS error in `error`'s chain or text."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno:
            return link.errno, link.filename or ""
    for link in _chain(error):
        match = re.search(r"os_error_code='(\d+)'", str(link))
        if match:
            files = re.findall(r'Failed writing: "([^"]+)"|local file "([^"]+)"', str(link))
            return int(match.group(1)), next((a or b for a, b in reversed(files)), "")
    return None


def _save_cause(error: BaseException) -> str:
    found = _os_error(error)
    if found is not None:
        code, _ = found
        return f"{os.strerror(code).lower()} ({errno.errorcode.get(code, code)})"
    return _one_line(error)


# --- restore -------------------------------------------------------------------------------


def restore(manager: ocp.CheckpointManager, abstract_state, epoch: int | None = None):
    """Restores (state, meta) of `epoch` (default: the newest) into `abstract_state`'s shape.

    Args:
      manager: the run's manager.
      abstract_state: a state pytree (or its `jax.eval_shape`) giving shapes, dtypes
        and, where set, shardings.
      epoch: which checkpoint; None = the newest.

    Raises:
      CheckpointError: none exists, or that one cannot be read or fails its checksums.
    """
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise CheckpointError(
            f"no checkpoint in {manager.directory}: train first "
            "(python main.py --mode=train --workdir=...)"
        )
    try:
        return _restore_verified(manager, abstract_state, epoch)
    except _Unusable as error:
        raise CheckpointError(
            f"checkpoint {epoch} in {manager.directory} cannot be restored: {error}"
        ) from None


def restore_latest(manager_or_dir, abstract_state, set_aside: bool = True, read_only: bool = False):
    """The newest checkpoint that restores and passes its checksums.

    Args:
      manager_or_dir: a manager from `make_manager`, or a checkpoint directory (a
        manager is opened and closed here).
      abstract_state: shapes, dtypes and shardings of the state (see `restore`).
      set_aside: move the damaged checkpoints newer than the restored one to
        `<dir>/damaged/<epoch>` (process 0), so that later saves of those epochs work.
        Only done when one checkpoint restored (a wrong `abstract_state` moves nothing)
        and no other process holds the workdir's lock (a run training there).
      read_only: for a directory, open it with `make_manager(read_only=True)`: nothing
        is created or removed (use with set_aside=False to change nothing at all).

    Returns:
      (state, meta, epoch, skipped): `skipped` lists (epoch, one-line reason) of the
      newer checkpoints that did not restore, newest first, for the caller to print.

    Raises:
      CheckpointError: there is no checkpoint, or none restores (each reason listed).
    """
    own = not isinstance(manager_or_dir, ocp.CheckpointManager)
    if own and read_only and not os.path.isdir(manager_or_dir):
        raise CheckpointError(
            f"no checkpoint in {os.path.abspath(manager_or_dir)}: train first "
            "(python main.py --mode=train --workdir=...)"
        )
    manager = make_manager(manager_or_dir, read_only=read_only) if own else manager_or_dir
    try:
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(
                f"no checkpoint in {manager.directory}: train first "
                "(python main.py --mode=train --workdir=...)"
            )
        skipped: list[tuple[int, str]] = []
        for epoch in steps:
            try:
                state, meta = _restore_verified(manager, abstract_state, epoch)
            except _Unusable as error:
                skipped.append((epoch, str(error)))
                continue
            if (
                skipped
                and set_aside
                and not held_elsewhere(os.path.dirname(str(manager.directory)))
            ):
                moved = _set_aside(manager, [e for e, _ in skipped])
                skipped = [
                    (e, f"{reason}; moved to {moved[e]}" if e in moved else reason)
                    for e, reason in skipped
                ]
            return state, meta, epoch, skipped
        raise CheckpointError(
            f"no checkpoint in {manager.directory} restores: "
            + "; ".join(f"{epoch}: {reason}" for epoch, reason in skipped)
        )
    finally:
        if own:
            manager.close()


class _Unusable(Exception):
    """One checkpoint cannot be used; the message is the one-line reason."""


def _restore_verified(manager: ocp.CheckpointManager, abstract_state, epoch: int):
    step_dir = os.path.join(str(manager.directory), str(epoch))
    if os.path.isdir(step_dir) and not os.listdir(step_dir):
        raise _Unusable("empty directory")
    items = set(os.listdir(step_dir)) if os.path.isdir(step_dir) else set()
    missing = sorted({"state", "meta"} - items)
    if missing:
        raise _Unusable(f"incomplete: no {' or '.join(missing)} item")
    target = _abstract_key_data(abstract_state)
    try:
        restored = manager.restore(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
    except Exception as error:  # orbax / tensorstore raise many types for damaged files
        raise _Unusable(_restore_reason(error, step_dir)) from None
    state, meta = restored.state, dict(restored.meta or {})
    integrity = meta.pop(_INTEGRITY, None)
    if integrity is not None:  # checkpoints of earlier versions carry none
        if _meta_digest(meta) != integrity.get("meta_sha256"):
            raise _Unusable("meta record does not match its sha256 (corrupt meta file)")
        _, sums = inspect_state(state)  # on the host unless sharded over processes
        wrong = [name for name, value in sums.items() if integrity["leaves"].get(name) != value]
        if wrong:
            raise _Unusable(
                f"array data of {', '.join(wrong[:3])}"
                + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
                + " do not match the checksums saved with them (corrupt files)"
            )
    return _data_to_keys(state, abstract_state), meta


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _restore_reason(error: BaseException, step_dir: str) -> str:
    """One line for a failed orbax restore: the damaged file, the array, what is wrong."""
    kinds = {
        "NOT_FOUND": "missing file",
        "OUT_OF_RANGE": "truncated file",
        "DATA_LOSS": "corrupt file",
    }
    for link in _chain(error):
        text = _one_line(link, limit=10_000)
        files = re.findall(r'local file "([^"]+)"', text)
        status = re.match(r"(?:\w+: )?([A-Z][A-Z_]{3,}): ", text)
        if status and files:
            name = os.path.relpath(files[-1], step_dir)
            array = re.search(r'Error reading "([^"/]+)/[^"]*" in OCDBT', text)
            detail = text.rsplit(f'"{files[-1]}"', 1)[-1].lstrip(": ")[:200]
            return (
                f"{kinds.get(status.group(1), 'unreadable data in')} {name}"
                + (f" (array {array.group(1)})" if array else "")
                + (f": {detail}" if detail else "")
            )
    found = _os_error(error)
    if found is not None:
        code, name = found
        return os.strerror(code).lower() + (f" ({name})" if name else "")
    innermost = _chain(error)[-1]
    return f"{type(innermost).__name__}: {_one_line(innermost)}"


def _one_line(error: BaseException, limit: int = 400) -> str:
    text = re.split(r" \[tensorstore_spec", str(error))[0]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _set_aside(manager: ocp.CheckpointManager, epochs: Iterable[int]) -> dict[int, str]:
    """Moves checkpoints `epochs` to <dir>/damaged/<epoch>[-n]; {epoch: new path}."""
    directory = str(manager.directory)
    moved = {}
    if jax.process_index() == 0:
        os.makedirs(os.path.join(directory, DAMAGED_DIR), exist_ok=True)
        for epoch in epochs:
            target = os.path.join(directory, DAMAGED_DIR, str(epoch))
            n = 1
            while os.path.exists(target):
                target = os.path.join(directory, DAMAGED_DIR, f"{epoch}-{n}")
                n += 1
            os.rename(os.path.join(directory, str(epoch)), target)
            moved[epoch] = os.path.relpath(target, os.path.dirname(directory))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("exon_jax checkpoints set aside")
    manager.reload()
    return moved
