"""The local PostgreSQL for tests: is it there, and a fresh schema per test, dropped after.

The server is `$BULKWATCH_TEST_POSTGRES_URL`, by default the local one on 127.0.0.1:5432
(database `test`, trust auth). When it does not answer, the tests that need it are skipped
with the reason, and the header of the test run says so.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

SERVER_URL = os.environ.get(
    "BULKWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_PROBE_TIMEOUT = 3.0


async def _probe() -> str | None:
    try:
        conn = await asyncpg.connect(SERVER_URL, timeout=_PROBE_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    return None


@functools.cache
def unavailable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it answers (asked once)."""
    # On a thread of its own: the probe must not touch the event loop of a running test.
    with ThreadPoolExecutor(1) as pool:
        problem = pool.submit(asyncio.run, _probe()).result()
    if problem is None:
        return None
    return f"PostgreSQL does not answer at {SERVER_URL} ({problem})"


SKIPPED = "the PostgreSQL store tests were skipped"


def require_postgres() -> None:
    """Skip the calling test, with the reason, when PostgreSQL is not there."""
    problem = unavailable()
    if problem is not None:
        pytest.skip(f"{problem}: {SKIPPED}")


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections put `schema` first on their search_path."""
    sep = "&" if "?" in url else "?"
    return url + sep + urlencode({"search_path": schema})


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[tuple[str, str]]:
    """A new, empty schema on the test server; yields (a URL whose connections use it, the
    schema's name), and drops the schema with everything in it afterwards."""
    require_postgres()
    schema = f"bw_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield with_search_path(SERVER_URL, schema), schema
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


async def run_sql(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on its own connection to `url`, as another process would."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _on_database(url: str, database: str) -> str:
    """`url` naming another database on the same server (query parameters kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database on the test server, for processes that each bring their own
    connections (replicas); yields its URL, and drops it afterwards, closing whatever
    connections are left (a killed process's, a proxy's)."""
    require_postgres()
    name = f"bw_{uuid.uuid4().hex[:16]}"
    await run_sql(SERVER_URL, f"CREATE DATABASE {name}")
    try:
        yield _on_database(SERVER_URL, name)
    finally:
        await run_sql(SERVER_URL, f"DROP DATABASE {name} WITH (FORCE)")
