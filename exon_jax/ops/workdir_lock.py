"""One run per workdir: an advisory `fcntl.flock` on `<workdir>/.lock`.

    with WorkdirLock(workdir):
        ...   # train; a second process entering the same workdir gets WorkdirBusyError

The kernel drops a flock when the holding process ends, however it ends (exit, crash,
SIGKILL), so a lock left by a dead process is simply acquirable: no stale-lock clean-up
is needed. The file holds "<pid> <hostname>" of the holder, for the busy message only;
it is emptied (never deleted: deleting would let two processes lock two different
inodes) on release.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from exon_jax.errors import ExpectedError

LOCK_FILE = ".lock"
_HELD_HERE: set[str] = set()  # real paths of the workdirs this process holds


class WorkdirBusyError(ExpectedError, RuntimeError):
    """Another live process holds the workdir's lock."""


class WorkdirLock:
    """Context manager holding an exclusive lock on `workdir` (created if needed).

    Not re-entrant: a second WorkdirLock on the same workdir, even in the same process,
    raises WorkdirBusyError. Child processes started with subprocess do not inherit it
    (the descriptor is close-on-exec); a child made by a bare os.fork() would.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock or raises WorkdirBusyError naming the holder."""
        if self._fd is not None:
            raise WorkdirBusyError(f"workdir {self.workdir} is already locked by this WorkdirLock")
        os.makedirs(self.workdir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise WorkdirBusyError(_busy_message(self.workdir, holder)) from None
            raise OSError(
                error.errno,
                f"cannot lock workdir {self.workdir}: "
                f"{os.strerror(error.errno or 0)} (the file system may not support "
                "flock)",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        _HELD_HERE.add(os.path.realpath(self.workdir))

    def release(self) -> None:
        """Empties the lock file and drops the lock (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD_HERE.discard(os.path.realpath(self.workdir))
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def held_elsewhere(workdir: str) -> bool:
    """True while another process holds `workdir`'s lock (e.g. a run is training there).

    Probes with a shared lock taken and dropped at once; a run starting at that very
    instant may see the workdir busy.
    """
    if os.path.realpath(workdir) in _HELD_HERE:
        return False
    try:
        fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def _read_holder(fd: int) -> tuple[str, str] | None:
    """(pid, hostname) written by the holder, or None when it has not written them yet."""
    try:
        fields = os.pread(fd, 512, 0).decode(errors="replace").split()
    except OSError:
        return None
    return (fields[0], fields[1]) if len(fields) >= 2 else None


def _busy_message(workdir: str, holder: tuple[str, str] | None) -> str:
    if holder is None:
        return f"workdir {workdir} is in use by another process"
    pid, host = holder
    message = f"workdir {workdir} is in use by process {pid} on {host}"
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        # flock outlives its taker only through a descriptor a forked child kept open
        message += " (that process has exited; a child it forked still holds the lock)"
    return message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
