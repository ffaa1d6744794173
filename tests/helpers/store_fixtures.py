"""The state-store backends for the contract tests (test_store_contract*.py): every test
that asks for `backend` or `store` runs once on SQLite (a real file) and once on PostgreSQL
(the local server, in a schema of its own, dropped afterwards; skipped, saying so, when
PostgreSQL does not answer). Registered for the whole suite by conftest.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bulkwatch.store.base import StateStore
from helpers.pg_support import fresh_schema
from helpers.store_support import Backend, PostgresBackend, SqliteBackend


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "var" / "lib" / "bulkwatch.db")
        return
    async with fresh_schema() as (url, schema):
        yield PostgresBackend(url, schema)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    s = await backend.open()
    yield s
    await s.close()


@pytest.fixture
def local_time_east_of_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC+8: a naive datetime taken for local time shows."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
