"""The state database on a disk that stops taking writes, under a running dispatcher.

The fault is real: the database files are made immutable while the store holds them open
(see `disk_faults`), so SQLite's writes fail with "disk I/O error" as on a file system
remounted read-only.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bulkwatch.config import DeliverySettings, RetrySettings
from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.web import start_web
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from bulkwatch.simulator import make_stores, run_simulator
from bulkwatch.store.base import DeliveryStatus
from bulkwatch.store.sqlite.store import SqliteStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.disk_faults import read_only_files
from helpers.support import bound_port, completed_event, settings_for, write_events
from helpers.webhook_receiver import Receiver

RETRY = RetrySettings(initial=0.05, max_delay=0.2)
DELIVERY = DeliverySettings(concurrency=4, batch=50, idle_interval=0.05)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db" / "state.db")
    await s.open()
    yield s
    await s.close()


async def _until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    for _ in range(round(within / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within}s")


async def test_a_store_that_cannot_record_outcomes_pauses_delivery_instead_of_flooding(
    store: SqliteStore, receiver: Receiver
) -> None:
    registry = CollectorRegistry()
    clock = ManualClock()
    events = [completed_event(f"t{i}", clock()) for i in range(5)]
    await write_events(store, events, ["hook"], "test-1")
    store.flush()
    async with aiohttp.ClientSession() as session:
        hook = WebhookNotifier(WebhookNotifierConfig(name="hook", url=receiver.url), session)
        d = Dispatcher(
            store.outbox,
            {"hook": hook},
            RETRY,
            DELIVERY,
            Metrics(registry),
            clock=clock,
            rng=random.Random(3),
        )
        with capture_logs() as logs:
            with read_only_files(Path(store.path)):
                task = asyncio.create_task(d.run())
                await receiver.wait_for_requests(len(events))
                await asyncio.sleep(1.5)  # 30 idle intervals: the old dispatcher's flood
                during = Counter(json.loads(r.body)["id"] for r in receiver.requests)
                failing = registry.get_sample_value("bulkwatch_delivery_store_failing")
                errors = registry.get_sample_value("bulkwatch_delivery_store_errors_total")

            # Writable again: the outcomes kept in memory are recorded, nothing is re-sent.
            async def delivered() -> bool:
                rows = await store.outbox.list_deliveries(DeliveryStatus.DELIVERED)
                return len(rows) == len(events)

            await _until(delivered)
            await d.drain(5)
            await task
    assert during == {e.id: 1 for e in events}, "each event is sent once, not flooded"
    assert len(receiver.requests) == len(events)
    assert failing == 1
    assert 1 <= (errors or 0) <= 20  # a try per pause (0.05 s, doubling to 0.2 s)
    assert registry.get_sample_value("bulkwatch_delivery_store_failing") == 0
    problems = [e for e in logs if e["log_level"] in ("error", "critical")]
    assert [e["event"] for e in problems] == ["delivery paused: cannot record outcomes"]
    assert "disk I/O error" in problems[0]["error"]
    resumed = [e for e in logs if e["event"] == "delivery resumed"]
    assert len(resumed) == 1
    assert resumed[0]["recorded"] == len(events)


async def test_readyz_fails_while_writes_fail_and_recovers_with_the_next_write(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    (tmp_path / "db").mkdir()
    async with run_simulator(stores=make_stores(1, 1), clock=clock.timestamp) as sim:
        settings = settings_for(
            tmp_path / "db",
            sim.store_configs(),
            notifiers=[{"name": "console", "type": "log"}],
            defaults={"interval": 30, "jitter": 0, "timeout": 2},
        )
        async with (
            Engine(settings, metrics=Metrics(CollectorRegistry()), clock=clock) as engine,
            aiohttp.ClientSession() as http,
        ):
            runner = await start_web(engine, "127.0.0.1", 0)
            url = f"http://127.0.0.1:{bound_port(runner)}/readyz"

            async def readyz() -> tuple[int, Any]:
                async with http.get(url) as resp:
                    return resp.status, await resp.json()

            try:
                assert await engine.poll_all_once()
                assert (await readyz())[0] == 200
                sim.inject(503, store="lazza-1", times=1)  # a failed poll: its state is written
                with read_only_files(tmp_path / "db" / "state.db"):
                    await engine.poll_all_once()
                    await asyncio.sleep(0.3)  # the group commit's delay (0.1 s) has passed
                    failing, body = await readyz()
                assert await engine.poll_all_once()  # writes again, and they commit
                recovered, _ = await readyz()
            finally:
                await runner.cleanup()
    assert failing == 503
    (problem,) = body["problems"]
    assert problem.startswith("state store writes failing: ")
    assert "disk I/O error" in problem
    assert body["checks"]["state_store"]["ok"] is False
    assert recovered == 200


def _corrupt_a_page(db: Path) -> None:
    """Overwrite the middle of a b-tree page inside the file, as a bad sector would: the
    outbox's root page, wherever the schema's history put it."""
    with sqlite3.connect(db) as conn:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'outbox'"
        ).fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with db.open("r+b") as f:
        f.seek(size * (root - 1) + 100)
        f.write(random.Random(7).randbytes(2000))


async def _filled(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    now = ManualClock()()
    await write_events(
        store, [completed_event(f"t{i}", now) for i in range(400)], ["hook"], "test-1"
    )
    await store.close()


async def test_run_refuses_a_state_database_with_corrupt_pages_with_exit_4(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    await _filled(db)
    _corrupt_a_page(db)
    config = tmp_path / "config.yaml"
    config.write_text(
        "stores: [{name: s, platform: shoplazza, domain: s, access_token: t,"
        " base_url: 'http://127.0.0.1:9'}]\n"
        f"state: {{url: 'sqlite:///{db}'}}\nserver: {{enabled: false}}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkwatch", "run", "--config", str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 4, err.decode()
    (line,) = (out + err).decode().splitlines()
    assert line.startswith(f"bulkwatch: state.url: {db} is corrupt (PRAGMA quick_check: ")
    assert "restore it from a backup" in line


async def test_the_check_at_open_is_bounded_in_time(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    await _filled(db)
    _corrupt_a_page(db)
    store = SqliteStore(db, check_timeout=0.0)  # interrupted at once: the file is opened
    with capture_logs() as logs:
        await store.open()
    await store.close()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "state database check not finished in time; starting unchecked"
    ]
