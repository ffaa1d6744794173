"""The SQLite store's bounded reads for the status page and the API (`StatusReads`).

Each read walks one index for at most a page of rows (schema v3 made one for each way in), so
a browser refreshing the page costs the polls sharing this connection a few hundred
microseconds, whether the file holds a thousand tasks or millions.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from bulkwatch.model import EndpointState, StoreHealth, TrackedTask
from bulkwatch.store.base import TaskQuery, Troubled
from bulkwatch.store.rows import SELECT_ENDPOINTS, SELECT_HEALTH, SELECT_TASKS
from bulkwatch.store.sqlite.commit import GroupCommit
from bulkwatch.store.sqlite.rows import ROWS, ts

__all__ = ["SqliteReads"]

_CHUNK = 500  # names per statement, far below SQLite's limit on parameters
_TROUBLED = "(down OR failing_endpoints != '[]')"  # the partial index's own condition
_NEWEST_FIRST = " ORDER BY first_seen_at DESC, store DESC, platform DESC, task_id DESC"


def _chunks(names: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(set(names))
    for i in range(0, len(ordered), _CHUNK):
        yield ordered[i : i + _CHUNK]


@functools.cache
def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _task_sql(query: TaskQuery) -> tuple[str, list[Any]]:
    """The statement for one page. The index is picked by the filters (INDEXED BY makes a
    wrong pick an error, not a scan); a filter that is not the index's first column is
    written `+column`, so the planner keeps walking the index in page order instead of
    sorting what an equality on it would leave."""
    where: list[str] = []
    params: list[Any] = []
    index = "tasks_recent"
    if query.store is not None:
        index = "tasks_recent_by_store"
        where.append("store = ?")
        params.append(query.store)
    if query.status is not None:
        if query.store is None:
            index = "tasks_recent_by_status"
            where.append("status = ?")
        else:
            where.append("+status = ?")
        params.append(query.status.value)
    if query.platform is not None:
        where.append("+platform = ?")
        params.append(query.platform.value)
    if query.since is not None:
        where.append("first_seen_at >= ?")
        params.append(ts(query.since))
    if query.after is not None:
        a = query.after
        where.append("(first_seen_at, store, platform, task_id) < (?, ?, ?, ?)")
        params.extend((ts(a.first_seen_at), a.store, a.platform.value, a.task_id))
    sql = f"{SELECT_TASKS} INDEXED BY {index}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    params.append(query.limit)
    return sql + _NEWEST_FIRST + " LIMIT ?", params


class SqliteReads:
    """The status reads of a `SqliteStore`, on the store's connection (reads only)."""

    def __init__(self, group: GroupCommit) -> None:
        self._group = group

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._group.connection().execute(sql, params).fetchall()

    async def recent_tasks(self, query: TaskQuery) -> list[TrackedTask]:
        """At most `query.limit` tasks, newest first; see `TaskQuery` for the filters."""
        sql, params = _task_sql(query)
        return [ROWS.task_from_row(r) for r in self._rows(sql, params)]

    async def health_of(self, stores: Collection[str]) -> list[StoreHealth]:
        """The stored health of these stores, by store name and platform."""
        out: list[StoreHealth] = []
        for chunk in _chunks(stores):
            sql = f"{SELECT_HEALTH} WHERE store IN ({_marks(len(chunk))}) ORDER BY store, platform"
            out.extend(map(ROWS.health_from_row, self._rows(sql, chunk)))
        return out

    async def endpoints_of(self, stores: Collection[str]) -> list[EndpointState]:
        """The stored endpoints of these stores, by store, endpoint and platform."""
        out: list[EndpointState] = []
        for chunk in _chunks(stores):
            sql = (
                f"{SELECT_ENDPOINTS} WHERE store IN ({_marks(len(chunk))}) "
                "ORDER BY store, endpoint, platform"
            )
            out.extend(map(ROWS.endpoint_from_row, self._rows(sql, chunk)))
        return out

    async def troubled_stores(self, limit: int) -> Troubled:
        """Counts of down stores and of up stores with a failing endpoint, and the first
        `limit` of either by name: all from the partial index of troubled stores."""
        ((down, failing),) = self._rows(
            "SELECT coalesce(sum(down), 0), coalesce(sum(NOT down), 0) "  # noqa: S608
            f"FROM store_health INDEXED BY store_health_troubled WHERE {_TROUBLED}",
            (),
        )
        rows = self._rows(
            f"{SELECT_HEALTH} INDEXED BY store_health_troubled WHERE {_TROUBLED} "
            "ORDER BY store, platform LIMIT ?",
            (limit,),
        )
        stores = [ROWS.health_from_row(r) for r in rows]
        return Troubled(down=down, failing=failing, stores=stores)
