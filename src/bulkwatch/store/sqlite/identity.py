"""Whether the state database at the configured path is still the file the daemon writes.

An open SQLite connection keeps writing into its file after `rm state.db*`, or after a
restore moved another file into place: those writes land in a file no one can read again,
and the next start finds an empty or older database. `FileIdentity` remembers the device and
inode of the file opened, and `check()` compares them with what the path names now: one
`stat()`, done before each commit group's first write and at each readiness check.
"""

from __future__ import annotations

import os

import structlog

from bulkwatch.store.base import StoreWriteError

__all__ = ["FileIdentity", "StateFileGoneError"]

_log = structlog.get_logger("bulkwatch")


class StateFileGoneError(StoreWriteError):
    """The state database was deleted or replaced under the running daemon."""

    reported = True  # `FileIdentity.check` logged it when it began


class FileIdentity:
    """The (device, inode) of one open database file, compared with its path on demand."""

    def __init__(self, path: str) -> None:
        self.path = path
        st = os.stat(path)
        self._id = (st.st_dev, st.st_ino)
        self.problem: str | None = None  # why the path is not the open file; None: it is

    def check(self) -> None:
        """Raise `StateFileGoneError` while the path no longer names the open file; log one
        error when that starts and one line when it ends (the file was put back)."""
        problem: str | None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            problem = "was deleted"
        except OSError as exc:
            problem = f"cannot be looked up ({exc.strerror or exc})"
        else:
            problem = None if (st.st_dev, st.st_ino) == self._id else "was replaced by another file"
        if problem is None:
            if self.problem is not None:
                _log.info("state database is back in place; writing again", path=self.path)
                self.problem = None
            return
        message = (
            f"state.url: {self.path} {problem} while bulkwatch ran; refusing to write into a "
            "file no one can read: restore it, or restart bulkwatch to start from the file at "
            "that path"
        )
        if self.problem is None:
            self.problem = message
            _log.error("state database deleted or replaced", path=self.path, problem=problem)
        raise StateFileGoneError(message)
