"""The PostgreSQL store's bounded reads for the status page and the API (`StatusReads`).

Each read is one statement that walks one index (schema v2 made one for each way in) for at
most a page of rows, whatever the database holds: the page's sort key is the index's, walked
backwards for newest first, and a page continues from the last row of the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import asyncpg

from bulkwatch.model import EndpointState, StoreHealth, TrackedTask
from bulkwatch.store.base import TaskQuery, Troubled
from bulkwatch.store.postgres.rows import (
    ENDPOINT_COLUMNS,
    HEALTH_COLUMNS,
    TASK_COLUMNS,
    endpoint_from_row,
    health_from_row,
    task_from_row,
    utc,
)

__all__ = ["PostgresReads"]

_TROUBLED = "(down OR failing_endpoints <> '{}')"  # the partial index's own condition
_NEWEST_FIRST = " ORDER BY first_seen_at DESC, store DESC, platform DESC, task_id DESC"


def task_sql(query: TaskQuery) -> tuple[str, list[Any]]:
    """The statement for one page of `query` and its arguments."""
    where: list[str] = []
    params: list[Any] = []

    def arg(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.store is not None:
        where.append(f"store = {arg(query.store)}")
    if query.status is not None:
        where.append(f"status = {arg(query.status.value)}")
    if query.platform is not None:
        where.append(f"platform = {arg(query.platform.value)}")
    if query.since is not None:
        where.append(f"first_seen_at >= {arg(utc(query.since))}")
    if query.after is not None:
        a = query.after
        key = ", ".join(
            (arg(utc(a.first_seen_at)), arg(a.store), arg(a.platform.value), arg(a.task_id))
        )
        where.append(f"(first_seen_at, store, platform, task_id) < ({key})")
    sql = f"SELECT {TASK_COLUMNS} FROM tasks"  # noqa: S608 - constant columns
    if where:
        sql += " WHERE " + " AND ".join(where)
    return f"{sql}{_NEWEST_FIRST} LIMIT {arg(query.limit)}", params


class PostgresReads:
    """The status reads of a `PostgresStore`, on the store's connection pool."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool  # raises while the store is not open

    async def recent_tasks(self, query: TaskQuery) -> list[TrackedTask]:
        """At most `query.limit` tasks, newest first; see `TaskQuery` for the filters."""
        sql, params = task_sql(query)
        return [task_from_row(r) for r in await self._pool().fetch(sql, *params)]

    async def health_of(self, stores: Collection[str]) -> list[StoreHealth]:
        """The stored health of these stores, by store name and platform."""
        rows = await self._pool().fetch(
            f"SELECT {HEALTH_COLUMNS} FROM store_health "  # noqa: S608 - constant columns
            "WHERE store = ANY($1::text[]) ORDER BY store, platform",
            sorted(set(stores)),
        )
        return [health_from_row(r) for r in rows]

    async def endpoints_of(self, stores: Collection[str]) -> list[EndpointState]:
        """The stored endpoints of these stores, by store, endpoint and platform."""
        rows = await self._pool().fetch(
            f"SELECT {ENDPOINT_COLUMNS} FROM endpoints "  # noqa: S608 - constant columns
            "WHERE store = ANY($1::text[]) ORDER BY store, endpoint, platform",
            sorted(set(stores)),
        )
        return [endpoint_from_row(r) for r in rows]

    async def troubled_stores(self, limit: int) -> Troubled:
        """Counts of down stores and of up stores with a failing endpoint, and the first
        `limit` of either by name, in one statement over the partial index of troubled
        stores."""
        row = await self._pool().fetchrow(
            "SELECT count(*) FILTER (WHERE down), count(*) FILTER (WHERE NOT down), "  # noqa: S608
            f"ARRAY(SELECT ROW({HEALTH_COLUMNS}) FROM store_health WHERE {_TROUBLED} "
            "ORDER BY store, platform LIMIT $1) "
            f"FROM store_health WHERE {_TROUBLED}",
            limit,
        )
        assert row is not None  # noqa: S101 - an aggregate always yields its one row
        stores = [health_from_row(r) for r in row[2]]
        return Troubled(down=int(row[0]), failing=int(row[1]), stores=stores)
