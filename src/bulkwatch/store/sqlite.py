"""The SQLite state store: one WAL-mode connection, used directly from the event loop.

Every call is a few short statements on a local file, so it runs inline instead of on a
thread: no locks, no hand-offs, and no `await` inside a transaction, which is what keeps two
coroutines from interleaving on the one connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

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
    immediate,
    migrate,
    task_from_row,
    task_params,
    ts,
)

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
_SELECT_ENDPOINT_TASKS = (
    f"SELECT {TASK_COLUMNS} FROM tasks "  # noqa: S608 - constant column list
    "WHERE store = ? AND platform = ? AND endpoint = ?"
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

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

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
        try:
            _configure(conn, self.busy_timeout, wal_required=self.path != _MEMORY)
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = self._conn, None
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

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self!r} is not open; await open() first")
        return self._conn

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self._db())

    async def record_poll(
        self,
        key: EndpointKey,
        judge: Callable[[EndpointView], PollOutcome],
        encode: EventEncoder,
        route: EventRouter,
    ) -> PollOutcome:
        """Load the endpoint's view, judge it, and write the outcome plus its outbox rows in
        one transaction; if anything raises, nothing is written and the error propagates."""
        platform = key.platform.value
        with self._transaction() as conn:
            row = conn.execute(_SELECT_HEALTH, (key.store, platform)).fetchone()
            health = (
                StoreHealth(key.store, key.platform)
                if row is None
                else health_from_row(key.store, key.platform, row)
            )
            row = conn.execute(_SELECT_ENDPOINT, (key.store, platform, key.endpoint)).fetchone()
            endpoint = EndpointState(key) if row is None else endpoint_from_row(key, row)
            rows = conn.execute(_SELECT_ENDPOINT_TASKS, (key.store, platform, key.endpoint))
            tasks = {task.task_id: task for task in map(task_from_row, rows)}

            outcome = judge(EndpointView(health=health, endpoint=endpoint, tasks=tasks))

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
        self._db().execute(
            "UPDATE outbox SET status = 'delivered', delivered_at = ? WHERE id = ?",
            (ts(now), delivery_id),
        )

    async def mark_retry(
        self, delivery_id: int, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None:
        """Keep the row pending and push its next attempt to `next_attempt_at`."""
        self._db().execute(
            "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?, "
            "last_error = ? WHERE id = ?",
            (attempts, ts(next_attempt_at), error, delivery_id),
        )

    async def mark_dead(self, delivery_id: int, *, attempts: int, error: str) -> None:
        """Stop trying a row; it stays listed until requeued."""
        self._db().execute(
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
        with self._transaction() as conn:
            if ids is None:
                return conn.execute(_REQUEUE, params).rowcount
            return conn.executemany(_REQUEUE_ID, ({**params, "id": i} for i in ids)).rowcount

    async def outbox_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(notifier, status) -> rows, for the outbox gauges."""
        rows = self._db().execute(
            "SELECT notifier, status, count(*) FROM outbox GROUP BY notifier, status"
        )
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
        with self._transaction() as conn:
            deleted = conn.execute(_PRUNE_TASKS, params).rowcount
            deleted += conn.execute(
                "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < :before",
                params,
            ).rowcount
        return deleted
