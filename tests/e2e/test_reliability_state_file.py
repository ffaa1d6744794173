"""A state database deleted or replaced under the running daemon.

An open SQLite connection keeps writing into its file after `rm state.db*`: nothing fails, but
no one can ever read those writes. The daemon must notice, stop being ready, say so once, and
stop writing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from bulkwatch.model import EndpointKey, Platform
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.store.base import PollWrite, StoreWriteError
from bulkwatch.store.sqlite.identity import StateFileGoneError
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.crash_support import Daemon, json_logs, write_config
from helpers.support import free_port
from helpers.webhook_receiver import Receiver


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(1, 1), seed=5) as s:
        yield s


async def _readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    try:
        async with http.get(url) as resp:
            return resp.status, await resp.json()
    except aiohttp.ClientConnectionError:
        return 0, {}


async def _until_status(http: aiohttp.ClientSession, url: str, want: int) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            status, body = await _readyz(http, url)
            if status == want:
                return body
            await asyncio.sleep(0.1)


def _rm_state(directory: Path) -> None:
    """`rm state.db*`: the database, its WAL, its shared memory and its lock file."""
    for path in directory.glob("state.db*"):
        path.unlink()


def _deleted_wal_size(pid: int, db: Path) -> int:
    """The size of the WAL the daemon still holds open after it was deleted."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target == f"{db}-wal (deleted)":
            return os.stat(fd).st_size
    raise AssertionError("the daemon does not hold the deleted WAL open")


async def test_a_deleted_state_database_makes_the_daemon_unready_and_stops_its_writes(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    port = free_port()
    config, db = write_config(
        tmp_path, sim, receiver, server={"enabled": True, "host": "127.0.0.1", "port": port}
    )
    url = f"http://127.0.0.1:{port}/readyz"
    daemon = await Daemon.start(config, tmp_path / "daemon.log")
    try:
        async with aiohttp.ClientSession() as http:
            await _until_status(http, url, 200)
            sim.create_task("lazza-1", "before", "RUNNING")
            await receiver.wait_for_requests(1, within=10)
            _rm_state(tmp_path)
            # A change for the daemon to write: it must not go into the unlinked file.
            sim.create_task("lazza-1", "after", "RUNNING")
            body = await _until_status(http, url, 503)
            wal = _deleted_wal_size(daemon.proc.pid, db)
            sim.create_task("line-1", "later", "RUNNING")
            await asyncio.sleep(1.0)  # ten polls of each store, every 0.1 s
            wal_later = _deleted_wal_size(daemon.proc.pid, db)
            still, _ = await _readyz(http, url)
        assert await daemon.terminate(within=10) == 0
    finally:
        await daemon.ensure_dead()
    (problem,) = body["problems"]
    assert problem == (
        f"state store writes failing: state.url: {db} was deleted while bulkwatch ran; "
        "refusing to write into a file no one can read: restore it, or restart bulkwatch to "
        "start from the file at that path"
    )
    assert still == 503
    assert wal_later == wal, "nothing more was written into the deleted file"
    logs = json_logs(tmp_path / "daemon.log")
    errors = [e for e in logs if e["level"] in ("error", "critical")]
    assert [e["event"] for e in errors] == ["state database deleted or replaced"]
    assert errors[0]["path"] == str(db)
    assert [e["subject"] for e in map(_event, receiver.requests)] == ["lazza-1/before"]


def _event(request: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(request.body)
    return parsed


async def test_a_replaced_state_database_refuses_writes_until_the_file_is_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.open()
    other = SqliteStore(tmp_path / "restored.db")
    await other.open()
    await other.close()
    key = EndpointKey("lazza-1", Platform.SHOPLAZZA, "tasks")
    write = PollWrite((await store.load_view(key)).endpoint)
    await store.save_poll(write)
    aside = tmp_path / "aside.db"
    try:
        path.rename(aside)
        (tmp_path / "restored.db").rename(path)  # a restore moved another file into place
        with capture_logs() as logs:
            with pytest.raises(StateFileGoneError, match="was replaced by another file"):
                await store.save_poll(write)
            with pytest.raises(StoreWriteError, match="was replaced by another file"):
                await store.ping()
            with pytest.raises(StateFileGoneError):
                await store.save_poll(write)
            path.rename(tmp_path / "restored.db")
            aside.rename(path)  # the daemon's own file is back
            await store.ping()
            await store.save_poll(write)
    finally:
        await store.close()
    assert [(e["log_level"], e["event"]) for e in logs] == [
        ("error", "state database deleted or replaced"),
        ("info", "state database is back in place; writing again"),
    ]
