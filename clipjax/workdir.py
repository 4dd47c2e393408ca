"""One training run per workdir: process 0 holds WORKDIR/run.lock from start-up to exit.

The lock is an advisory `flock` on that file, which the kernel releases when the holder dies (even by SIGKILL), plus
a record in it (host, pid, start time) whose modification time a heartbeat thread keeps fresh. flock may not reach
across the hosts of a shared filesystem, so a record of another host holds the workdir while its heartbeat is recent
(STALE_AFTER_S); a record of this host holds it while its flock does (or, where the filesystem has no flock, while its
pid is alive). So a crashed or killed run leaves nothing that blocks the next one for long.
"""
import contextlib
import datetime
import fcntl
import json
import os
import socket
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

LOCK_NAME = "run.lock"
HEARTBEAT_S = 30.0      # the holder touches the lock file this often
STALE_AFTER_S = 300.0   # a record of another host without a heartbeat for this long is left by a dead run


class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir."""


class WorkdirLock:
    """The held lock of process 0 (the other processes of a run get one holding nothing); `release()` or `with`."""

    def __init__(self, fd: int | None = None):
        self._fd, self._stop = fd, threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="workdir-lock-heartbeat")
        if fd is not None:
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self._fd)

    def release(self) -> None:
        """Clear the record and unlock (idempotent)."""
        if self._fd is None:
            return
        self._stop.set()
        self._heartbeat.join()  # before the descriptor is closed (its number may be reused)
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_lock(workdir: str, is_main: bool) -> WorkdirLock:
    """Take WORKDIR/run.lock for this run: process 0 (`is_main`) takes it, the others share its outcome. Raises
    WorkdirLockedError naming the workdir, the holder (host, pid, start) and what to do when another run holds it."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"--workdir {workdir!r} exists and is not a directory")
    error, lock = None, WorkdirLock()
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        try:
            lock = _take(os.path.join(workdir, LOCK_NAME), workdir)
        except WorkdirLockedError as e:
            error = e
    if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(np.int32(error is None)):
        error = error or WorkdirLockedError(f"workdir {workdir!r} is in use by another run (see process 0's error)")
    if error:
        raise error
    return lock


def _take(path: str, workdir: str) -> WorkdirLock:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = True
        except BlockingIOError:
            flocked = False
        except OSError:  # no flock on this filesystem: the record alone decides
            flocked = None
        holder, heartbeat = _read_record(fd), os.fstat(fd).st_mtime
        if flocked is False or holder and _holder_alive(holder, heartbeat, flocked):
            raise WorkdirLockedError(_locked_message(workdir, path, holder, time.time() - heartbeat))
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return WorkdirLock(fd)


def _read_record(fd: int) -> dict | None:
    try:
        record = json.loads(os.pread(fd, 1 << 16, 0))
    except ValueError:  # empty (released) or cut short
        return None
    return record if isinstance(record, dict) else None


def _holder_alive(holder: dict, heartbeat: float, flocked: bool | None) -> bool:
    """Whether the run that wrote `holder` may still be running (see the module docstring)."""
    if holder.get("host") != socket.gethostname():
        return time.time() - heartbeat < STALE_AFTER_S
    if flocked:
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _locked_message(workdir: str, path: str, holder: dict | None, age: float) -> str:
    who = (f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}, last heartbeat "
           f"{age:.0f} s ago" if holder else "its holder has not written its record yet")
    return (f"workdir {workdir!r} is in use by another run ({who}); wait for it to finish or stop it, or choose "
            f"another --workdir. If no such run is alive, delete {path}")
