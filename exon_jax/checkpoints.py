"""Orbax checkpoints: atomic saves every N epochs, restore of the latest, resume.

Only this module touches Orbax. A checkpoint holds the train state (one model
or a sweep's stacked states) and a JSON `meta` record (epoch, wall time, the
metrics so far). PRNG keys are stored as their raw key data.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


def _key_to_data(state):
    return state.replace(key=jax.random.key_data(state.key))


def _data_to_key(state):
    return state.replace(key=jax.random.wrap_key_data(state.key))


def make_manager(directory: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    """A CheckpointManager over `directory` (created if needed), keeping `max_to_keep`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager: ocp.CheckpointManager, epoch: int, state, meta: dict[str, Any]) -> None:
    """Saves `state` and `meta` as checkpoint `epoch` and waits until it is complete."""
    manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_key_to_data(state)), meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def latest_epoch(manager: ocp.CheckpointManager) -> int | None:
    """The epoch of the newest complete checkpoint, or None."""
    return manager.latest_step()


def restore(manager: ocp.CheckpointManager, abstract_state, epoch: int | None = None):
    """Restores (state, meta) of `epoch` (default: latest) into the shape of `abstract_state`.

    Args:
      manager: the run's manager.
      abstract_state: a state pytree (or its `jax.eval_shape`) giving shapes,
        dtypes and, where set, shardings.
      epoch: which checkpoint; None = the latest.

    Raises:
      CheckpointError: none exists, or it cannot be read into that shape.
    """
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise CheckpointError(f"no checkpoint in {manager.directory}: train first "
                              "(python main.py --mode=train --workdir=...)")
    target = jax.eval_shape(_key_to_data, abstract_state)
    try:
        restored = manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception as error:  # orbax raises many types for a damaged directory
        raise CheckpointError(f"checkpoint {epoch} in {manager.directory} cannot be restored "
                              f"({type(error).__name__}: {error}); it may be corrupt or from "
                              "another config") from error
    return _data_to_key(restored.state), dict(restored.meta)
