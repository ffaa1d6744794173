"""The PostgreSQL state store: a pool of asyncpg connections, one transaction per write.

Every write (one poll's state with its outbox rows, one delivery outcome) is its own
transaction on a connection borrowed from the pool; a poll's read and its write are one
statement each (`poll_sql`), so one round trip each. Polls and deliveries run concurrently,
each on its own connection, up to the pool's size; the rest wait for a connection. Several
processes may share the database: PostgreSQL's row locks keep each write whole and the
`ON CONFLICT` clauses make a write that races another's (a poll judged twice) land once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Collection
from datetime import datetime

import asyncpg

from bulkwatch.common.urls import without_password
from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    StoreHealth,
    TrackedTask,
)
from bulkwatch.store.base import (
    LeaseLostError,
    PollWrite,
    StoreUnavailableError,
    StoreWriteError,
)
from bulkwatch.store.postgres.guard import daemon_guard
from bulkwatch.store.postgres.leases import PostgresLeases
from bulkwatch.store.postgres.outbox import PostgresOutbox, WriteOutcome, affected
from bulkwatch.store.postgres.poll_sql import SELECT_VIEW, save_poll_args
from bulkwatch.store.postgres.reads import PostgresReads, fetch_as
from bulkwatch.store.postgres.rows import ROWS, utc
from bulkwatch.store.postgres.schema import migrate
from bulkwatch.store.postgres.tokens import PostgresTokens
from bulkwatch.store.rows import (
    SELECT_ENDPOINTS,
    SELECT_HEALTH,
    SELECT_TASKS,
    prune_delivered,
    prune_tasks,
)

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


_PRUNE_TASKS = prune_tasks("$1")
_PRUNE_DELIVERED = prune_delivered("$1")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection back in the pool needs besides the driver's rollback of an open
    transaction: nothing. bulkwatch sets no session state (no SET, LISTEN, cursors or
    session-level advisory locks), so the driver's default reset (`RESET ALL` and the rest)
    would only add a round trip to every borrowed connection."""


class PostgresStore(PostgresTokens):
    """A `StateStore` in a PostgreSQL database (the current schema of `url`'s connections).

    `url` is a `postgresql://user[:password]@host[:port]/database[?param=value...]` URL;
    parameters the driver does not know (`search_path`, `application_name`...) are set on
    every connection. `pool_size` bounds the connections this store opens. The outbox is
    shared with other processes on the database: `owner` names this one in the deliveries it
    takes (default: a random token of this store object's own; a replica passes its id), and
    another process may take a delivery `claim_timeout` seconds after this one did.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        owner: str | None = None,
        claim_timeout: float = 300.0,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._writes = WriteOutcome(lambda: repr(self))
        self._outbox = PostgresOutbox(
            self._connections,
            self._writes,
            owner=owner if owner is not None else secrets.token_hex(8),
            claim_timeout=claim_timeout,
        )
        self._reads = PostgresReads(self._connections)
        self._leases = PostgresLeases(self._connections)

    @property
    def outbox(self) -> PostgresOutbox:
        """The deliveries, on the same pool as the poll state."""
        return self._outbox

    @property
    def leases(self) -> PostgresLeases:
        """Which replica polls which store, on the same pool."""
        return self._leases

    @property
    def reads(self) -> PostgresReads:
        """The status page's and the API's bounded reads, on the same pool."""
        return self._reads

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
                reset=_keep_session,
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

    def daemon_guard(self, *, shared: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """The daemon lock on this database (`guard.py`): exclusive for a daemon without
        replicas, `shared` for replicas; held on a connection of its own for the block."""
        return daemon_guard(self._connect_one, shared=shared, where=without_password(self.url))

    async def _connect_one(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                self.url, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
            )
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailableError(
                f"cannot connect to {self!r}: {self._reason(exc)}"
            ) from None

    async def close(self) -> None:
        """Give back the outbox rows this store still claims (best effort: else their claims
        time out), then close every connection; safe to call twice."""
        if self._pool is None:
            return
        with contextlib.suppress(*_CONNECTION_ERRORS):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._outbox.release_claims()
        pool, self._pool = self._pool, None
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()

    async def ping(self) -> None:
        """Read one row of the schema, so a closed store, a server that went away or a
        dropped schema shows; `StoreWriteError` while it reads but its last write failed
        (a read-only server or transaction, a full disk, a lost privilege)."""
        try:
            await self._connections().fetchval("SELECT 1 FROM store_health LIMIT 1")
        except RuntimeError as exc:  # not open: the message names the store already
            raise StoreUnavailableError(str(exc)) from exc
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailableError(f"{self!r}: {self._reason(exc)}") from None
        if self._writes.error is not None:
            raise StoreWriteError(self._reason(RuntimeError(self._writes.error)))

    async def load_view(self, key: EndpointKey, task_ids: Collection[str] = ()) -> EndpointView:
        """The endpoint's view: its state, its store's health, its tasks among `task_ids` and
        its current task. Defaults for what was never written."""
        platform = key.platform.value
        row = await self._connections().fetchrow(
            SELECT_VIEW, key.store, platform, key.endpoint, list(task_ids)
        )
        assert row is not None  # noqa: S101 - the SELECT always yields its one row
        health_stored = row[3]
        health = (
            ROWS.store_health(key.store, key.platform, row[0:3])
            if health_stored
            else StoreHealth(key.store, key.platform)
        )
        endpoint = ROWS.endpoint_from_row(row[5:13]) if row[4] else EndpointState(key)
        tasks = {task.task_id: task for task in map(ROWS.task_from_row, row[13])}
        return EndpointView(health, endpoint, tasks, health_stored=health_stored)

    async def save_poll(self, write: PollWrite) -> None:
        """Write the poll's state and its outbox rows in one statement (so one transaction);
        if anything raises, nothing is written and the error propagates. With an owner, the
        same statement checks its lease: `LeaseLostError` when it holds none on the store."""
        sql, args = save_poll_args(write)
        async with self._writes.write():
            if write.owner is None:
                await self._connections().execute(sql, *args)
                return
            held = await self._connections().fetchval(sql, *args)
        if not held:
            raise LeaseLostError(write.endpoint.key.store, write.owner)

    async def list_endpoints(self, store: str | None = None) -> list[EndpointState]:
        """Every endpoint polled at least once, optionally of one store."""
        where = " WHERE ($1::text IS NULL OR store = $1) ORDER BY store, endpoint, platform"
        return await fetch_as(
            self._connections(), ROWS.endpoint_from_row, SELECT_ENDPOINTS + where, store
        )

    async def list_tasks(self, store: str | None = None) -> list[TrackedTask]:
        """Tracked tasks (gone ones included), optionally of one store, by store and task id."""
        where = " WHERE ($1::text IS NULL OR store = $1) ORDER BY store, task_id, platform"
        return await fetch_as(self._connections(), ROWS.task_from_row, SELECT_TASKS + where, store)

    async def list_notes(self, store: str | None = None) -> list[tuple[str, str, str, str]]:
        """(store, endpoint, name, value) of every endpoint note, optionally of one store."""
        rows = await self._connections().fetch(
            "SELECT store, endpoint, name, value FROM endpoint_notes "
            "WHERE ($1::text IS NULL OR store = $1) ORDER BY store, endpoint, name",
            store,
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def list_health(self) -> list[StoreHealth]:
        """The health of every store that has been polled, by store name."""
        sql = SELECT_HEALTH + " ORDER BY store, platform"
        return await fetch_as(self._connections(), ROWS.health_from_row, sql)

    async def prune(self, before: datetime) -> int:
        """Forget terminal or gone tasks unchanged and unseen since `before`, and delivered
        rows delivered before it; pending and dead rows are never pruned. Return rows deleted."""
        cutoff = utc(before)
        await self._outbox.flush_marks()  # what was marked delivered counts, as it would on SQLite
        async with (
            self._writes.write(),
            self._connections().acquire() as conn,
            conn.transaction(),
        ):
            deleted = affected(await conn.execute(_PRUNE_TASKS, cutoff))
            deleted += affected(await conn.execute(_PRUNE_DELIVERED, cutoff))
        return deleted
