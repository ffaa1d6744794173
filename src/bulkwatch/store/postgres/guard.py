"""One daemon per PostgreSQL state, unless every daemon on it is a replica: a session-level
advisory lock, held on a connection of its own for the daemon's whole life.

A daemon without `state.replicas` polls every store and takes the lock in exclusive mode;
replicas take it in shared mode, which they all hold at once. So a second daemon without
replicas, or one beside running replicas, or a replica beside a daemon without, is refused
at start with one line saying which (`StateInUseError`). PostgreSQL releases the lock when
the connection ends, however the process ends (`kill -9` included). The key is a constant and
the schema's name, as the schema lock's is: deployments in separate schemas do not meet.

The commands that only read or re-queue (`status`, `deliveries`) take no lock. A lock lost
with its connection (a server restart) is not taken again: replicas stay apart by their leases
and fenced writes, and a second daemon without replicas would be refused only at its start.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from bulkwatch.store.leasing import StateInUseError

__all__ = ["daemon_guard"]

CLOSE_TIMEOUT = 5.0
_KEY = "hashtext('bulkwatch.daemon'), hashtext(coalesce(current_schema(), ''))"
_EXCLUSIVE = f"SELECT pg_try_advisory_lock({_KEY})"
_SHARED = f"SELECT pg_try_advisory_lock_shared({_KEY})"
_UNLOCK_SHARED = f"SELECT pg_advisory_unlock_shared({_KEY})"


async def _refusal(conn: asyncpg.Connection, *, shared: bool, where: str) -> str:
    """Why the lock was refused, told by who holds it: replicas hold it shared."""
    if shared:
        return (
            f"state.url: a bulkwatch daemon without state.replicas uses {where}; stop it, "
            "or set state.replicas: true on every daemon of this database"
        )
    if await conn.fetchval(_SHARED):  # the holders are replicas
        await conn.fetchval(_UNLOCK_SHARED)
        return (
            f"state.url: bulkwatch replicas run against {where}; set state.replicas: true "
            "to run beside them"
        )
    return (
        f"state.url: another bulkwatch daemon without state.replicas uses {where}; one "
        "daemon per database, unless every one sets state.replicas: true"
    )


@contextlib.asynccontextmanager
async def daemon_guard(
    connect: Callable[[], Awaitable[asyncpg.Connection]], *, shared: bool, where: str
) -> AsyncIterator[None]:
    """Hold the daemon lock (shared for replicas) on a connection from `connect` for the
    block; raise `StateInUseError` at once when it is held in a mode that excludes ours.
    `where` names the database in the refusal (never with a password)."""
    conn = await connect()
    try:
        if not await conn.fetchval(_SHARED if shared else _EXCLUSIVE):
            schema = await conn.fetchval("SELECT current_schema()")
            place = where if schema is None else f"schema {schema!r} of {where}"
            raise StateInUseError(await _refusal(conn, shared=shared, where=place))
        yield
    finally:
        try:
            await conn.close(timeout=CLOSE_TIMEOUT)  # ends the session: the lock goes
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()
