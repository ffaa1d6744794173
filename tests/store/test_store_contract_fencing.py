"""Lease holders, takeovers and fenced poll writes (`PollWrite.owner`).

On every backend (`store` from store_fixtures.py): `holders` lists who holds which store, a
first claim takes nothing over, and a write fenced by the store's holder lands. On
PostgreSQL, between replicas (separate pools on one schema): a claim of another owner's
expired lease is a takeover; a write fenced by a replica that no longer holds the store is
refused with `LeaseLostError` and writes nothing; and a takeover waits for a fenced write in
progress. The SQLite store has one process, which owns every store: it ignores the owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bulkwatch.model import EndpointState
from bulkwatch.store.base import LeaseLostError, OutboxRow, PollWrite, StateStore
from bulkwatch.store.postgres.poll_sql import save_poll_args
from helpers.lease_support import age, claim, shared_schema
from helpers.pg_support import run_sql
from helpers.store_support import (
    LINE,
    PostgresBackend,
    encode,
    endpoint_state,
    event_for,
    snap,
    tracked,
)

TTL = timedelta(seconds=30)
STORES = [f"store-{i:03d}" for i in range(6)]


def _write(owner: str | None, failures: int = 1) -> PollWrite:
    """A poll write of `LINE` with a task, its event's outbox row and a note."""
    task = tracked(snap("t1"))
    event = event_for(task)
    row = OutboxRow(event.id, "hook", event.type, event.store, encode(event), event.time)
    endpoint = replace(EndpointState(LINE), consecutive_failures=failures, baselined=True)
    return PollWrite(endpoint, upserts=[task], outbox=[row], notes=[("n", "v")], owner=owner)


async def test_holders_name_each_held_store_and_its_owner(store: StateStore) -> None:
    leases = store.leases
    mine = await leases.take("replica-a", STORES[:2], 2, TTL)
    assert (mine.stores, mine.taken_over) == (STORES[:2], [])
    await claim(leases, "replica-b", STORES[2:3], 1, TTL)
    found = await leases.holders([*STORES[:4], "not-configured"])
    assert [(h.store, h.owner) for h in found] == [
        (STORES[0], "replica-a"),
        (STORES[1], "replica-a"),
        (STORES[2], "replica-b"),
    ]
    assert all(h.expires_at is None or h.expires_at > datetime.now(UTC) for h in found)
    await leases.release("replica-a")
    assert [h.store for h in await leases.holders(STORES)] == [STORES[2]]


async def test_a_write_fenced_by_the_stores_holder_lands(store: StateStore) -> None:
    await claim(store.leases, "replica-a", [LINE.store], 1, TTL)
    await store.save_poll(_write("replica-a"))
    stored = await endpoint_state(store, LINE)
    assert stored is not None
    assert stored.consecutive_failures == 1
    assert [t.task_id for t in await store.list_tasks(LINE.store)] == ["t1"]
    assert len(await store.outbox.recent_events(10)) == 1
    assert await store.list_notes(LINE.store) == [(LINE.store, LINE.endpoint, "n", "v")]


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[PostgresBackend, list[StateStore]]]:
    """Two stores on one fresh PostgreSQL schema, each with its own pool."""
    async with shared_schema(2) as opened:
        yield opened


async def test_a_claim_of_another_owners_expired_lease_is_a_takeover(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, (a, b) = replicas
    await claim(a.leases, "replica-a", STORES, 100, TTL)
    await a.leases.release("replica-a", STORES[:2])  # released: free, not taken over
    await age(backend.url, "replica-a", 31)
    taken = await b.leases.take("replica-b", STORES, 100, TTL)
    assert taken.stores == STORES
    assert taken.taken_over == STORES[2:]
    await age(backend.url, "replica-b", 31)
    again = await b.leases.take("replica-b", STORES, 100, TTL)  # its own expired leases
    assert (again.stores, again.taken_over) == (STORES, [])


async def _nothing_written(store: StateStore) -> None:
    assert await endpoint_state(store, LINE) is None
    assert await store.list_tasks() == []
    assert await store.outbox.recent_events(10) == []
    assert await store.list_notes() == []


async def test_a_write_after_the_lease_passed_to_another_replica_fails_and_writes_nothing(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, (a, b) = replicas
    with pytest.raises(LeaseLostError, match="replica-a no longer holds its lease"):
        await a.save_poll(_write("replica-a"))  # never held
    await claim(a.leases, "replica-a", [LINE.store], 1, TTL)
    await age(backend.url, "replica-a", 31)
    with pytest.raises(LeaseLostError):
        await a.save_poll(_write("replica-a"))  # expired, nobody took it yet
    assert await claim(b.leases, "replica-b", [LINE.store], 1, TTL) == [LINE.store]
    with pytest.raises(LeaseLostError) as raised:
        await a.save_poll(_write("replica-a"))  # taken over
    assert (raised.value.store, raised.value.owner) == (LINE.store, "replica-a")
    await _nothing_written(b)
    await a.ping()  # a refused write is no failing store
    await b.save_poll(_write("replica-b", failures=2))
    stored = await endpoint_state(a, LINE)
    assert stored is not None
    assert stored.consecutive_failures == 2


async def test_a_takeover_waits_for_a_fenced_write_in_progress(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, (_, b) = replicas
    short = timedelta(seconds=1)
    conn = await asyncpg.connect(backend.url)
    try:
        await run_sql(
            backend.url,
            "INSERT INTO leases VALUES ($1, 'replica-a', now() + $2::interval)",
            LINE.store,
            short,
        )
        transaction = conn.transaction()
        await transaction.start()
        sql, args = save_poll_args(_write("replica-a"))
        assert await conn.fetchval(sql, *args)  # written, not yet committed
        await asyncio.sleep(short.total_seconds() + 0.1)  # the lease expires meanwhile
        claim = asyncio.create_task(b.leases.take("replica-b", [LINE.store], 1, TTL))
        while not await run_sql(
            backend.url,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%INSERT INTO leases%'",
        ):
            assert not claim.done()
            await asyncio.sleep(0.02)
        await transaction.commit()
        taken = await claim
    finally:
        await conn.close()
    assert taken.taken_over == [LINE.store]  # after the write, which is whole
    assert [t.task_id for t in await b.list_tasks(LINE.store)] == ["t1"]
