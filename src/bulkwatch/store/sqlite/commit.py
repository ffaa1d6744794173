"""Group commit on the SQLite store's one connection.

Each write (one poll's state with its outbox rows, one delivery outcome) is atomic on its
own, inside a SAVEPOINT, but the COMMIT that makes it durable is shared by the writes of up
to `commit_delay` seconds (at most `commit_batch` of them). A COMMIT writes every touched
page to the WAL and cost more than all the rest of a poll's SQL together; sharing it is most
of the store's cost per poll. Outbox rows are committed before `due_deliveries` hands them
out, so nothing is ever sent whose state could still roll back. A crash loses at most the
last `commit_delay` seconds of writes; the changes they recorded are seen again, with the
same event ids, on the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import structlog

from bulkwatch.store.sqlite.identity import FileIdentity

__all__ = ["GroupCommit"]

_log = structlog.get_logger("bulkwatch")


class GroupCommit:
    """The connection of one store and the group of writes it has not committed yet.

    `name` names the store in errors; `path` is its file, shared with any other store of
    this process on the same file.
    """

    # This process's stores holding a group open: another store on the same file commits
    # them before it writes, rather than wait `busy_timeout` for a lock its own thread holds.
    _open_groups: ClassVar[weakref.WeakSet[GroupCommit]] = weakref.WeakSet()

    def __init__(self, name: str, path: str, *, commit_delay: float, commit_batch: int) -> None:
        self.name = name
        self.path = path
        self.commit_delay = commit_delay  # 0: every write commits at once
        self.commit_batch = commit_batch
        self._conn: sqlite3.Connection | None = None
        self._uncommitted = 0  # writes in the open group
        self._uncommitted_outbox = False  # some of them added or requeued outbox rows
        self._flush_timer: asyncio.TimerHandle | None = None
        self._thread = 0  # the connection's thread: only it may use the connection
        self._last_commit = -math.inf  # monotonic; -inf: the first write is after a quiet spell
        # Groups whose writes were rolled back by a failed COMMIT or by an error that ended
        # the transaction, and the last such error: a caller that wrote before can tell.
        self.groups_lost = 0
        self.last_error = ""
        # The error of the last write or COMMIT when it failed; None once a COMMIT succeeds.
        self.write_error: str | None = None
        # The file `conn` has open, checked before each group's first write (None: in memory).
        self.identity: FileIdentity | None = None

    def attach(self, conn: sqlite3.Connection, identity: FileIdentity | None = None) -> None:
        """Write through `conn` (opened on this thread, in autocommit mode) from now on; with
        `identity`, only while the path still names the file `conn` has open."""
        self._thread = threading.get_ident()
        self._conn = conn
        self.identity = identity

    def detach(self) -> sqlite3.Connection | None:
        """Commit the open group and let go of the connection, which the caller closes;
        None when none was attached. The connection is let go even when COMMIT raises."""
        conn = self._conn
        if conn is None:
            return None
        try:
            self.flush()
        finally:
            self._conn = None
        return conn

    @property
    def attached(self) -> bool:
        """Whether a connection is attached, i.e. the store is open."""
        return self._conn is not None

    def connection(self) -> sqlite3.Connection:
        """The attached connection, for reads and for writes that go through `write`."""
        if self._conn is None:
            raise RuntimeError(f"{self.name} is not open; await open() first")
        return self._conn

    @property
    def uncommitted_outbox(self) -> bool:
        """Whether the open group added or requeued outbox rows."""
        return self._uncommitted_outbox

    @contextlib.contextmanager
    def write(self, *, outbox: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic write: all of it or none of it, committed alone or with its group."""
        conn = self._join_group()
        conn.execute("SAVEPOINT write")
        try:
            yield conn
        except BaseException as exc:
            self._failed(exc)
            self._undo(conn, "ROLLBACK TO write", "RELEASE write")
            raise
        conn.execute("RELEASE write")
        self._wrote(outbox=outbox)

    def statement(self, sql: str, params: Sequence[Any]) -> None:
        """One statement, atomic by itself, joining the group like any other write."""
        conn = self._join_group()
        try:
            conn.execute(sql, params)
        except BaseException as exc:
            self._failed(exc)
            self._undo(conn)  # SQLite already undid the statement itself
            raise
        self._wrote(outbox=False)

    def _join_group(self) -> sqlite3.Connection:
        conn = self.connection()
        if conn.in_transaction:
            return conn
        self.check_identity()
        for other in list(self._open_groups):
            if other is not self and other.path == self.path and other._thread == self._thread:
                other.flush()
        # IMMEDIATE takes the write lock before the first read: nothing read in the group
        # can change under it (another process on the file) before it is written.
        conn.execute("BEGIN IMMEDIATE")
        self._open_groups.add(self)
        return conn

    def check_identity(self) -> None:
        """Raise `StateFileGoneError` while the database path no longer names the open file."""
        if self.identity is not None:
            self.identity.check()

    def _undo(self, conn: sqlite3.Connection, *statements: str) -> None:
        """After a failed write: drop it, and end the transaction if it held nothing else."""
        if not conn.in_transaction:  # some errors (disk full, I/O) end the whole group
            if self._uncommitted:
                self._lost(sys.exc_info()[1])
            self._group_closed()
            return
        for statement in statements:
            conn.execute(statement)
        if self._uncommitted == 0:
            conn.execute("ROLLBACK")
            self._group_closed()

    def _wrote(self, *, outbox: bool) -> None:
        """Commit now when the store was quiet for `commit_delay`, else within it."""
        self._uncommitted += 1
        self._uncommitted_outbox = self._uncommitted_outbox or outbox
        if self._flush_timer is not None and self._uncommitted < self.commit_batch:
            return  # a group is open: this write goes with it
        quiet = time.monotonic() - self._last_commit >= self.commit_delay
        if quiet or self._uncommitted >= self.commit_batch:
            self.flush()  # a lone write is durable at once, as without grouping
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # nothing to commit it later
            self.flush()
            return
        self._flush_timer = loop.call_later(self.commit_delay, self._flush_logged)

    def _group_closed(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._uncommitted = 0
        self._uncommitted_outbox = False
        self._open_groups.discard(self)

    def flush(self) -> None:
        """Commit the open group now; a no-op when there is none. Raises what COMMIT raised,
        after rolling the group back."""
        conn = self._conn
        try:
            if conn is not None and conn.in_transaction:
                conn.execute("COMMIT")
                self._last_commit = time.monotonic()
                self.write_error = None
        except BaseException as exc:
            self._failed(exc)
            self._lost(exc)
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._group_closed()

    def _failed(self, exc: BaseException) -> None:
        """Note a write that failed for the file's sake (not a constraint: a caller's bug)."""
        if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
            self.write_error = str(exc)

    def _lost(self, exc: BaseException | None) -> None:
        self.groups_lost += 1
        self.last_error = str(exc) if exc is not None else "transaction ended"

    def _flush_logged(self) -> None:
        writes = self._uncommitted
        try:
            self.flush()
        except sqlite3.Error as exc:
            # Nothing is lost for good: each poll's change is seen again on its next poll,
            # and a delivery outcome not recorded means that delivery is made again.
            _log.error("could not commit recent writes", writes=writes, error=str(exc))
