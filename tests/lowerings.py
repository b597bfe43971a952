"""How many programs JAX lowers while a function runs (`jax.monitoring`'s lowering event)."""

from __future__ import annotations

from typing import Any, Callable

import jax

_LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"


def count_lowerings(fn: Callable[[], Any], clear_caches: bool = False) -> tuple[Any, int]:
    """(fn(), the number of programs lowered while it ran); with `clear_caches`, from empty
    in-memory compilation caches (so programs compiled by earlier tests count again)."""
    if clear_caches:
        jax.clear_caches()
    lowered = []

    def listen(event, *_, **__):
        if event == _LOWERED:
            lowered.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        out = fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return out, len(lowered)
