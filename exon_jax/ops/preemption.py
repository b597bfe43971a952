"""Preemption: SIGTERM / SIGINT end a training run at the next step or epoch boundary, saved.

Clusters send SIGTERM before they take a machine back (SLURM, Kubernetes); Ctrl-C sends
SIGINT. While `StopRequests` is active the first of either only sets a flag: the
training loop finishes the step or the compiled epoch it is in, every process agrees to
stop (`agreed`, an all-reduce of the flag after each step or at each epoch boundary, so
a signal to one process stops all of them at the same point), a checkpoint is saved and
`Preempted` is raised; `main.py` prints where it stopped and how to resume, and exits
with `PREEMPTED_STATUS`. A second signal ends the process at once (status 128 + signal).

Where it stops depends on the epoch loop (`experiment.epoch_loop`). A stepwise epoch
('python': one compiled call per step; convolutional networks on CPU, e.g. the revision)
stops after the step in progress and saves a partial-epoch checkpoint (states and the
steps' metrics, `training.PARTIAL_DIR`) from which the run resumes at the next step. A
scanned epoch ('scan': one compiled call per epoch; MLP networks on CPU, everything on
GPU) cannot be interrupted inside: it stops at the epoch's end, saving an epoch checkpoint.

The signal's arrival is seen by a watcher thread through `signal.set_wakeup_fd`, which
Python's C-level handler writes to at once, even while the main thread is inside a
long compiled call that will not return to the interpreter for minutes. A signal during
setup (data loading, restore, compilation) stops the run at the next of two safe points,
once the data are loaded and once the epoch is compiled, with nothing new to save.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

import numpy as np

PREEMPTED_STATUS = 75  # EX_TEMPFAIL: stopped on request, resumable
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal, after saving a checkpoint when it had trained a step
    or an epoch; running again resumes.

    Attributes:
      signal_name: "SIGTERM" or "SIGINT" (the first one this process or a peer received;
        "a signal to another process" on a process that received none).
      epoch: the epoch trained and saved (saved=True), or, with `step`, the epoch (1-based)
        stopped in and saved after that step, or the epochs done before this process
        started training (saved=False: stopped during setup, nothing new to save; None
        when that was not known yet).
      epochs: the run's total; checkpoint_dir: where the checkpoint is (or the run's
        checkpoints when nothing was saved).
      step, steps_per_epoch: the steps done of `epoch` when it stopped inside it, or None.
    """

    def __init__(
        self,
        signal_name: str,
        epoch: int | None,
        epochs: int,
        checkpoint_dir: str,
        saved: bool = True,
        step: int | None = None,
        steps_per_epoch: int | None = None,
    ):
        self.signal_name, self.epoch, self.epochs = signal_name, epoch, epochs
        self.checkpoint_dir, self.saved = checkpoint_dir, saved
        self.step, self.steps_per_epoch = step, steps_per_epoch
        if saved and step is not None:
            message = (
                f"stopped by {signal_name} at step {step} of {steps_per_epoch} in epoch {epoch} "
                f"of {epochs}; saved in {checkpoint_dir}"
            )
        elif saved:
            message = (
                f"stopped by {signal_name} after epoch {epoch} of {epochs}; checkpoint {epoch} "
                f"saved in {checkpoint_dir}"
            )
        elif epoch is not None:
            message = (
                f"stopped by {signal_name} before training epoch {epoch + 1} of {epochs}; "
                f"nothing new to save (checkpoints in {checkpoint_dir})"
            )
        else:
            message = f"stopped by {signal_name} during setup, before training; nothing to save"
        super().__init__(message)


class StopRequests:
    """Context manager catching SIGTERM and SIGINT (main thread only; elsewhere inert).

    The first signal sets `requested`; the second exits the process at once with
    status 128 + signal number and one line on stderr. The previous handlers and wakeup
    fd are put back on exit.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._event = threading.Event()
        self._active = False

    @property
    def requested(self) -> bool:
        """True once this process has received SIGTERM or SIGINT."""
        return self._event.is_set()

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._previous = {  # a signal the process was started ignoring stays ignored
            s: signal.signal(s, _ignore) for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN
        }
        self._active = True
        self._thread = threading.Thread(target=self._watch, name="exon-stop-requests", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._active:
            return
        self._active = False
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self._previous_fd)
        self._write.close()  # the watcher's recv returns b"" and it ends
        self._thread.join(timeout=5)
        self._read.close()

    def _watch(self) -> None:
        count = 0
        while True:
            try:
                received = self._read.recv(64)
            except OSError:
                return
            if not received:
                return
            for signum in received:
                if signum not in SIGNALS:
                    continue
                count += 1
                name = signal.Signals(signum).name
                if count == 1:
                    self.signal_name = name
                    self._event.set()
                    _say(
                        f"{name} received: stopping at the end of the current step, epoch or "
                        "setup stage, saving what was trained (send it again to exit at once)"
                    )
                else:
                    _say(f"second {name}: exiting at once, without saving")
                    os._exit(128 + signum)


def _ignore(signum, frame) -> None:
    """The Python-level handler: the watcher thread has already acted on the signal."""


def _say(message: str) -> None:
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def agreed(requested: bool) -> bool:
    """Whether any process of the run has asked to stop (an all-reduce: every process calls
    it at the same point; one process: `requested` itself)."""
    import jax

    if jax.process_count() == 1:
        return requested
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray([int(requested)], np.int32))
    return bool(np.any(flags))
