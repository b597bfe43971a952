"""WorkdirLock: one holder at a time, across real processes; a killed holder frees it."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from exon_jax.ops.workdir_lock import WorkdirBusyError, WorkdirLock, held_elsewhere

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Holds the lock, says so on stdout, then sleeps until killed or told to stop.
_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from exon_jax.ops.workdir_lock import WorkdirLock
with WorkdirLock({workdir!r}):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
time.sleep(60)
"""


def start_holder(workdir):
    """A second python process that holds the lock (it has printed "held" on return)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(root=ROOT, workdir=str(workdir))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow  # a second process (lock infrastructure)
def test_second_process_is_refused_with_pid_and_host(tmp_path):
    proc = start_holder(tmp_path)
    try:
        with pytest.raises(WorkdirBusyError) as info:
            WorkdirLock(str(tmp_path)).acquire()
        assert str(info.value) == (
            f"workdir {tmp_path} is in use by process {proc.pid} on {socket.gethostname()}"
        )
        # the holder releases on leaving its `with`, while still alive
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        with WorkdirLock(str(tmp_path)) as lock:
            assert lock.held
            with open(tmp_path / ".lock") as f:
                assert f.read().split() == [str(os.getpid()), socket.gethostname()]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # kill -9 of a second process (lock infrastructure)
def test_sigkilled_holder_leaves_an_acquirable_lock(tmp_path):
    proc = start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the dead holder's pid is still written in the file: only the flock decides
    with open(tmp_path / ".lock") as f:
        assert f.read().split()[0] == str(proc.pid)
    with WorkdirLock(str(tmp_path)):
        pass


def test_same_process_twice_is_refused_and_release_frees(tmp_path):
    first = WorkdirLock(str(tmp_path / "new"))  # a missing workdir is created
    with first:
        with pytest.raises(WorkdirBusyError, match=f"in use by process {os.getpid()} on"):
            WorkdirLock(str(tmp_path / "new")).acquire()
    assert not first.held
    with open(tmp_path / "new" / ".lock") as f:
        assert f.read() == ""
    with WorkdirLock(str(tmp_path / "new")):
        pass


def test_lock_released_when_the_body_raises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with WorkdirLock(str(tmp_path)):
            1 / 0
    with WorkdirLock(str(tmp_path)):
        pass


@pytest.mark.slow  # a child process (lock infrastructure)
def test_subprocess_children_do_not_inherit_the_lock(tmp_path):
    with WorkdirLock(str(tmp_path)):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.1)
        with WorkdirLock(str(tmp_path)):  # the child still runs, yet the lock is free
            pass
    finally:
        child.kill()
        child.wait()


def test_held_elsewhere_sees_only_other_live_holders(tmp_path):
    assert not held_elsewhere(str(tmp_path))  # no lock file yet
    with WorkdirLock(str(tmp_path)):
        assert not held_elsewhere(str(tmp_path))  # held here
    proc = start_holder(tmp_path)
    try:
        assert held_elsewhere(str(tmp_path))
    finally:
        proc.kill()
        proc.wait()
    assert not held_elsewhere(str(tmp_path))  # its holder died
    with WorkdirLock(str(tmp_path)):  # and the probe left it acquirable
        pass
