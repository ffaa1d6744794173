"""The SQLite store's group commit and trigger-kept outbox counts.

Visibility is read through a second connection, as another process (the CLI, a crash test)
would see the file. A `commit_delay` of an hour keeps a group open for as long as a test
needs, so nothing here depends on timing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bulkwatch.store.base import OutboxRow, PollWrite
from bulkwatch.store.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.store_support import (
    DEAD,
    DELIVERED,
    LAZZA,
    LINE,
    PENDING,
    T0,
    event_for,
    record,
    snap,
    tracked,
)

HOUR = 3600.0


def committed(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(sql))


def committed_tasks(path: Path) -> set[str]:
    return {str(row[0]) for row in committed(path, "SELECT task_id FROM tasks")}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def grouped(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path, commit_delay=HOUR)
    await s.open()
    yield s
    await s.close()


async def test_a_write_after_a_quiet_spell_commits_at_once(
    grouped: SqliteStore, db_path: Path
) -> None:
    await record(grouped, LINE, [tracked(snap("a"))])
    assert committed_tasks(db_path) == {"a"}


async def test_writes_close_together_share_one_commit(grouped: SqliteStore, db_path: Path) -> None:
    await record(grouped, LINE, [tracked(snap("a"))])
    await record(grouped, LINE, [tracked(snap("b"))])
    await record(grouped, LINE, [tracked(snap("c"))])
    assert committed_tasks(db_path) == {"a"}  # b and c wait for the group's commit
    assert {t.task_id for t in await grouped.list_tasks()} == {"a", "b", "c"}
    grouped.flush()
    assert committed_tasks(db_path) == {"a", "b", "c"}


async def test_outbox_rows_are_committed_before_they_are_handed_out(
    grouped: SqliteStore, db_path: Path
) -> None:
    await record(grouped, LINE, [tracked(snap("a"))])
    task = tracked(snap("b"))
    await record(grouped, LINE, [task], [event_for(task)])
    assert committed(db_path, "SELECT count(*) FROM outbox") == [(0,)]
    due = await grouped.outbox.due_deliveries(T0 + timedelta(seconds=1), 10)
    assert len(due) == 2
    assert committed(db_path, "SELECT count(*) FROM outbox") == [(2,)]
    assert committed_tasks(db_path) == {"a", "b"}


async def test_close_commits_the_open_group(db_path: Path) -> None:
    store = SqliteStore(db_path, commit_delay=HOUR)
    await store.open()
    await record(store, LINE, [tracked(snap("a"))])
    await record(store, LINE, [tracked(snap("b"))])
    await store.close()
    assert committed_tasks(db_path) == {"a", "b"}


async def test_a_failing_write_leaves_the_rest_of_its_group_alone(
    grouped: SqliteStore, db_path: Path
) -> None:
    await record(grouped, LINE, [tracked(snap("a"))])
    await record(grouped, LINE, [tracked(snap("b"))])

    view = await grouped.load_view(LAZZA)
    broken = OutboxRow("e1", "hook", "bulkwatch.task.created", "lazza-main", None, T0)  # type: ignore[arg-type]

    with pytest.raises(sqlite3.IntegrityError):
        await grouped.save_poll(PollWrite(view.endpoint, view.health, outbox=[broken]))
    grouped.flush()
    assert committed_tasks(db_path) == {"a", "b"}
    assert committed(db_path, "SELECT store FROM endpoints") == [("line-main",)]


async def test_a_full_group_commits_without_waiting(db_path: Path) -> None:
    store = SqliteStore(db_path, commit_delay=HOUR, commit_batch=3)
    await store.open()
    try:
        for name in "abcd":
            await record(store, LINE, [tracked(snap(name))])
        # "a" alone after the quiet start, then b, c, d fill a group of three.
        assert committed_tasks(db_path) == {"a", "b", "c", "d"}
    finally:
        await store.close()


async def test_without_a_delay_every_write_commits_at_once(db_path: Path) -> None:
    store = SqliteStore(db_path, commit_delay=0)
    await store.open()
    try:
        await record(store, LINE, [tracked(snap("a"))])
        await record(store, LINE, [tracked(snap("b"))])
        assert committed_tasks(db_path) == {"a", "b"}
    finally:
        await store.close()


async def test_outbox_counts_follow_every_change_of_status(grouped: SqliteStore) -> None:
    tasks = [tracked(snap(name)) for name in "abc"]
    for task in tasks:
        await record(grouped, LINE, [task], [event_for(task)])
    assert await grouped.outbox.outbox_counts() == {("hook", PENDING): 3, ("slack", PENDING): 3}
    due = await grouped.outbox.due_deliveries(T0 + timedelta(seconds=1), 10)
    hooks = [d for d in due if d.notifier == "hook"]
    await grouped.outbox.mark_delivered(hooks[0].id, T0)
    await grouped.outbox.mark_dead(hooks[1].id, attempts=3, error="gone")
    await grouped.outbox.mark_retry(hooks[2].id, attempts=1, next_attempt_at=T0, error="busy")
    assert await grouped.outbox.outbox_counts() == {
        ("hook", DELIVERED): 1,
        ("hook", DEAD): 1,
        ("hook", PENDING): 1,
        ("slack", PENDING): 3,
    }
    assert await grouped.outbox.requeue_dead(T0) == 1
    assert await grouped.prune(T0 + timedelta(days=1)) == 1  # the delivered row
    assert await grouped.outbox.outbox_counts() == {("hook", PENDING): 2, ("slack", PENDING): 3}


async def test_upgrading_a_version_1_database_counts_its_outbox(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        MIGRATIONS[0](conn)
        conn.execute("PRAGMA user_version = 1")
        conn.executemany(
            "INSERT INTO outbox (event_id, notifier, event_type, store, body, status, attempts, "
            "created_at, next_attempt_at) VALUES (?, ?, 't', 's', x'7b7d', ?, 0, 'x', 'x')",
            [("e1", "hook", "pending"), ("e2", "hook", "delivered"), ("e1", "slack", "dead")],
        )
    store = SqliteStore(db_path)
    await store.open()
    try:
        assert committed(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert await store.outbox.outbox_counts() == {
            ("hook", PENDING): 1,
            ("hook", DELIVERED): 1,
            ("slack", DEAD): 1,
        }
    finally:
        await store.close()


async def test_an_unchanged_store_health_row_is_not_rewritten(
    grouped: SqliteStore, db_path: Path
) -> None:
    await record(grouped, LINE, [tracked(snap("a"))])
    with closing(sqlite3.connect(db_path)) as conn:
        # A value no write of bulkwatch would produce: it survives only if the row is left be.
        conn.execute("UPDATE store_health SET failing_endpoints = '[ ]'")
        conn.commit()
    view = await record(grouped, LINE, [tracked(snap("b"))])
    grouped.flush()
    assert view.health == replace(view.health, failing_endpoints=frozenset())
    assert committed(db_path, "SELECT failing_endpoints FROM store_health") == [("[ ]",)]
