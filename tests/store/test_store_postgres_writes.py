"""The PostgreSQL store's writes that fail while its reads work (readiness says so until a
write succeeds again), delivery outcomes written together at commit, and the status reads
served by an index in page order. Skipped, saying so, without a PostgreSQL on
127.0.0.1:5432."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.store.base import (
    StateStore,
    StoreUnavailableError,
    StoreWriteError,
    TaskCursor,
    TaskQuery,
)
from bulkwatch.store.postgres.reads import task_sql
from helpers.pg_support import fresh_schema, run_sql
from helpers.store_support import (
    DEAD,
    DELIVERED,
    LINE,
    PENDING,
    T0,
    PostgresBackend,
    pending_rows,
    record,
    snap,
    tracked,
)

# A write refused by the server, as a full disk or a read-only server would refuse it.
_REFUSE = """
    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$
"""


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    async with fresh_schema() as (url, schema):
        yield PostgresBackend(url, schema)


@pytest.fixture
async def store(backend: PostgresBackend) -> AsyncIterator[StateStore]:
    s = await backend.open()
    await run_sql(backend.url, _REFUSE)
    yield s
    await s.close()


async def refuse(backend: PostgresBackend, table: str, op: str) -> None:
    await run_sql(
        backend.url,
        f"CREATE TRIGGER refuse BEFORE {op} ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()",
    )


async def allow(backend: PostgresBackend, table: str) -> None:
    await run_sql(backend.url, f"DROP TRIGGER refuse ON {table}")


async def test_readiness_reports_failing_writes_until_one_succeeds(
    backend: PostgresBackend, store: StateStore
) -> None:
    await record(store, LINE, [tracked(snap("a"))])
    await store.ping()
    await refuse(backend, "tasks", "INSERT OR UPDATE")
    with pytest.raises(asyncpg.RaiseError):
        await record(store, LINE, [tracked(snap("b"))])
    with pytest.raises(StoreWriteError, match="No space left on device") as info:
        await store.ping()
    assert "PostgresStore(" in str(info.value)  # names the store
    assert [t.task_id for t in await store.list_tasks()] == ["a"]  # reads still work
    await allow(backend, "tasks")
    await record(store, LINE, [tracked(snap("b"))])
    await store.ping()


async def test_outcomes_are_written_together_at_commit_and_kept_when_it_fails(
    backend: PostgresBackend, store: StateStore
) -> None:
    ids = await pending_rows(store, 3)
    other = await backend.open()
    try:
        await store.outbox.mark_delivered(ids[0], T0)
        await store.outbox.mark_dead(ids[1], attempts=5, error="HTTP 410")
        assert [d.id for d in await other.outbox.list_deliveries(PENDING)] == ids  # not yet
        await store.outbox.commit()
        assert [d.id for d in await other.outbox.list_deliveries(DELIVERED)] == ids[:1]
        (dead,) = await other.outbox.list_deliveries(DEAD)
        assert (dead.id, dead.attempts, dead.last_error) == (ids[1], 5, "HTTP 410")

        await refuse(backend, "outbox", "UPDATE")
        await store.outbox.mark_delivered(ids[2], T0)
        with pytest.raises(StoreUnavailableError, match="cannot record 1 delivery outcomes"):
            await store.outbox.commit()
        with pytest.raises(StoreWriteError):
            await store.ping()
        await allow(backend, "outbox")
        await store.outbox.commit()  # the failed outcomes were dropped: the caller marks again
        assert [d.id for d in await other.outbox.list_deliveries(PENDING)] == ids[2:]
        await store.outbox.mark_delivered(ids[2], T0)
        await store.outbox.commit()
        await store.ping()
        assert len(await other.outbox.list_deliveries(DELIVERED)) == 2
    finally:
        await other.close()


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"store": "s"},
        {"status": TaskStatus.FAILED},
        {"platform": Platform.SHOPLINE, "since": T0},
        {"store": "s", "status": TaskStatus.FAILED, "platform": Platform.SHOPLAZZA},
    ],
)
async def test_every_task_query_can_walk_an_index_in_page_order(
    backend: PostgresBackend, filters: dict[str, object]
) -> None:
    await (await backend.open()).close()  # migrated
    after = TaskCursor(T0, "s", Platform.SHOPLINE, "t")
    sql, params = task_sql(TaskQuery(limit=5, after=after, **filters))  # type: ignore[arg-type]
    conn = await asyncpg.connect(backend.url)
    try:
        # An empty table would be read whole; forbid that and sorting, and see what is left.
        await conn.execute("SET enable_seqscan = off; SET enable_sort = off")
        rows = await conn.fetch("EXPLAIN " + sql, *params)
    finally:
        await conn.close()
    plan = " | ".join(r[0] for r in rows)
    assert "Index Scan Backward using tasks_recent" in plan, plan
    assert "Sort" not in plan, plan  # the index order is the page order
