"""The SQLite state store: one WAL-mode connection, used directly from the event loop.

Every call is a few short statements on a local file, so it runs inline instead of on a
thread: no locks, no hand-offs, and no `await` inside a write, which is what keeps two
coroutines from interleaving on the one connection.

Group commit: each write (one poll's state with its outbox rows, one delivery outcome) is
atomic on its own, inside a SAVEPOINT, but the COMMIT that makes it durable is shared by the
writes of up to `commit_delay` seconds (at most `commit_batch` of them). A COMMIT writes
every touched page to the WAL and cost more than all the rest of a poll's SQL together;
sharing it is most of the store's cost per poll. Outbox rows are committed before
`due_deliveries` hands them out, so nothing is ever sent whose state could still roll back.
A crash loses at most the last `commit_delay` seconds of writes; the changes they recorded
are seen again, with the same event ids, on the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import structlog

from bulkwatch.domain import (
    TERMINAL_STATUSES,
    EndpointKey,
    EndpointState,
    Platform,
    StoreHealth,
    TrackedTask,
)
from bulkwatch.store.base import (
    Delivery,
    DeliveryStatus,
    EndpointView,
    EventEncoder,
    EventRouter,
    PollOutcome,
    StoreUnavailableError,
)
from bulkwatch.store.sqlite_schema import (
    DELIVERY_COLUMNS,
    TASK_COLUMNS,
    delivery_from_row,
    dt_required,
    endpoint_from_row,
    endpoint_params,
    health_from_row,
    health_params,
    migrate,
    task_from_row,
    task_params,
    ts,
)

__all__ = ["SqliteStore"]

_log = structlog.get_logger("bulkwatch.store")
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
        f"SELECT {TASK_COLUMNS} FROM tasks "  # noqa: S608 - constant columns, only marks
        f"WHERE store = ? AND platform = ? AND endpoint = ? AND task_id IN ({marks})"
    )


_UPSERT_HEALTH = _upsert(
    "store_health", "store, platform, down, outage, failing_endpoints", "store, platform"
)
_UPSERT_ENDPOINT = _upsert(
    "endpoints",
    "store, platform, endpoint, baselined, consecutive_failures, current_task_id, "
    "last_success_at, last_failure",
    "store, platform, endpoint",
)
_UPSERT_TASK = _upsert("tasks", TASK_COLUMNS, "store, platform, task_id")
# ON CONFLICT names the one constraint that may be skipped; OR IGNORE would also silently
# drop a row that broke NOT NULL or CHECK, i.e. lose an event.
_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
    "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?) "
    "ON CONFLICT (event_id, notifier) DO NOTHING"
)
_SELECT_DUE = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
)
_SELECT_DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox "  # noqa: S608 - constant column list
    "WHERE status = :status AND (:notifier IS NULL OR notifier = :notifier) "
    "ORDER BY id LIMIT :limit"
)
_REQUEUE = (
    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = :now "
    "WHERE status = 'dead' AND (:notifier IS NULL OR notifier = :notifier)"
)
_REQUEUE_ID = _REQUEUE + " AND id = :id"
_TERMINAL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATUSES))
# A terminal task is only forgotten once it is also out of sight (observed_at old): a task still
# listed by the platform would otherwise come back on the next poll as a "new" task and
# notify again.
_PRUNE_TASKS = (
    "DELETE FROM tasks WHERE changed_at < :before AND observed_at < :before "  # noqa: S608
    f"AND (gone OR status IN ({_TERMINAL}))"
)


def _configure(conn: sqlite3.Connection, busy_timeout: float, *, wal_required: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000):d}")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if wal_required and mode != "wal":
        raise RuntimeError(
            f"cannot switch the state database to WAL mode (journal mode is {mode!r}); "
            "put it on a local filesystem"
        )
    # With WAL, NORMAL may lose the last commits on power loss but never splits one: task
    # state and its outbox rows roll back together, and the next poll detects the change again.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


class SqliteStore:
    """A `StateStore` in one SQLite file (or `":memory:"` for tests).

    `busy_timeout` is how long, in seconds, a write waits for another connection (another
    process on the same file) to finish its transaction before failing.
    """

    # This process's stores holding a group open: another store on the same file commits
    # them before it writes, rather than wait `busy_timeout` for a lock its own thread holds.
    _open_groups: ClassVar[weakref.WeakSet[SqliteStore]] = weakref.WeakSet()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        commit_delay: float = 0.1,
        commit_batch: int = 500,
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.commit_delay = commit_delay  # 0: every write commits at once
        self.commit_batch = commit_batch
        self._conn: sqlite3.Connection | None = None
        self._uncommitted = 0  # writes in the open group
        self._uncommitted_outbox = False  # some of them added or requeued outbox rows
        self._flush_timer: asyncio.TimerHandle | None = None
        self._thread = 0  # the connection's thread: only it may use the connection
        self._last_commit = -math.inf  # monotonic; -inf: the first write is after a quiet spell

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def open(self) -> None:
        """Open the file (creating its directory), switch to WAL and migrate the schema."""
        if self._conn is not None:
            return
        if self.path != _MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are opened explicitly, never behind our back.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        self._thread = threading.get_ident()
        try:
            _configure(conn, self.busy_timeout, wal_required=self.path != _MEMORY)
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            conn, self._conn = self._conn, None
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

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self!r} is not open; await open() first")
        return self._conn

    @contextlib.contextmanager
    def _write(self, *, outbox: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic write: all of it or none of it, committed alone or with its group."""
        conn = self._join_group()
        conn.execute("SAVEPOINT write")
        try:
            yield conn
        except BaseException:
            self._undo(conn, "ROLLBACK TO write", "RELEASE write")
            raise
        conn.execute("RELEASE write")
        self._wrote(outbox=outbox)

    def _statement(self, sql: str, params: Sequence[Any]) -> None:
        """One statement, atomic by itself, joining the group like any other write."""
        conn = self._join_group()
        try:
            conn.execute(sql, params)
        except BaseException:
            self._undo(conn)  # SQLite already undid the statement itself
            raise
        self._wrote(outbox=False)

    def _join_group(self) -> sqlite3.Connection:
        conn = self._db()
        if conn.in_transaction:
            return conn
        for other in list(self._open_groups):
            if other is not self and other.path == self.path and other._thread == self._thread:
                other.flush()
        # IMMEDIATE takes the write lock before the first read: nothing read in the group
        # can change under it (another process on the file) before it is written.
        conn.execute("BEGIN IMMEDIATE")
        self._open_groups.add(self)
        return conn

    def _undo(self, conn: sqlite3.Connection, *statements: str) -> None:
        """After a failed write: drop it, and end the transaction if it held nothing else."""
        if not conn.in_transaction:  # some errors (disk full, I/O) end the whole group
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
        except BaseException:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._group_closed()

    def _flush_logged(self) -> None:
        writes = self._uncommitted
        try:
            self.flush()
        except sqlite3.Error as exc:
            # Nothing is lost for good: each poll's change is seen again on its next poll,
            # and a delivery outcome not recorded means that delivery is made again.
            _log.error("could not commit recent writes", writes=writes, error=str(exc))

    async def record_poll(
        self,
        key: EndpointKey,
        judge: Callable[[EndpointView], PollOutcome],
        encode: EventEncoder,
        route: EventRouter,
        *,
        task_ids: Collection[str] = (),
    ) -> PollOutcome:
        """Load the endpoint's view, judge it, and write the outcome plus its outbox rows in
        one transaction; if anything raises, nothing is written and the error propagates."""
        platform = key.platform.value
        where = (key.store, platform, key.endpoint)
        with self._write(outbox=True) as conn:
            row = conn.execute(_SELECT_HEALTH, (key.store, platform)).fetchone()
            health_stored = row is not None
            health = (
                StoreHealth(key.store, key.platform)
                if row is None
                else health_from_row(key.store, key.platform, row)
            )
            row = conn.execute(_SELECT_ENDPOINT, where).fetchone()
            endpoint = EndpointState(key) if row is None else endpoint_from_row(key, row)
            wanted = set(task_ids)
            if endpoint.current_task_id is not None:
                wanted.add(endpoint.current_task_id)
            ids = sorted(wanted)
            tasks: dict[str, TrackedTask] = {}
            for i in range(0, len(ids), _ID_CHUNK):
                chunk = ids[i : i + _ID_CHUNK]
                rows = conn.execute(_select_tasks(len(chunk)), (*where, *chunk))
                tasks.update((task.task_id, task) for task in map(task_from_row, rows))

            outcome = judge(EndpointView(health=health, endpoint=endpoint, tasks=tasks))

            if not health_stored or outcome.health != health:  # nearly always the same
                conn.execute(_UPSERT_HEALTH, health_params(outcome.health))
            conn.execute(_UPSERT_ENDPOINT, endpoint_params(outcome.endpoint))
            if outcome.upserts:
                conn.executemany(_UPSERT_TASK, map(task_params, outcome.upserts))
            outbox: list[tuple[Any, ...]] = []
            for event in outcome.events:
                notifiers = route(event)
                if not notifiers:
                    continue
                body, at = encode(event), ts(event.time)
                outbox.extend(
                    (event.id, name, event.type, event.store, body, at, at) for name in notifiers
                )
            if outbox:
                conn.executemany(_INSERT_OUTBOX, outbox)
        return outcome

    async def get_endpoint(self, key: EndpointKey) -> EndpointState | None:
        """The stored state of one endpoint, or None before its first recorded poll."""
        params = (key.store, key.platform.value, key.endpoint)
        row = self._db().execute(_SELECT_ENDPOINT, params).fetchone()
        return None if row is None else endpoint_from_row(key, row)

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending rows whose next attempt is due, by next_attempt_at then id."""
        if self._uncommitted_outbox:
            self.flush()  # never hand out a row whose poll could still roll back
        rows = self._db().execute(_SELECT_DUE, (ts(now), limit))
        return [delivery_from_row(r) for r in rows]

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending row falls due, or None when nothing is pending."""
        row = (
            self._db()
            .execute(
                "SELECT next_attempt_at FROM outbox WHERE status = 'pending' "
                "ORDER BY next_attempt_at LIMIT 1"
            )
            .fetchone()
        )
        return None if row is None else dt_required(row[0])

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None:
        """Record a successful delivery."""
        self._statement(
            "UPDATE outbox SET status = 'delivered', delivered_at = ? WHERE id = ?",
            (ts(now), delivery_id),
        )

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        """Keep the row pending and push its next attempt to `next_attempt_at`."""
        self._statement(
            "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?, "
            "last_error = ? WHERE id = ?",
            (attempts, ts(next_attempt_at), error, delivery_id),
        )

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None:
        """Stop trying a row; it stays listed until requeued."""
        self._statement(
            "UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?",
            (attempts, error, delivery_id),
        )

    async def list_deliveries(
        self, status: DeliveryStatus, *, notifier: str | None = None, limit: int = 1000
    ) -> list[Delivery]:
        """Rows in one status (optionally of one notifier), oldest id first."""
        params = {"status": status.value, "notifier": notifier, "limit": limit}
        rows = self._db().execute(_SELECT_DELIVERIES, params)
        return [delivery_from_row(r) for r in rows]

    async def requeue_dead(
        self, now: datetime, *, ids: Sequence[int] | None = None, notifier: str | None = None
    ) -> int:
        """Make dead rows pending again, due `now`, with attempts reset and last_error kept;
        filter by `ids` and/or `notifier` (neither: every dead row). Return how many."""
        params = {"now": ts(now), "notifier": notifier}
        with self._write(outbox=True) as conn:
            if ids is None:
                return conn.execute(_REQUEUE, params).rowcount
            return conn.executemany(_REQUEUE_ID, ({**params, "id": i} for i in ids)).rowcount

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""
        # Kept by triggers (schema v2): a few rows, however large the outbox has grown.
        rows = self._db().execute("SELECT notifier, status, n FROM outbox_counts WHERE n > 0")
        return {(n, DeliveryStatus(s)): c for n, s, c in rows}

    async def list_tasks(self, store: str | None = None) -> list[TrackedTask]:
        """Tracked tasks (gone ones included), optionally of one store, by store and task id."""
        conn = self._db()
        order = " ORDER BY store, task_id, platform"
        if store is None:
            rows = conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks" + order)  # noqa: S608
        else:
            sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE store = ?" + order  # noqa: S608
            rows = conn.execute(sql, (store,))
        return [task_from_row(r) for r in rows]

    async def list_health(self) -> list[StoreHealth]:
        """The health of every store that has been polled, by store name."""
        rows = self._db().execute(
            "SELECT store, platform, down, outage, failing_endpoints FROM store_health "
            "ORDER BY store, platform"
        )
        return [health_from_row(r[0], Platform(r[1]), r[2:]) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Forget terminal or gone tasks unchanged and unseen since `before`, and delivered
        rows delivered before it; pending and dead rows are never pruned. Return rows deleted."""
        params = {"before": ts(before)}
        with self._write() as conn:
            deleted = conn.execute(_PRUNE_TASKS, params).rowcount
            deleted += conn.execute(
                "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < :before",
                params,
            ).rowcount
        return deleted
