"""SQLite commits a refreshed token at once, not with the next group of writes."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from bulkwatch.store.base import StoredToken
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.clock import START


async def test_a_token_is_committed_before_save_token_returns(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", commit_delay=60.0)
    await store.open()
    try:
        token = StoredToken("line-1", "tok-A", START + timedelta(hours=10), "seed-1", START)
        await store.save_token(token)
        with sqlite3.connect(tmp_path / "state.db") as other:
            rows = other.execute("SELECT store, token FROM access_tokens").fetchall()
        other.close()
        assert rows == [("line-1", "tok-A")]
    finally:
        await store.close()
