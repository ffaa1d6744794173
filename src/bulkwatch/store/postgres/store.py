"""The PostgreSQL state store: a pool of asyncpg connections, one transaction per write.

Every write (one poll's state with its outbox rows, one delivery outcome) is its own
transaction on a connection borrowed from the pool; reads are single statements on any
connection. Polls and deliveries run concurrently, each on its own connection, up to the
pool's size; the rest wait for a connection. Several processes may share the database:
PostgreSQL's row locks keep each write whole and the `ON CONFLICT` clauses make a write that
races another's (a poll judged twice) land once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime

import asyncpg

from bulkwatch.common.urls import without_password
from bulkwatch.model import (
    TERMINAL_STATUSES,
    EndpointKey,
    EndpointState,
    EndpointView,
    StoreHealth,
    TrackedTask,
)
from bulkwatch.store.base import PollWrite, StoreUnavailableError
from bulkwatch.store.postgres.outbox import PostgresOutbox, affected
from bulkwatch.store.postgres.rows import (
    ENDPOINT_COLUMNS,
    HEALTH_COLUMNS,
    TASK_COLUMNS,
    endpoint_from_row,
    endpoint_params,
    health_from_row,
    health_params,
    task_from_row,
    task_params,
    utc,
)
from bulkwatch.store.postgres.schema import migrate

__all__ = ["PostgresStore"]

CONNECT_TIMEOUT = 10.0  # seconds to open one connection
COMMAND_TIMEOUT = 60.0  # seconds any one statement may take before it is cancelled
CLOSE_TIMEOUT = 10.0  # seconds close() waits for borrowed connections before cutting them
# What the driver raises when the server cannot be reached, refuses us or drops us.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _upsert(table: str, columns: str, key: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in keys)
    marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608 - constant names
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


_SELECT_HEALTH = (
    f"SELECT {HEALTH_COLUMNS} FROM store_health "  # noqa: S608 - constant columns
    "WHERE store = $1 AND platform = $2"
)
_SELECT_ENDPOINT = (
    f"SELECT {ENDPOINT_COLUMNS} FROM endpoints "  # noqa: S608 - constant columns
    "WHERE store = $1 AND platform = $2 AND endpoint = $3"
)
# Tasks by id: an endpoint's view holds the tasks its poll shows and its current task, not
# everything it ever showed (a busy Shopline endpoint keeps thousands of superseded tasks).
_SELECT_TASKS = (
    f"SELECT {TASK_COLUMNS} FROM tasks "  # noqa: S608 - constant columns
    "WHERE store = $1 AND platform = $2 AND endpoint = $3 AND task_id = ANY($4::text[])"
)
_UPSERT_HEALTH = _upsert("store_health", HEALTH_COLUMNS, "store, platform")
_UPSERT_ENDPOINT = _upsert("endpoints", ENDPOINT_COLUMNS, "store, platform, endpoint")
_UPSERT_TASK = _upsert("tasks", TASK_COLUMNS, "store, platform, task_id")
# ON CONFLICT names the one constraint that may be skipped: a row breaking NOT NULL or CHECK
# fails the whole write rather than lose an event.
_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
    "created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) "
    "ON CONFLICT (event_id, notifier) DO NOTHING"
)
_TERMINAL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATUSES))
# A terminal task is only forgotten once it is also out of sight (observed_at old): a task still
# listed by the platform would otherwise come back on the next poll as a "new" task.
_PRUNE_TASKS = (
    "DELETE FROM tasks WHERE changed_at < $1 AND observed_at < $1 "  # noqa: S608
    f"AND (gone OR status IN ({_TERMINAL}))"
)
_PRUNE_DELIVERED = "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < $1"


class PostgresStore:
    """A `StateStore` in a PostgreSQL database (the current schema of `url`'s connections).

    `url` is a `postgresql://user[:password]@host[:port]/database[?param=value...]` URL;
    parameters the driver does not know (`search_path`, `application_name`...) are set on
    every connection. `pool_size` bounds the connections this store opens.
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._outbox = PostgresOutbox(self._connections)

    @property
    def outbox(self) -> PostgresOutbox:
        """The deliveries, on the same pool as the poll state."""
        return self._outbox

    def __repr__(self) -> str:
        return f"PostgresStore({without_password(self.url)!r})"

    def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not open; await open() first")
        return self._pool

    def _reason(self, exc: BaseException) -> str:
        """What went wrong, never with the URL's password in it."""
        text = str(exc) or type(exc).__name__
        shown = without_password(self.url)
        return text.replace(self.url, shown) if self.url != shown else text

    async def open(self) -> None:
        """Connect (up to `pool_size` connections, one at first) and migrate the schema.
        Raise `StoreUnavailableError` when the server cannot be reached or refuses us."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
            )
        except _CONNECTION_ERRORS as exc:
            # from None: the driver's own exceptions may quote what they were given.
            raise StoreUnavailableError(
                f"cannot connect to {self!r}: {self._reason(exc)}"
            ) from None
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except _CONNECTION_ERRORS as exc:
            pool.terminate()
            raise StoreUnavailableError(f"cannot migrate {self!r}: {self._reason(exc)}") from None
        except BaseException:  # SchemaTooNewError, NoSchemaError, cancellation
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close every connection; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()

    async def ping(self) -> None:
        """Read one row of the schema, so a closed store, a server that went away or a
        dropped schema shows."""
        try:
            await self._connections().fetchval("SELECT 1 FROM store_health LIMIT 1")
        except RuntimeError as exc:  # not open: the message names the store already
            raise StoreUnavailableError(str(exc)) from exc
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailableError(f"{self!r}: {self._reason(exc)}") from None

    async def load_view(self, key: EndpointKey, task_ids: Collection[str] = ()) -> EndpointView:
        """The endpoint's view: its state, its store's health, its tasks among `task_ids` and
        its current task. Defaults for what was never written."""
        platform = key.platform.value
        async with self._connections().acquire() as conn:
            row = await conn.fetchrow(_SELECT_HEALTH, key.store, platform)
            health = StoreHealth(key.store, key.platform) if row is None else health_from_row(row)
            health_stored = row is not None
            row = await conn.fetchrow(_SELECT_ENDPOINT, key.store, platform, key.endpoint)
            endpoint = EndpointState(key) if row is None else endpoint_from_row(row)
            wanted = set(task_ids)
            if endpoint.current_task_id is not None:
                wanted.add(endpoint.current_task_id)
            rows = (
                await conn.fetch(_SELECT_TASKS, key.store, platform, key.endpoint, list(wanted))
                if wanted
                else []
            )
        tasks = {task.task_id: task for task in map(task_from_row, rows)}
        return EndpointView(health, endpoint, tasks, health_stored=health_stored)

    async def save_poll(self, write: PollWrite) -> None:
        """Write the poll's state and its outbox rows in one transaction; if anything raises,
        nothing is written and the error propagates."""
        async with self._connections().acquire() as conn, conn.transaction():
            if write.health is not None:
                await conn.execute(_UPSERT_HEALTH, *health_params(write.health))
            await conn.execute(_UPSERT_ENDPOINT, *endpoint_params(write.endpoint))
            if write.upserts:
                await conn.executemany(_UPSERT_TASK, [task_params(t) for t in write.upserts])
            if write.outbox:
                await conn.executemany(
                    _INSERT_OUTBOX,
                    [
                        (r.event_id, r.notifier, r.event_type, r.store, r.body, utc(r.created_at))
                        for r in write.outbox
                    ],
                )

    async def list_endpoints(self, store: str | None = None) -> list[EndpointState]:
        """Every endpoint polled at least once, optionally of one store."""
        rows = await self._connections().fetch(
            f"SELECT {ENDPOINT_COLUMNS} FROM endpoints "  # noqa: S608 - constant columns
            "WHERE ($1::text IS NULL OR store = $1) ORDER BY store, endpoint, platform",
            store,
        )
        return [endpoint_from_row(r) for r in rows]

    async def list_tasks(self, store: str | None = None) -> list[TrackedTask]:
        """Tracked tasks (gone ones included), optionally of one store, by store and task id."""
        rows = await self._connections().fetch(
            f"SELECT {TASK_COLUMNS} FROM tasks "  # noqa: S608 - constant columns
            "WHERE ($1::text IS NULL OR store = $1) ORDER BY store, task_id, platform",
            store,
        )
        return [task_from_row(r) for r in rows]

    async def list_health(self) -> list[StoreHealth]:
        """The health of every store that has been polled, by store name."""
        rows = await self._connections().fetch(
            f"SELECT {HEALTH_COLUMNS} FROM store_health "  # noqa: S608 - constant columns
            "ORDER BY store, platform"
        )
        return [health_from_row(r) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Forget terminal or gone tasks unchanged and unseen since `before`, and delivered
        rows delivered before it; pending and dead rows are never pruned. Return rows deleted."""
        cutoff = utc(before)
        async with self._connections().acquire() as conn, conn.transaction():
            deleted = affected(await conn.execute(_PRUNE_TASKS, cutoff))
            deleted += affected(await conn.execute(_PRUNE_DELIVERED, cutoff))
        return deleted
