"""The SQLite state store: one WAL-mode connection, used directly from the event loop.

Every call is a few short statements on a local file, so it runs inline instead of on a
thread: no locks, no hand-offs, and no `await` inside a write, which is what keeps two
coroutines from interleaving on the one connection.

Writes share their COMMITs (group commit, in `commit`); the outbox is a component on the same
connection (`outbox`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from bulkwatch.common.redact import redact_bytes
from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    StoreHealth,
    TrackedTask,
)
from bulkwatch.store.base import PollWrite, StoreUnavailableError, StoreWriteError
from bulkwatch.store.rows import (
    ENDPOINT_COLUMNS,
    HEALTH_COLUMNS,
    SELECT_ENDPOINTS,
    SELECT_HEALTH,
    SELECT_TASKS,
    TASK_COLUMNS,
    prune_delivered,
    prune_tasks,
)
from bulkwatch.store.sqlite.check import quick_check
from bulkwatch.store.sqlite.commit import GroupCommit
from bulkwatch.store.sqlite.identity import FileIdentity
from bulkwatch.store.sqlite.leases import LocalLeases
from bulkwatch.store.sqlite.notes import list_notes, save_notes
from bulkwatch.store.sqlite.outbox import SqliteOutbox
from bulkwatch.store.sqlite.reads import SqliteReads
from bulkwatch.store.sqlite.rows import ROWS, ts
from bulkwatch.store.sqlite.schema import migrate
from bulkwatch.store.sqlite.tokens import SqliteTokens

__all__ = ["SqliteStore"]

_MEMORY = ":memory:"


def _upsert(table: str, columns: str, key: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    marks = ", ".join("?" * len(names))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608 - constant names
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


_SELECT_HEALTH = (
    "SELECT down, outage, failing_endpoints FROM store_health WHERE store = ? AND platform = ?"
)
_SELECT_ENDPOINT = (
    "SELECT baselined, consecutive_failures, current_task_id, last_success_at, last_failure "
    "FROM endpoints WHERE store = ? AND platform = ? AND endpoint = ?"
)
# Tasks by id: an endpoint's view holds the tasks its poll shows and its current task, not
# everything it ever showed (a busy Shopline endpoint keeps thousands of superseded tasks).
_ID_CHUNK = 500  # far below SQLite's limit on parameters


@functools.cache
def _select_tasks(ids: int) -> str:
    marks = ", ".join("?" * ids)
    return (
        f"{SELECT_TASKS} WHERE store = ? AND platform = ? AND endpoint = ? AND task_id IN ({marks})"
    )


_UPSERT_HEALTH = _upsert("store_health", HEALTH_COLUMNS, "store, platform")
_UPSERT_ENDPOINT = _upsert("endpoints", ENDPOINT_COLUMNS, "store, platform, endpoint")
_UPSERT_TASK = _upsert("tasks", TASK_COLUMNS, "store, platform, task_id")
# ON CONFLICT names the one constraint that may be skipped; OR IGNORE would also silently
# drop a row that broke NOT NULL or CHECK, i.e. lose an event.
_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
    "created_at, next_attempt_at, subject) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) "
    "ON CONFLICT (event_id, notifier) DO NOTHING"
)
_PRUNE_TASKS = prune_tasks(":before")
_PRUNE_DELIVERED = prune_delivered(":before")


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """Ask for WAL mode; return the journal mode in force. The switch needs the file to
    itself, and SQLite may refuse it at once, without waiting `busy_timeout`, while other
    processes open the same new file: retry for up to `busy_timeout` seconds."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)


def _configure(conn: sqlite3.Connection, busy_timeout: float, *, wal_required: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000):d}")
    mode = _switch_to_wal(conn, busy_timeout)
    if wal_required and mode != "wal":
        raise RuntimeError(
            f"cannot switch the state database to WAL mode (journal mode is {mode!r}); "
            "put it on a local filesystem"
        )
    # With WAL, NORMAL may lose the last commits on power loss but never splits one: task
    # state and its outbox rows roll back together, and the next poll detects the change again.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


class SqliteStore(SqliteTokens):
    """A `StateStore` in one SQLite file (or `":memory:"` for tests).

    `check_timeout` bounds the integrity check at `open()` (seconds; see `quick_check`).
    `busy_timeout` is how long, in seconds, a write waits for another connection (another
    process on the same file) to finish its transaction before failing. `commit_delay` and
    `commit_batch` bound how long and how many writes share one COMMIT (`GroupCommit`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        commit_delay: float = 0.1,
        commit_batch: int = 500,
        check_timeout: float = 10.0,
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.check_timeout = check_timeout
        self._group = GroupCommit(
            repr(self), self.path, commit_delay=commit_delay, commit_batch=commit_batch
        )
        self._outbox = SqliteOutbox(self._group)
        self._reads = SqliteReads(self._group)
        self._leases = LocalLeases()

    @property
    def outbox(self) -> SqliteOutbox:
        """The deliveries, on the same group-committed connection as the poll state."""
        return self._outbox

    @property
    def leases(self) -> LocalLeases:
        """One process owns every store: leases in memory (`LocalLeases`)."""
        return self._leases

    @property
    def reads(self) -> SqliteReads:
        """The status page's and the API's bounded reads, on the same connection."""
        return self._reads

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def open(self) -> None:
        """Open the file (creating its directory), switch to WAL, check its pages
        (`StoreCorruptError`) and migrate the schema."""
        if self._group.attached:
            return
        if self.path != _MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are opened explicitly, never behind our back.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            _configure(conn, self.busy_timeout, wal_required=self.path != _MEMORY)
            quick_check(conn, self.path, self.check_timeout)
            migrate(conn)
            identity = None if self.path == _MEMORY else FileIdentity(self.path)
        except BaseException:
            conn.close()
            raise
        self._group.attach(conn, identity)

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn = self._group.detach()
        if conn is None:
            return
        try:
            # Only a hint to the query planner: a busy file must not stop shutdown.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA optimize")
        finally:
            conn.close()

    async def ping(self) -> None:
        """Read one row of the schema, so a closed, locked or vanished database shows."""
        try:
            conn = self._db()
        except RuntimeError as exc:  # closed: the message names the store already
            raise StoreUnavailableError(str(exc)) from exc
        try:
            conn.execute("SELECT 1 FROM store_health LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"{self!r}: {exc}") from exc
        self._group.check_identity()
        if self._group.write_error is not None:
            raise StoreWriteError(f"{self!r}: {self._group.write_error}")

    def _db(self) -> sqlite3.Connection:
        return self._group.connection()

    def flush(self) -> None:
        """Commit the open group now; a no-op when there is none. Raises what COMMIT raised,
        after rolling the group back."""
        self._group.flush()

    async def load_view(self, key: EndpointKey, task_ids: Collection[str] = ()) -> EndpointView:
        """The endpoint's view: its state, its store's health, its tasks among `task_ids` and
        its current task. Defaults for what was never written."""
        platform = key.platform.value
        where = (key.store, platform, key.endpoint)
        conn = self._db()
        row = conn.execute(_SELECT_HEALTH, (key.store, platform)).fetchone()
        health = (
            StoreHealth(key.store, key.platform)
            if row is None
            else ROWS.store_health(key.store, key.platform, row)
        )
        health_stored = row is not None
        row = conn.execute(_SELECT_ENDPOINT, where).fetchone()
        endpoint = EndpointState(key) if row is None else ROWS.endpoint_state(key, row)
        wanted = set(task_ids)
        if endpoint.current_task_id is not None:
            wanted.add(endpoint.current_task_id)
        ids = sorted(wanted)
        tasks: dict[str, TrackedTask] = {}
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = ids[i : i + _ID_CHUNK]
            rows = conn.execute(_select_tasks(len(chunk)), (*where, *chunk))
            tasks.update((task.task_id, task) for task in map(ROWS.task_from_row, rows))
        return EndpointView(health, endpoint, tasks, health_stored=health_stored)

    async def save_poll(self, write: PollWrite) -> None:
        """Write the poll's state and its outbox rows in one transaction; if anything raises,
        nothing is written and the error propagates."""
        with self._group.write(outbox=bool(write.outbox)) as conn:
            if write.health is not None:
                conn.execute(_UPSERT_HEALTH, ROWS.health_params(write.health))
            conn.execute(_UPSERT_ENDPOINT, ROWS.endpoint_params(write.endpoint))
            if write.upserts:
                conn.executemany(_UPSERT_TASK, map(ROWS.task_params, write.upserts))
            if write.notes:
                save_notes(conn, write.endpoint.key, write.notes)
            if write.outbox:
                conn.executemany(
                    _INSERT_OUTBOX,
                    [
                        (r.event_id, r.notifier, r.event_type, r.store, body, at, at, r.subject)
                        for r in write.outbox
                        for at, body in ((ts(r.created_at), redact_bytes(r.body)),)
                    ],
                )

    async def list_endpoints(self, store: str | None = None) -> list[EndpointState]:
        """Every endpoint polled at least once, optionally of one store."""
        where = " WHERE (:store IS NULL OR store = :store) ORDER BY store, endpoint, platform"
        rows = self._db().execute(SELECT_ENDPOINTS + where, {"store": store})
        return [ROWS.endpoint_from_row(r) for r in rows]

    async def list_tasks(self, store: str | None = None) -> list[TrackedTask]:
        """Tracked tasks (gone ones included), optionally of one store, by store and task id."""
        conn = self._db()
        order = " ORDER BY store, task_id, platform"
        if store is None:
            rows = conn.execute(SELECT_TASKS + order)
        else:
            sql = SELECT_TASKS + " WHERE store = ?" + order
            rows = conn.execute(sql, (store,))
        return [ROWS.task_from_row(r) for r in rows]

    async def list_notes(self, store: str | None = None) -> list[tuple[str, str, str, str]]:
        """(store, endpoint, name, value) of every endpoint note, optionally of one store."""
        return list_notes(self._db(), store)

    async def list_health(self) -> list[StoreHealth]:
        """The health of every store that has been polled, by store name."""
        rows = self._db().execute(SELECT_HEALTH + " ORDER BY store, platform")
        return [ROWS.health_from_row(r) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Forget terminal or gone tasks unchanged and unseen since `before`, and delivered
        rows delivered before it; pending and dead rows are never pruned. Return rows deleted."""
        params = {"before": ts(before)}
        with self._group.write() as conn:
            deleted = conn.execute(_PRUNE_TASKS, params).rowcount
            deleted += conn.execute(_PRUNE_DELIVERED, params).rowcount
        return deleted
