"""One daemon per state file: an exclusive lock held for the daemon's whole life.

SQLite lets two processes write one file in turn, so two daemons on one state database would
both poll and both deliver (each event twice). The lock is `flock()` on a file next to the
database (`<database>.lock`), held by an open descriptor: the kernel releases it when the
process ends, however it ends (`kill -9` included), so a stale lock cannot block a restart.
The holder writes its pid and host name into the file, for the refusal message of the next.

The lock file is never deleted: deleting it while another process waits to open it would let
two processes each lock a different file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from bulkwatch.store.leasing import StateInUseError

__all__ = ["StateFileInUseError", "StateInUseError", "holder_of", "lock_path", "state_file_lock"]


class StateFileInUseError(StateInUseError):
    """Another process holds the state file's lock."""

    def __init__(self, database: str, holder: str) -> None:
        super().__init__(
            f"state.url: {database} is in use by another bulkwatch ({holder}); "
            "one daemon per state file"
        )
        self.database = database
        self.holder = holder


def lock_path(database: str) -> Path:
    """The lock file of the state database `database`."""
    return Path(f"{database}.lock")


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return text
    return "its pid is unknown"


def holder_of(database: str) -> str | None:
    """Who holds the lock of `database` now (`pid 4242 on host-a`), or None when nobody does.
    Only looks: creates no file and leaves the lock as it found it."""
    try:
        fd = os.open(lock_path(database), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no daemon ever ran on it (or it cannot be read)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def state_file_lock(database: str) -> Iterator[None]:
    """Hold the lock of `database` for the block; raise `StateFileInUseError` at once when
    another process holds it."""
    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateFileInUseError(database, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
