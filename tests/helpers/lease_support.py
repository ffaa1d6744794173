"""Store leases between replicas in tests: stores on one fresh PostgreSQL schema, each with
its own pool as separate processes would have, and leases moved into the past (the database's
clock is the only one leases use, so ageing a row is time passing without a renewal)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import timedelta

from bulkwatch.store.base import Leases, StateStore
from helpers.pg_support import fresh_schema, run_sql
from helpers.store_support import PostgresBackend


async def claim(
    leases: Leases, owner: str, stores: Collection[str], limit: int, ttl: timedelta
) -> list[str]:
    """The stores `Leases.take` took, by name (the contract tests that need not know which
    were takeovers)."""
    return (await leases.take(owner, stores, limit, ttl)).stores


@asynccontextmanager
async def shared_schema(count: int = 3) -> AsyncIterator[tuple[PostgresBackend, list[StateStore]]]:
    """`count` stores open on one fresh schema, each with its own pool; closed after."""
    async with fresh_schema() as (url, schema):
        backend = PostgresBackend(url, schema)
        opened = [await backend.open() for _ in range(count)]
        try:
            yield backend, opened
        finally:
            for s in opened:
                await s.close()


async def age(url: str, owner: str, seconds: float) -> None:
    """Move `owner`'s leases and liveness `seconds` into the past, as if that time passed
    without a renewal."""
    for table in ("leases", "lease_owners"):
        await run_sql(
            url,
            f"UPDATE {table} SET expires_at = expires_at - make_interval(secs => $2) "  # noqa: S608
            "WHERE owner = $1",
            owner,
            seconds,
        )
