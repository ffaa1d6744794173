"""The state-store contract, on every backend (`backend` and `store` come from
store_fixtures.py): opening, migrating, closing, and one transaction per poll. The poll state
is in test_store_contract_state.py, the outbox in test_store_contract_outbox.py; what only one
backend does is beside it (test_store_sqlite*.py, test_store_postgres.py).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest

from bulkwatch.model import EndpointState, Platform, StoreHealth
from bulkwatch.store.base import OutboxRow, PollWrite, SchemaTooNewError, StateStore
from bulkwatch.store.factory import open_store_from_url
from helpers.store_support import (
    LINE,
    PENDING,
    T0,
    Backend,
    endpoint_state,
    event_for,
    record,
    snap,
    tracked,
)


async def test_reopening_keeps_schema_and_close_is_idempotent(backend: Backend) -> None:
    first = await backend.open()
    assert await backend.stored_version() == backend.schema_version
    await first.close()
    await first.close()
    second = await backend.open()
    assert await backend.stored_version() == backend.schema_version
    await second.close()


async def test_a_database_from_a_newer_version_is_refused(backend: Backend) -> None:
    written = await backend.open()
    await written.close()
    await backend.set_stored_version(backend.schema_version + 1)
    newer = open_store_from_url(backend.url)
    with pytest.raises(SchemaTooNewError, match="upgrade bulkwatch"):
        await newer.open()
    with pytest.raises(RuntimeError, match="not open"):
        await newer.list_health()
    assert await backend.stored_version() == backend.schema_version + 1


async def test_calls_before_open_raise_a_clear_error(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="await open"):
        await open_store_from_url(backend.url).outbox.due_deliveries(T0, 10)


def _start_and_stop(url: str, ready: threading.Barrier) -> int:
    """One process's start on its own thread and event loop: open (migrating), read, close."""

    async def main() -> int:
        store = open_store_from_url(url)
        ready.wait(10)  # every starter at the line, then all at once
        await store.open()
        try:
            return len(await store.list_health())
        finally:
            await store.close()

    return asyncio.run(main())


async def test_several_processes_starting_at_once_on_a_new_database_all_start(
    backend: Backend,
) -> None:
    starters = 6
    ready = threading.Barrier(starters)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(starters) as threads:
        results = await asyncio.gather(
            *(
                loop.run_in_executor(threads, _start_and_stop, backend.url, ready)
                for _ in range(starters)
            )
        )
    assert results == [0] * starters
    assert await backend.stored_version() == backend.schema_version


async def test_a_write_that_fails_part_way_leaves_the_database_unchanged(
    backend: Backend, store: StateStore
) -> None:
    await record(store, LINE, [tracked(snap("a"))], [event_for(tracked(snap("a")))])
    before = await backend.dump(store)
    task = tracked(snap("b"))
    event = event_for(task)
    view = await store.load_view(LINE)
    # The state rows are written first; the outbox row breaks NOT NULL and fails the write.
    broken = OutboxRow(event.id, "hook", event.type, event.store, None, event.time)  # type: ignore[arg-type]
    write = PollWrite(replace(view.endpoint, consecutive_failures=7), view.health, [task], [broken])

    with pytest.raises(backend.integrity_error):
        await store.save_poll(write)
    assert await backend.dump(store) == before
    await record(store, LINE, [tracked(snap("c"))])  # the store is still usable
    assert [t.task_id for t in await store.list_tasks()] == ["a", "c"]


async def test_two_stores_on_one_database_see_each_other_and_share_event_ids(
    backend: Backend,
) -> None:
    a, b = await backend.open(), await backend.open()
    try:
        task = tracked(snap("a"))
        await record(a, LINE, [task], [event_for(task)])
        # A replica saw the same change.
        view = await record(b, LINE, [task], [event_for(task)], task_ids=["a"])
        assert view.tasks == {"a": task}
        assert await b.outbox.outbox_counts() == {("hook", PENDING): 1, ("slack", PENDING): 1}
        assert await a.outbox.outbox_counts() == {("hook", PENDING): 1, ("slack", PENDING): 1}
    finally:
        await a.close()
        await b.close()


async def test_everything_survives_close_and_reopen(backend: Backend, store: StateStore) -> None:
    task = tracked(snap("a"))
    health = StoreHealth("line-main", Platform.SHOPLINE, True, 3, frozenset({"QUERY", "MUTATION"}))
    await record(store, LINE, [task], [event_for(task)], health=health)
    due = await store.outbox.due_deliveries(T0, 10)
    await store.close()

    again = await backend.open()
    try:
        assert await again.list_tasks() == [task]
        assert await again.list_health() == [health]
        assert await endpoint_state(again, LINE) == EndpointState(
            LINE, baselined=True, last_success_at=T0
        )
        assert await again.outbox.due_deliveries(T0, 10) == due
    finally:
        await again.close()


@pytest.mark.usefixtures("local_time_east_of_utc")
async def test_naive_datetimes_are_utc_whatever_the_local_time_zone(store: StateStore) -> None:
    naive = T0.replace(tzinfo=None)
    task = tracked(snap("a", at=naive))
    event = event_for(task, naive)
    await record(store, LINE, [task], [event], route=lambda e: ["hook"])
    (back,) = await store.list_tasks()
    assert back.snapshot.observed_at == T0
    assert back.snapshot.observed_at.tzinfo is not None
    (row,) = await store.outbox.due_deliveries(naive, 10)
    assert row.next_attempt_at == T0
    assert await store.outbox.due_deliveries(naive - timedelta(microseconds=1), 10) == []
