"""Helpers for the state-store tests: tasks, events and polls to write, and the backends.

A `Backend` is one test's database, of either kind: it opens stores on it and reads what
is stored the way another process would (a second connection), so a test of the store
contract runs unchanged against SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    Event,
    EventType,
    Platform,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
    encode_cloudevent,
    task_event,
)
from bulkwatch.store.base import Delivery, DeliveryStatus, OutboxRow, PollWrite, StateStore
from bulkwatch.store.factory import open_store_from_url
from bulkwatch.store.postgres import schema as pg_schema
from bulkwatch.store.sqlite.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from bulkwatch.store.sqlite.migrations import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.pg_support import run_sql

T0 = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
LAZZA = EndpointKey("lazza-main", Platform.SHOPLAZZA, "tasks")
LINE = EndpointKey("line-main", Platform.SHOPLINE, "QUERY")
LINE_MUTATION = EndpointKey("line-main", Platform.SHOPLINE, "MUTATION")
NOTIFIERS = ("hook", "slack")

PENDING, DELIVERED, DEAD = DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.DEAD


def encode(event: Event) -> bytes:
    return encode_cloudevent(event, "test-instance")


def route_all(event: Event) -> Sequence[str]:
    return NOTIFIERS


def snap(
    task_id: str,
    status: TaskStatus = TaskStatus.RUNNING,
    *,
    key: EndpointKey = LINE,
    at: datetime = T0,
) -> TaskSnapshot:
    raw: str | int = {TaskStatus.RUNNING: 1, TaskStatus.COMPLETED: 2}.get(status, 0)
    return TaskSnapshot(
        platform=key.platform,
        store=key.store,
        task_id=task_id,
        operation_type="QUERY",
        status=status,
        raw_status=status.value if key.platform is Platform.SHOPLINE else raw,
        observed_at=at,
    )


def tracked(snapshot: TaskSnapshot, *, endpoint: str = "QUERY", seq: int = 0) -> TrackedTask:
    at = snapshot.observed_at
    return TrackedTask(snapshot, endpoint=endpoint, seq=seq, first_seen_at=at, changed_at=at)


def event_for(task: TrackedTask, at: datetime = T0) -> Event:
    s = task.snapshot
    return task_event(EventType.for_status(s.status), s, seq=task.seq, previous=None, now=at)


async def record(
    store: StateStore,
    key: EndpointKey,
    upserts: Sequence[TrackedTask] = (),
    events: Sequence[Event] = (),
    *,
    health: StoreHealth | None = None,
    route: Callable[[Event], Sequence[str]] = route_all,
    task_ids: Sequence[str] = (),
    current: str | None = None,
) -> EndpointView:
    """Load the view of one poll, then write the given outcome as a poll does; return the
    view it loaded."""
    view = await store.load_view(key, task_ids)
    endpoint = replace(view.endpoint, baselined=True, last_success_at=T0, current_task_id=current)
    outbox = [
        OutboxRow(e.id, name, e.type, e.store, encode(e), e.time, e.subject)
        for e in events
        for name in route(e)
    ]
    unchanged = None if view.health_stored else view.health
    await store.save_poll(PollWrite(endpoint, health or unchanged, upserts, outbox))
    return view


async def endpoint_state(store: StateStore, key: EndpointKey) -> EndpointState | None:
    """The stored state of one endpoint, read through the public protocol."""
    found = [e for e in await store.list_endpoints(key.store) if e.key == key]
    return found[0] if found else None


async def pending_rows(store: StateStore, count: int) -> list[int]:
    """`count` pending deliveries (one event each, notifier "hook"), due T0 + i seconds."""
    tasks = [tracked(snap(f"t{i}", at=T0 + timedelta(seconds=i))) for i in range(count)]
    events = [event_for(t, T0 + timedelta(seconds=i)) for i, t in enumerate(tasks)]
    await record(store, LINE, tasks, events, route=lambda e: ["hook"])
    return [d.id for d in await store.outbox.list_deliveries(PENDING)]


async def peek_due(store: StateStore, now: datetime, limit: int = 100) -> list[Delivery]:
    """What `due_deliveries` hands out at `now`, given back at once (as by a dispatcher that
    attempts none of it): a shared outbox claims what it hands out, and the next call would
    not see those rows again until they are."""
    due = await store.outbox.due_deliveries(now, limit)
    await store.outbox.release([d.id for d in due])
    return due


# An outbox row as written before ordered delivery: (event_id, notifier, event_type, store,
# body, status, created_at = next_attempt_at).
OldRow = tuple[str, str, str, str, bytes, str, datetime]
_OLD_INSERT = (
    "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
    "created_at, next_attempt_at) VALUES ({}, 0, {}, {})"
)


class Backend:
    """One test's database: a state URL, and what a test reads or sets behind the store."""

    name = ""
    schema_version = 0  # the version this bulkwatch migrates to
    integrity_error: type[Exception] = Exception  # what a row breaking NOT NULL raises

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> StateStore:
        """A new store on this database, opened."""
        store = open_store_from_url(self.url)
        await store.open()
        return store

    async def dump(self, store: StateStore) -> list[str]:
        """Every stored row of every table, as another connection sees them."""
        raise NotImplementedError

    async def stored_version(self) -> int:
        """The schema version recorded in the database."""
        raise NotImplementedError

    async def set_stored_version(self, version: int) -> None:
        """Record `version` as the database's schema version (a newer bulkwatch's)."""
        raise NotImplementedError

    async def write_before_ordering(self, rows: Sequence[OldRow]) -> None:
        """Create the database at the schema version before ordered delivery (no
        `outbox.subject`) and write these outbox rows into it, as that version did."""
        raise NotImplementedError


class SqliteBackend(Backend):
    name = "sqlite"
    schema_version = SQLITE_SCHEMA_VERSION
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: Path) -> None:
        super().__init__(f"sqlite:///{path}")
        self.path = path

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            return list(conn.execute(sql))

    async def dump(self, store: StateStore) -> list[str]:
        assert isinstance(store, SqliteStore)
        store.flush()  # the group commit's open group, as a crash-free close would
        with closing(sqlite3.connect(self.path)) as conn:
            return list(conn.iterdump())

    async def stored_version(self) -> int:
        ((version,),) = self._query("PRAGMA user_version")
        assert isinstance(version, int)
        return version

    async def set_stored_version(self, version: int) -> None:
        self._query(f"PRAGMA user_version = {version:d}")

    async def write_before_ordering(self, rows: Sequence[OldRow]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            for migration in SQLITE_MIGRATIONS[:5]:  # v6 brought ordered delivery
                migration(conn)
            conn.execute("PRAGMA user_version = 5")
            insert = _OLD_INSERT.format("?, ?, ?, ?, ?, ?", "?", "?")
            for *head, at in rows:
                conn.execute(insert, (*head, at.isoformat(), at.isoformat()))


class PostgresBackend(Backend):
    name = "postgres"
    schema_version = pg_schema.SCHEMA_VERSION
    integrity_error = asyncpg.NotNullViolationError

    def __init__(self, url: str, schema: str) -> None:
        super().__init__(url)
        self.schema = schema

    async def dump(self, store: StateStore) -> list[str]:
        tables = await run_sql(
            self.url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
            "ORDER BY table_name",
            self.schema,
        )
        lines = []
        for (table,) in tables:
            rows = await run_sql(self.url, f"SELECT * FROM {table} ORDER BY 1, 2")  # noqa: S608
            lines += [f"{table}: {tuple(row)!r}" for row in rows]
        return lines

    async def stored_version(self) -> int:
        ((version,),) = await run_sql(self.url, "SELECT version FROM bulkwatch_schema")
        return int(version)

    async def set_stored_version(self, version: int) -> None:
        await run_sql(self.url, "UPDATE bulkwatch_schema SET version = $1", version)

    async def write_before_ordering(self, rows: Sequence[OldRow]) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await pg_schema.migrate(conn, pg_schema.MIGRATIONS[:3])  # v4: ordered delivery
            insert = _OLD_INSERT.format("$1, $2, $3, $4, $5, $6", "$7", "$7")
            for row in rows:
                await conn.execute(insert, *row)
        finally:
            await conn.close()
