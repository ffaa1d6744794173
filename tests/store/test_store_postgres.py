"""The PostgreSQL state store's own behaviour: its URL and secrets, the pool, connections the
server cuts, migrations, and the outbox counts folded by several processes. What every
backend promises is in test_store_contract.py. Skipped, saying so, without a PostgreSQL on
127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from bulkwatch.config import StateSettings
from bulkwatch.store.base import SchemaTooNewError, StateStore, StoreUnavailableError
from bulkwatch.store.factory import open_store, open_store_from_url
from bulkwatch.store.postgres.schema import MIGRATIONS, NoSchemaError, migrate
from bulkwatch.store.postgres.store import PostgresStore
from helpers.pg_support import SERVER_URL, fresh_schema, require_postgres, run_sql, with_search_path
from helpers.store_support import (
    DELIVERED,
    LINE,
    PENDING,
    T0,
    PostgresBackend,
    event_for,
    record,
    snap,
    tracked,
)


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    async with fresh_schema() as (url, schema):
        yield PostgresBackend(url, schema)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_postgresql_urls_build_a_postgres_store_with_the_pool_size_of_the_settings(
    scheme: str,
) -> None:
    url = f"{scheme}://bw:hunter2@db.example:5433/bulkwatch?search_path=bw"
    store = open_store(StateSettings(url=url, pool_size=7))
    assert isinstance(store, PostgresStore)
    assert (store.url, store.pool_size) == (url, 7)
    assert "hunter2" not in repr(store)


async def test_a_server_that_does_not_answer_is_named_without_the_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    store = open_store_from_url("postgresql://bw:hunter2@127.0.0.1:1/bulkwatch")
    with pytest.raises(StoreUnavailableError) as caught:
        await store.open()
    message = str(caught.value)
    assert "cannot connect to PostgresStore('postgresql://bw:***@127.0.0.1:1/bulkwatch')" in (
        message
    )
    assert "hunter2" not in message
    assert caught.value.__cause__ is None  # the driver's exception, which may quote the URL
    assert caught.value.__suppress_context__
    with pytest.raises(StoreUnavailableError, match="not open"):
        await store.ping()


async def test_a_role_the_server_refuses_is_reported_without_the_password() -> None:
    require_postgres()
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    url = SERVER_URL.replace("://postgres@", f"://{role}:hunter2@", 1)
    if url == SERVER_URL:
        pytest.skip("BULKWATCH_TEST_POSTGRES_URL does not connect as postgres@")
    store = open_store_from_url(url)
    with pytest.raises(StoreUnavailableError, match=f'role "{role}" does not exist') as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)


async def test_a_search_path_naming_no_schema_is_a_clear_error(backend: PostgresBackend) -> None:
    store = open_store_from_url(with_search_path(SERVER_URL, f"missing_{uuid.uuid4().hex[:8]}"))
    with pytest.raises(NoSchemaError, match=r"CREATE SCHEMA"):
        await store.open()


async def test_the_pool_opens_at_most_pool_size_connections_and_uses_them(
    backend: PostgresBackend,
) -> None:
    name = f"bw_pool_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(backend.url + f"&application_name={name}", pool_size=3)
    await store.open()
    seen: list[int] = []

    async def count() -> None:
        rows = await run_sql(
            backend.url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        )
        seen.append(int(rows[0][0]))

    async def slow_read() -> None:
        async with store._connections().acquire() as conn:
            await conn.execute("SELECT pg_sleep(0.2)")

    try:
        reads = [asyncio.create_task(slow_read()) for _ in range(10)]
        await asyncio.sleep(0.1)
        await count()
        await asyncio.gather(*reads)
    finally:
        await store.close()
    assert seen == [3]


async def test_connections_cut_by_the_server_are_replaced(backend: PostgresBackend) -> None:
    name = f"bw_cut_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(backend.url + f"&application_name={name}", pool_size=2)
    await store.open()
    try:
        await record(store, LINE, [tracked(snap("a"))])
        await run_sql(
            backend.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            name,
        )
        await asyncio.sleep(0.1)  # the client sees its sockets close
        outcomes = []
        for _ in range(3):
            try:
                await store.ping()
                outcomes.append("ok")
            except StoreUnavailableError as exc:
                outcomes.append(str(exc))
        # A call may fail on a connection cut under it; the pool then opens a new one.
        assert outcomes[-1] == "ok", outcomes
        await record(store, LINE, [tracked(snap("b"))])
        assert [t.task_id for t in await store.list_tasks()] == ["a", "b"]
    finally:
        await store.close()


async def test_a_failing_migration_leaves_the_schema_as_it_was(backend: PostgresBackend) -> None:
    store = await backend.open()
    await store.close()
    broken = (*MIGRATIONS, ("ALTER TABLE tasks ADD COLUMN note text", "SELECT 1/0"))
    conn = await asyncpg.connect(backend.url)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn, broken)
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'tasks' AND column_name = 'note'",
            backend.schema,
        )
        assert columns == []
        assert await backend.stored_version() == len(MIGRATIONS)
        added = (*MIGRATIONS, ("ALTER TABLE tasks ADD COLUMN note text",))
        assert await migrate(conn, added) == len(MIGRATIONS)
        assert await backend.stored_version() == len(MIGRATIONS) + 1
        with pytest.raises(SchemaTooNewError, match="upgrade bulkwatch"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_outbox_counts_stay_exact_while_several_stores_count_at_once(
    backend: PostgresBackend,
) -> None:
    stores = [await backend.open() for _ in range(3)]
    try:

        async def write_and_count(i: int, store: StateStore) -> None:
            for n in range(10):
                task = tracked(snap(f"s{i}-t{n}"))
                await record(store, LINE, [task], [event_for(task)], route=lambda e: ["hook"])
                await store.outbox.outbox_counts()

        await asyncio.gather(*(write_and_count(i, s) for i, s in enumerate(stores)))
        due = await stores[1].outbox.due_deliveries(T0 + timedelta(seconds=1), 100)
        assert len(due) == 30
        await asyncio.gather(*(stores[1].outbox.mark_delivered(d.id, T0) for d in due[:12]))
        await stores[1].outbox.commit()  # the outcomes reach the other stores' readers
        counts = await asyncio.gather(*(s.outbox.outbox_counts() for s in stores))
        assert counts == [{("hook", PENDING): 18, ("hook", DELIVERED): 12}] * 3
        # Every change was folded into the totals, or is still waiting to be: nothing twice.
        await stores[2].outbox.outbox_counts()
        left = await run_sql(backend.url, "SELECT count(*) FROM outbox_count_changes")
        assert left[0][0] == 0
    finally:
        for store in stores:
            await store.close()
