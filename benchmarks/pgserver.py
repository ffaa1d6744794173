"""The PostgreSQL side of the benchmark: a schema of its own, and the server's CPU.

With SQLite every cycle of the store's work is spent inside the measured client; with
PostgreSQL much of it is spent by the server. So the client measures the server too: the
CPU of the backends serving its own connections (found by `application_name`) and of the
server's background processes (WAL writer, checkpointer, background writer, autovacuum),
read from /proc over the same window. The server must run on the same machine; its
background processes also serve anyone else using the server meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg

__all__ = ["ServerCpu", "StoreCpu", "fresh_schema", "problem", "with_params"]

_TICKS = os.sysconf("SC_CLK_TCK")


def with_params(url: str, **params: str) -> str:
    """`url` with query parameters added."""
    return url + ("&" if "?" in url else "?") + urlencode(params)


async def _run(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def problem(url: str) -> str | None:
    """Why the server at `url` cannot be used, or None when it answers."""
    try:
        asyncio.run(_run(url, "SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new schema on the server; yields a URL whose connections use it; drops it after."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_run(url, f"CREATE SCHEMA {schema}"))
    try:
        yield with_params(url, search_path=schema)
    finally:
        asyncio.run(_run(url, f"DROP SCHEMA {schema} CASCADE"))


def _ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or not on this machine
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


_PIDS = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE application_name = $1 OR (backend_type <> 'client backend' AND $2)"
)


class ServerCpu:
    """CPU seconds the server spent for one client between `start()` and `stop()`: its own
    backends, and (with `background`) the server's background processes."""

    def __init__(self, url: str, application_name: str, *, background: bool = True) -> None:
        self._url = url
        self._name = application_name
        self._background = background
        self._start: dict[int, int] = {}

    async def _sample(self) -> dict[int, int]:
        conn = await asyncpg.connect(self._url, timeout=5)
        try:
            pids = [r[0] for r in await conn.fetch(_PIDS, self._name, self._background)]
        finally:
            await conn.close()
        ticks = {pid: _ticks(pid) for pid in pids}
        return {pid: t for pid, t in ticks.items() if t is not None}

    async def start(self) -> None:
        self._start = await self._sample()

    async def stop(self) -> float:
        """Seconds of server CPU since `start()`; a backend started meanwhile counts whole."""
        now = await self._sample()
        return sum(t - self._start.get(pid, 0) for pid, t in now.items()) / _TICKS


class StoreCpu:
    """The PostgreSQL server's CPU for this client over the window (nothing for SQLite, whose
    work is all in this process); added to the client's own, so both stores compare whole.
    Without `background`, only the backends serving this client count (for replicas, which
    share the background processes: one of them counts those)."""

    def __init__(self, url: str, *, background: bool = True) -> None:
        self._server = None
        if url.startswith(("postgresql://", "postgres://")):
            name = parse_qs(urlsplit(url).query).get("application_name", [""])[0]
            self._server = ServerCpu(url, name, background=background)
        self.seconds: float | None = None

    async def start(self) -> None:
        if self._server is not None:
            await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            self.seconds = await self._server.stop()

    def add_to(self, figures: dict[str, Any]) -> dict[str, Any]:
        """`figures` with the server's CPU in `cpu_s` and the figures made of it."""
        if self.seconds is None:
            return figures
        cpu, polls, wall = figures["cpu_s"] + self.seconds, figures["polls"], figures["wall_s"]
        return {
            **figures,
            "client_cpu_s": figures["cpu_s"],
            "server_cpu_s": round(self.seconds, 3),
            "cpu_s": round(cpu, 3),
            "cpu_s_per_1000_polls": round(1000 * cpu / polls, 4) if polls else 0.0,
            "cpu_percent": round(100 * cpu / wall, 2) if wall else 0.0,
        }
