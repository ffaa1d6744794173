"""Shared test helpers: settings built from plain dicts, outbox rows written as a poll writes
them, the port a started aiohttp runner listens on, and an engine serving for a block."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bulkwatch.config import Settings, load_settings
from bulkwatch.daemon.engine import Engine
from bulkwatch.model import (
    EndpointKey,
    Event,
    EventType,
    Platform,
    TaskSnapshot,
    TaskStatus,
    encode_cloudevent,
    task_event,
)
from bulkwatch.store.base import OutboxRow, PollWrite, StateStore


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def settings_for(
    tmp_path: Path, stores: list[dict[str, Any]], receiver_url: str | None = None, **extra: Any
) -> Settings:
    """Settings for a test: state in tmp_path, no metrics server, one webhook if given.

    Tests poll far faster than the platforms allow, so the stores' rate limits are lifted
    unless `defaults` sets them (`rate_limit: None` restores the platforms' defaults).
    """
    data: dict[str, Any] = {
        "instance": "test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": False},
        "retry": {"initial": 0.05, "max_delay": 0.2},
        "delivery": {"idle_interval": 0.05},
        "stores": stores,
    }
    if receiver_url is not None:
        data["notifiers"] = [{"name": "hook", "type": "webhook", "url": receiver_url}]
    defaults = {"rate_limit": 1000, "burst": 40, **extra.pop("defaults", {})}
    data.update(extra, defaults=defaults)
    return load_settings(write_config(tmp_path / "config.yaml", data), environ={})


async def write_events(
    store: StateStore,
    events: Iterable[Event],
    notifiers: Sequence[str],
    instance: str,
    *,
    encode: Callable[[Event], bytes] | None = None,
) -> None:
    """Write `events` to the outbox, one row per notifier, in one poll write as a poll does
    (each under its own store's `tasks` endpoint, whose state is left as it was)."""
    events = list(events)
    for store_name in dict.fromkeys(e.store for e in events):
        view = await store.load_view(EndpointKey(store_name, Platform.SHOPLAZZA, "tasks"))
        rows = [
            OutboxRow(
                e.id,
                name,
                e.type,
                e.store,
                encode(e) if encode else encode_cloudevent(e, instance),
                e.time,
                e.subject,
            )
            for e in events
            if e.store == store_name
            for name in notifiers
        ]
        await store.save_poll(PollWrite(view.endpoint, outbox=rows))


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (the real one when it was asked for 0)."""
    address = runner.addresses[0]
    port: int = address[1]
    return port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server a subprocess starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def completed_event(task_id: str, at: datetime) -> Event:
    """A `task.completed` event of one lazza-main task, observed at `at`."""
    snapshot = TaskSnapshot(
        platform=Platform.SHOPLAZZA,
        store="lazza-main",
        task_id=task_id,
        operation_type="DATA_QUERY",
        status=TaskStatus.COMPLETED,
        raw_status=2,
        observed_at=at,
    )
    return task_event(
        EventType.TASK_COMPLETED, snapshot, seq=1, previous=TaskStatus.RUNNING, now=at
    )


@asynccontextmanager
async def served(
    engine: Engine, *, grace: float, stop_within: float = 10.0
) -> AsyncIterator[asyncio.Task[None]]:
    """`engine.serve()` in a task, from its ready callback until the block ends; then stopped
    as SIGTERM stops it, within `stop_within` seconds."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(engine.serve(stop, grace=grace, ready=ready.set))
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(stop_within):
            await task
