"""The SQLite state store's own behaviour on real files: WAL, pragmas, a second writer on the
same file, and its URLs. What every backend promises is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from bulkwatch.model import EndpointState
from bulkwatch.store.base import PollWrite, StateStore
from bulkwatch.store.factory import open_store_from_url
from bulkwatch.store.sqlite.migrations import SCHEMA_VERSION
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.store_support import LAZZA, LINE, endpoint_state, record, snap, tracked


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "bulkwatch.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    await s.open()
    yield s
    await s.close()


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_sqlite_store_satisfies_the_state_store_protocol(db_path: Path) -> None:
    store: StateStore = SqliteStore(db_path)  # mypy checks the structure
    assert isinstance(store, SqliteStore)


async def test_open_creates_directories_enables_wal_and_sets_pragmas(
    store: SqliteStore, db_path: Path
) -> None:
    assert {"bulkwatch.db", "bulkwatch.db-wal"} <= files_in(db_path.parent)
    conn = store._db()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    other = sqlite3.connect(db_path)
    try:  # WAL is a property of the file, not only of our connection
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        other.close()


def _open_at_once(path: Path, starters: int) -> list[str]:
    """`starters` stores opening the same new file at the same moment, each on its own thread
    (as processes would); the errors they raised."""
    ready = threading.Barrier(starters)

    def start() -> None:
        async def main() -> None:
            store = SqliteStore(path)
            ready.wait(10)
            await store.open()
            await store.close()

        asyncio.run(main())

    with ThreadPoolExecutor(starters) as threads:
        futures = [threads.submit(start) for _ in range(starters)]
    return [repr(f.exception()) for f in futures if f.exception() is not None]


def test_processes_opening_a_new_file_together_all_switch_it_to_wal(tmp_path: Path) -> None:
    # SQLite may refuse the switch to WAL at once, busy_timeout or not, while another
    # connection holds the new file; a round fails that way only now and then, hence many.
    for round_ in range(50):
        path = tmp_path / f"round{round_}.db"
        assert _open_at_once(path, 4) == []
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _hold_write_lock(path: Path, locked: threading.Event, release: Callable[[], None]) -> None:
    """Another writer on the same file (as a second process would be), inside a transaction."""

    async def main() -> None:
        other = SqliteStore(path)
        await other.open()
        try:
            view = await other.load_view(LAZZA)
            conn = other._db()
            conn.execute("BEGIN IMMEDIATE")  # the write lock, held while `release` runs
            locked.set()
            release()
            conn.execute("COMMIT")
            await other.save_poll(PollWrite(replace(view.endpoint, baselined=True)))
            other.flush()
        finally:
            await other.close()

    asyncio.run(main())


async def test_a_concurrent_writer_is_waited_for_within_busy_timeout(
    store: SqliteStore, db_path: Path
) -> None:
    locked = threading.Event()
    # The other writer's transaction lasts a while; the store must wait, not fail.
    writer = threading.Thread(
        target=_hold_write_lock, args=(db_path, locked, lambda: time.sleep(0.3))
    )
    writer.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        await record(store, LINE, [tracked(snap("a"))])
        assert time.monotonic() - started > 0.1
    finally:
        writer.join(10)
    assert (await endpoint_state(store, LAZZA)) is not None
    assert [t.task_id for t in await store.list_tasks()] == ["a"]


async def test_a_writer_holding_the_lock_past_busy_timeout_fails_the_poll_cleanly(
    db_path: Path,
) -> None:
    impatient = SqliteStore(db_path, busy_timeout=0.05)
    await impatient.open()
    locked, release = threading.Event(), threading.Event()
    writer = threading.Thread(
        target=_hold_write_lock, args=(db_path, locked, lambda: release.wait(10))
    )
    writer.start()
    try:
        assert locked.wait(10)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await record(impatient, LINE, [tracked(snap("a"))])
        assert not impatient._db().in_transaction
    finally:
        release.set()
        writer.join(10)
    await record(impatient, LINE, [tracked(snap("a"))])  # usable once the lock is gone
    assert [t.task_id for t in await impatient.list_tasks()] == ["a"]
    await impatient.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///bulkwatch.db", "bulkwatch.db"),
        ("sqlite:///state/bulkwatch.db", "state/bulkwatch.db"),
        ("sqlite:////var/lib/bulkwatch/state.db", "/var/lib/bulkwatch/state.db"),
        ("SQLite:///x.db", "x.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_relative_absolute_or_memory_databases(url: str, path: str) -> None:
    store = open_store_from_url(url)
    assert isinstance(store, SqliteStore)
    assert store.path == path


async def test_a_memory_store_from_a_url_works(tmp_path: Path) -> None:
    store = open_store_from_url("sqlite:///:memory:")
    await store.open()
    try:
        task = tracked(snap("a"))
        await store.save_poll(PollWrite(EndpointState(LINE), upserts=[task]))
        assert await store.list_tasks() == [task]
    finally:
        await store.close()
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://bw:hunter2@db/bulkwatch", "unsupported state URL scheme 'mysql'"),
        ("bw:hunter2@db", r"unsupported state URL scheme \(none\)"),
        ("sqlite://relative.db", "three slashes"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///state/", "names no database file"),
    ],
)
def test_unusable_state_urls_are_refused_without_echoing_secrets(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_store_from_url(url)
    assert "hunter2" not in str(caught.value)
