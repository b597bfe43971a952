"""`ops.peer_watch`: a peer that stops beating, or an unreachable key-value store, is
reported once, within its timeout; peers that beat or have left are not. In process, with
a dictionary standing in for the coordination service's key-value store; the two-process
run with a SIGSTOPped peer is tests/test_agreement.py's (slow)."""

import threading
import time

from exon_jax.ops import peer_watch


class Store:
    """The three calls PeerWatch makes of jax's DistributedRuntimeClient, on a dict."""

    def __init__(self):
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        self.down = False

    def key_value_set(self, key, value, allow_overwrite=False):
        if self.down:
            raise RuntimeError("UNAVAILABLE: the service is gone")
        with self.lock:
            self.values[key] = value

    def key_value_dir_get(self, directory):
        if self.down:
            raise RuntimeError("UNAVAILABLE: the service is gone")
        with self.lock:
            return [(k, v) for k, v in self.values.items() if k.startswith(directory)]


def _watch(store, process, count, lost, timeout=0.4):
    return peer_watch.PeerWatch(
        timeout, period=0.05, client=store, process=process, count=count, on_lost=lost.append
    )


def _beat(store, process, stop):
    beat = 0
    while not stop.wait(0.05):
        beat += 1
        store.key_value_set(f"exon_jax/peer_watch/beat/{process}", str(beat), True)


def test_beating_peers_are_never_lost():
    store, lost, stop = Store(), [], threading.Event()
    peer = threading.Thread(target=_beat, args=(store, 1, stop), daemon=True)
    peer.start()
    with _watch(store, 0, 2, lost):
        time.sleep(1.5)  # almost four timeouts
    stop.set()
    assert lost == []
    assert store.values["exon_jax/peer_watch/done/0"] == "1"


def test_a_peer_that_stops_beating_is_reported_once_naming_it():
    store, lost, stop = Store(), [], threading.Event()
    threading.Thread(target=_beat, args=(store, 2, stop), daemon=True).start()
    with _watch(store, 0, 3, lost):  # process 1 never beats, process 2 does
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = 5 - (deadline - time.monotonic())
        time.sleep(0.3)
    stop.set()
    assert lost == ["process 1: no sign of life for 0.4 s"]
    assert 0.3 < elapsed < 2.0


def test_a_peer_that_has_left_is_not_watched():
    store, lost = Store(), []
    store.key_value_set("exon_jax/peer_watch/done/1", "1")
    with _watch(store, 0, 2, lost):
        time.sleep(1.2)
    assert lost == []


def test_an_unreachable_store_is_reported_as_the_coordination_service():
    store, lost, stop = Store(), [], threading.Event()
    threading.Thread(target=_beat, args=(store, 1, stop), daemon=True).start()
    with _watch(store, 0, 2, lost):
        time.sleep(0.3)
        stop.set()
        store.down = True
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
    assert lost == ["the coordination service (process 0): no answer for 0.4 s"]


def test_one_process_is_not_watched():
    with peer_watch.PeerWatch(0.1) as watch:  # jax.process_count() == 1 here
        time.sleep(0.3)
    assert watch._threads == []
