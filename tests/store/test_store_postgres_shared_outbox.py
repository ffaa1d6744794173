"""The PostgreSQL outbox shared by replicas: two stores on one schema (each its own pool and
owner, as two processes) never get the same row while a claim holds; a claim that runs out
(by the database's clock) hands the row to the other under the same event id, and the first
one's late outcome is dropped; a subject stays in order across replicas; `next_due_at` says
when a claim runs out; requeueing, giving back and closing free claims; the schema moves from
v5 to v6 with its rows; the due query walks its index. Skipped, saying so, without a
PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from bulkwatch.model import Event, TaskStatus
from bulkwatch.store.postgres.claims import DUE, NEXT_DUE
from bulkwatch.store.postgres.schema import MIGRATIONS, migrate
from bulkwatch.store.postgres.store import PostgresStore
from helpers.pg_support import fresh_schema, run_sql
from helpers.store_support import (
    DEAD,
    DELIVERED,
    LINE,
    PENDING,
    T0,
    PostgresBackend,
    encode,
    event_for,
    pending_rows,
    record,
    snap,
    tracked,
)

LATER = T0 + timedelta(days=1)  # every row of these tests is due by then


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    async with fresh_schema() as (url, schema):
        yield PostgresBackend(url, schema)


@pytest.fixture
async def replicas(backend: PostgresBackend) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one schema, as two replicas: "replica-a" and "replica-b"."""
    a = PostgresStore(backend.url, owner="replica-a")
    b = PostgresStore(backend.url, owner="replica-b")
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def claims(backend: PostgresBackend) -> dict[int, tuple[str | None, datetime | None]]:
    """Row id -> (claimed_by, claimed_until), as another connection sees them."""
    rows = await run_sql(backend.url, "SELECT id, claimed_by, claimed_until FROM outbox")
    return {r[0]: (r[1], r[2]) for r in rows}


async def expire_claims(backend: PostgresBackend) -> None:
    """Every claim ran out a second ago, as if its replica died in flight."""
    await run_sql(
        backend.url,
        "UPDATE outbox SET claimed_until = now() - interval '1 second' "
        "WHERE claimed_until IS NOT NULL",
    )


def lifecycle(task_id: str) -> list[Event]:
    """Three events of one task (one subject), one second apart."""
    steps = (TaskStatus.CREATED, TaskStatus.RUNNING, TaskStatus.COMPLETED)
    return [
        event_for(tracked(snap(task_id, s, at=T0 + timedelta(seconds=i)), seq=i), T0)
        for i, s in enumerate(steps)
    ]


async def test_replicas_asking_at_once_never_get_the_same_row(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    ids = await pending_rows(a, 150)
    handed: list[int] = []
    for _ in range(20):
        # Two calls per replica at once, each on a connection of its own.
        rounds = await asyncio.gather(*(s.outbox.due_deliveries(LATER, 5) for s in (a, b, a, b)))
        handed += [d.id for due in rounds for d in due]
    assert len(handed) == len(set(handed)) == 150  # every row once, while the claims hold
    assert sorted(handed) == ids
    assert await a.outbox.due_deliveries(LATER, 10) == []
    assert await b.outbox.due_deliveries(LATER, 10) == []


async def test_a_claim_that_runs_out_hands_the_row_to_another_replica_under_the_same_id(
    backend: PostgresBackend,
) -> None:
    a = PostgresStore(backend.url, owner="replica-a", claim_timeout=1.0)
    b = PostgresStore(backend.url, owner="replica-b")
    await a.open()
    await b.open()
    try:
        await pending_rows(a, 1)
        (first,) = await a.outbox.due_deliveries(LATER, 10)
        assert await b.outbox.due_deliveries(LATER, 10) == []  # a's claim holds
        ((_, until),) = (await claims(backend)).values()
        assert until is not None
        # Timed by the database's clock: wait until it has passed a's claim.
        (left,) = await run_sql(backend.url, "SELECT extract(epoch FROM $1 - now())", until)
        await asyncio.sleep(max(0.0, float(left[0])) + 0.05)

        (again,) = await b.outbox.due_deliveries(LATER, 10)
        assert (again.id, again.event_id, again.body) == (first.id, first.event_id, first.body)
        await b.outbox.mark_retry(again.id, attempts=1, next_attempt_at=LATER, error="HTTP 503")
        assert await b.outbox.commit() == 0

        # a's attempt ends late: its outcome is dropped, b's stands.
        await a.outbox.mark_delivered(first.id, T0)
        assert await a.outbox.commit() == 1
        assert await a.outbox.commit() == 0  # counted once
        (row,) = await b.outbox.list_deliveries(PENDING)
        assert (row.attempts, row.last_error, row.next_attempt_at) == (1, "HTTP 503", LATER)
        assert (await claims(backend))[row.id] == ("replica-b", None)
    finally:
        await a.close()
        await b.close()


async def test_a_late_outcome_is_recorded_while_nobody_took_the_row(
    backend: PostgresBackend, replicas: tuple[PostgresStore, PostgresStore]
) -> None:
    a, _ = replicas
    await pending_rows(a, 1)
    (row,) = await a.outbox.due_deliveries(LATER, 10)
    await expire_claims(backend)
    await a.outbox.mark_delivered(row.id, T0)
    assert await a.outbox.commit() == 0
    (done,) = await a.outbox.list_deliveries(DELIVERED)
    assert done.id == row.id


async def test_a_subject_stays_in_order_across_replicas(
    backend: PostgresBackend, replicas: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = replicas
    events = lifecycle("t")
    await record(a, LINE, events=events, route=lambda e: ["hook"])
    (first,) = await a.outbox.due_deliveries(LATER, 10)
    assert first.event_id == events[0].id
    assert await b.outbox.due_deliveries(LATER, 10) == []  # the second waits behind a's first

    await expire_claims(backend)
    (again,) = await b.outbox.due_deliveries(LATER, 10)
    assert again.event_id == events[0].id  # the first again, never the second
    await a.outbox.mark_delivered(first.id, T0)
    assert await a.outbox.commit() == 1
    assert await a.outbox.due_deliveries(LATER, 10) == []  # still pending, claimed by b

    await b.outbox.mark_delivered(again.id, T0)
    assert await b.outbox.commit() == 0
    (second,) = await a.outbox.due_deliveries(LATER, 10)
    assert second.event_id == events[1].id


async def test_next_due_at_says_when_a_claim_runs_out(
    backend: PostgresBackend, replicas: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = replicas
    claimed, waiting = await pending_rows(a, 2)
    # Due times around the database's clock, so that no claim expiry depends on today's date.
    set_due = "UPDATE outbox SET next_attempt_at = now() + $2 * interval '1 second' WHERE id = $1"
    await run_sql(backend.url, set_due, claimed, -60)
    await run_sql(backend.url, set_due, waiting, 3600)
    ((now,),) = await run_sql(backend.url, "SELECT now()")
    (row,) = await a.outbox.due_deliveries(now, 10)
    assert row.id == claimed
    _, until = (await claims(backend))[claimed]
    assert until is not None
    assert await b.outbox.next_due_at() == until  # an idle replica wakes when it runs out
    assert await a.outbox.next_due_at() == until  # a's own claim counts as any other

    await run_sql(
        backend.url,
        "UPDATE outbox SET claimed_until = now() + interval '2 hours' WHERE id = $1",
        claimed,
    )
    (waiting_row,) = [d for d in await b.outbox.list_deliveries(PENDING) if d.id == waiting]
    assert await b.outbox.next_due_at() == waiting_row.next_attempt_at  # sooner than the claim

    await expire_claims(backend)
    assert await b.outbox.next_due_at() == row.next_attempt_at  # free, due a minute ago


async def test_requeueing_giving_back_and_closing_free_claims(
    backend: PostgresBackend, replicas: tuple[PostgresStore, PostgresStore]
) -> None:
    a, b = replicas
    ids = await pending_rows(a, 4)
    assert [d.id for d in await a.outbox.due_deliveries(LATER, 10)] == ids

    # A dead row still claimed (as an outbox written otherwise could hold): requeued, it
    # goes out at once, whoever asks.
    await run_sql(backend.url, "UPDATE outbox SET status = 'dead' WHERE id = $1", ids[0])
    assert await b.outbox.requeue_dead(LATER) == 1
    assert [d.id for d in await b.outbox.due_deliveries(LATER, 10)] == ids[:1]

    await a.outbox.release(ids[1:3])  # handed out, not attempted: free at once
    await a.outbox.release(ids[:1])  # b's claim now: left alone
    assert [d.id for d in await b.outbox.due_deliveries(LATER, 10)] == ids[1:3]
    assert (await claims(backend))[ids[0]][0] == "replica-b"

    await a.close()  # a stops: what it still claims goes to b at once
    assert [d.id for d in await b.outbox.due_deliveries(LATER, 10)] == ids[3:]


async def test_a_dead_mark_then_requeue_leaves_the_row_free(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = replicas
    (row_id,) = await pending_rows(a, 1)
    (row,) = await a.outbox.due_deliveries(LATER, 10)
    await a.outbox.mark_dead(row.id, attempts=20, error="gave up")
    assert await a.outbox.commit() == 0
    assert [d.id for d in await b.outbox.list_deliveries(DEAD)] == [row_id]
    assert await b.outbox.requeue_dead(LATER) == 1
    assert [d.id for d in await b.outbox.due_deliveries(LATER, 10)] == [row_id]


async def test_schema_v5_with_rows_moves_to_v6_and_its_rows_are_handed_out(
    backend: PostgresBackend,
) -> None:
    events = lifecycle("t")
    conn = await asyncpg.connect(backend.url)
    try:
        await migrate(conn, MIGRATIONS[:5])
        insert = (
            "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
            "created_at, next_attempt_at, subject) VALUES ($1, 'hook', $2, $3, $4, $5, 0, $6, $6, "
            "$7)"
        )
        for event, status in zip(events, ("delivered", "pending", "pending"), strict=True):
            await conn.execute(
                insert, event.id, event.type, event.store, encode(event), status, T0, event.subject
            )
    finally:
        await conn.close()
    assert await backend.stored_version() == 5

    store = PostgresStore(backend.url, owner="replica-a")
    await store.open()
    try:
        assert await backend.stored_version() == len(MIGRATIONS) == 6
        assert set((await claims(backend)).values()) == {(None, None)}
        (due,) = await store.outbox.due_deliveries(LATER, 10)
        assert (due.event_id, due.body) == (events[1].id, encode(events[1]))
        assert (await claims(backend))[due.id][0] == "replica-a"
        await store.outbox.mark_delivered(due.id, T0)
        assert await store.outbox.commit() == 0
        assert [d.event_id for d in await store.outbox.due_deliveries(LATER, 10)] == [events[2].id]
    finally:
        await store.close()


async def test_the_due_and_next_due_queries_walk_their_indexes_on_a_large_backlog(
    backend: PostgresBackend,
) -> None:
    await (await backend.open()).close()  # migrated
    conn = await asyncpg.connect(backend.url)
    try:
        # 100,000 pending rows (subjects of three), 200 of them in flight on another replica.
        await conn.execute(
            "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
            "created_at, next_attempt_at, subject) "
            "SELECT 'e' || i, 'hook', 't', 's', '{}', 'pending', 0, $1, "
            "$1::timestamptz + i * interval '1 ms', 'subject-' || (i / 3) "
            "FROM generate_series(1, 100000) i",
            T0,
        )
        await conn.execute(
            "UPDATE outbox SET claimed_by = 'other', claimed_until = now() + interval '5 min' "
            "WHERE id IN (SELECT id FROM outbox ORDER BY next_attempt_at, id LIMIT 200)"
        )
        await conn.execute("ANALYZE outbox")
        due = await conn.fetch("EXPLAIN " + DUE, LATER, 200, "me", 300.0)
        next_due = await conn.fetch("EXPLAIN " + NEXT_DUE)
    finally:
        await conn.close()
    due_plan = " | ".join(r[0] for r in due)
    next_plan = " | ".join(r[0] for r in next_due)
    assert "Index Scan using outbox_due" in due_plan, due_plan  # in order, no sort of the lot
    for plan, indexes in (
        (due_plan, ["outbox_due"]),
        (next_plan, ["outbox_due", "outbox_claimed"]),
    ):
        for index in indexes:
            assert f"using {index}" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan, plan
