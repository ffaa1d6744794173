"""The refreshed access tokens in SQLite: kept per store, replaced, committed at once."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from bulkwatch.store.base import StoredToken
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.clock import START


async def test_a_token_is_kept_per_store_replaced_and_durable_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", commit_delay=60.0)
    await store.open()
    try:
        assert await store.load_token("line-1") is None
        first = StoredToken("line-1", "tok-A", START + timedelta(hours=10), "seed-1", START)
        await store.save_token(first)
        # Committed before save_token returned, though writes may wait a minute to commit.
        with sqlite3.connect(tmp_path / "state.db") as other:
            assert other.execute("SELECT store, token FROM access_tokens").fetchall() == [
                ("line-1", "tok-A")
            ]
        later = START + timedelta(hours=9)
        second = StoredToken("line-1", "tok-B", None, "seed-1", later)
        await store.save_token(second)
        await store.save_token(StoredToken("line-2", "tok-C", START, "seed-2", START))
        assert await store.load_token("line-1") == second
        assert await store.load_token("line-2") is not None
        assert "tok-B" not in repr(second)
    finally:
        await store.close()
    reopened = SqliteStore(tmp_path / "state.db")
    await reopened.open()
    try:
        assert await reopened.load_token("line-1") == second
    finally:
        await reopened.close()
