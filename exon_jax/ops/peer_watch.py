"""A hung peer: one line from every other process, not the coordination service's abort dump.

A process of a multi-process run that stops answering (SIGSTOP, a hung node, a paused
container) leaves the others waiting inside a collective until the coordination
service's heartbeat timeout, after which JAX's C++ client aborts them with a dump of some
70 lines. While `PeerWatch` is active, every process publishes a counter in the
coordination service's key-value store each `period` seconds from a daemon thread and
reads the others'. A process whose counter has not moved for `timeout` seconds (set
below the heartbeat timeout, so that this comes first), or a coordination service that
cannot be reached for as long, ends this process with one line naming it and
`PEER_LOST_STATUS`. A process that leaves the watch normally says so, and is no longer
watched. A single process is never watched.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

PEER_LOST_STATUS = 1
_KEY = "exon_jax/peer_watch"


def watch_timeout(heartbeat_timeout: float) -> float:
    """The seconds without a sign of life after which a peer counts as lost: 40 % of the
    coordination service's heartbeat timeout (which sometimes fires after ~60 % of it),
    at least 2 s."""
    return max(2.0, 0.4 * heartbeat_timeout)


class PeerWatch:
    """Context manager watching the run's other processes (see the module docstring).

    Args:
      timeout: seconds without a sign of life from a peer (or from the coordination
        service) before this process ends in one line.
      period: seconds between two beats.
      checkpoint_dir: named in the line, where the run resumes from.
      client, process, count: the key-value store (`get`-, `set`- and `dir_get`-able as
        jax's DistributedRuntimeClient), this process's index and the number of
        processes; by default jax.distributed's, inert for a single process.
      on_lost: called with the reason when a peer is lost (default: one line on stderr,
        then `os._exit(PEER_LOST_STATUS)`).
    """

    def __init__(
        self,
        timeout: float,
        period: float = 0.5,
        checkpoint_dir: str = "",
        client: Any = None,
        process: int | None = None,
        count: int | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.timeout, self.period, self.checkpoint_dir = timeout, period, checkpoint_dir
        self._client, self._me, self._count = client, process, count
        self._on_lost = on_lost or self._exit_in_one_line
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> PeerWatch:
        if self._client is None:
            import jax

            if jax.process_count() == 1:
                return self
            from jax._src import distributed

            self._client = distributed.global_state.client
            self._me, self._count = jax.process_index(), jax.process_count()
        if self._client is None:
            return self
        self._last_round = time.monotonic()
        for target in (self._beat_and_read, self._check_rounds):
            thread = threading.Thread(target=target, name="exon-peer-watch", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        if not self._threads:
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5 * self.period + 5)
        try:
            self._client.key_value_set(f"{_KEY}/done/{self._me}", "1", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - leaving: the others stop watching, or time out
            pass

    def _beat_and_read(self) -> None:
        peers = {p: ("", time.monotonic()) for p in range(self._count or 0) if p != self._me}
        beat = 0
        while not self._stop.wait(self.period):
            try:
                beat += 1
                self._client.key_value_set(f"{_KEY}/beat/{self._me}", str(beat), True)
                done = _by_process(self._client.key_value_dir_get(f"{_KEY}/done/"))
                beats = _by_process(self._client.key_value_dir_get(f"{_KEY}/beat/"))
                now = time.monotonic()
                for p in [p for p in peers if p in done]:
                    del peers[p]
                for p, (value, since) in peers.items():
                    if beats.get(p, "") != value:
                        peers[p] = (beats.get(p, ""), now)
                    elif now - since > self.timeout:
                        return self._lost(f"process {p}: no sign of life for {self.timeout:g} s")
                self._last_round = time.monotonic()
            except Exception:  # noqa: BLE001 - the service unreachable: `_check_rounds` decides
                pass

    def _check_rounds(self) -> None:
        while not self._stop.wait(self.period):
            if time.monotonic() - self._last_round > self.timeout:
                return self._lost(
                    f"the coordination service (process 0): no answer for {self.timeout:g} s"
                )

    def _lost(self, why: str) -> None:
        self._stop.set()
        self._on_lost(why)

    def _exit_in_one_line(self, why: str) -> None:
        """One line, worded as `cli` words a peer lost in a collective, then exit at once."""
        where = f" from the last checkpoint in {self.checkpoint_dir}" if self.checkpoint_dir else ""
        try:
            sys.stderr.write(  # on a line of its own, after a progress bar's \r-drawn line
                f"\nerror: another process of this run stopped or cannot be reached ({why}: "
                f"stopped, hung or gone); restart every process to resume{where}\n"
            )
            sys.stderr.flush()
        finally:
            os._exit(PEER_LOST_STATUS)


def _by_process(entries) -> dict[int, str]:
    """{process index: value} of a key-value directory listing ("<dir>/<index>", value)."""
    return {int(key.rsplit("/", 1)[1]): value for key, value in entries}
