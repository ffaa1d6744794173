"""The SQLite store's status reads walk an index in page order, never the table and never a
sort, whatever the filters (what they return is the contract, in
test_store_contract_reads.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.store.base import TaskCursor, TaskQuery
from bulkwatch.store.sqlite.reads import _task_sql
from bulkwatch.store.sqlite.schema import migrate
from helpers.store_support import T0

FILTERS = [
    {},
    {"store": "s"},
    {"status": TaskStatus.FAILED},
    {"platform": Platform.SHOPLINE, "since": T0},
    {"store": "s", "status": TaskStatus.FAILED, "platform": Platform.SHOPLAZZA},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_every_task_query_walks_an_index_in_order(
    tmp_path: Path, filters: dict[str, object]
) -> None:
    conn = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    migrate(conn)
    after = TaskCursor(T0, "s", Platform.SHOPLINE, "t")
    sql, params = _task_sql(TaskQuery(limit=5, after=after, **filters))  # type: ignore[arg-type]
    plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    conn.close()
    assert "USING INDEX tasks_recent" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index order is the page order
