"""Shared test helpers: a real webhook receiver and settings built from plain dicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bulkwatch.config import Settings, load_settings
from bulkwatch.model import EndpointKey, Event, Platform, encode_cloudevent
from bulkwatch.store.base import OutboxRow, PollWrite, StateStore


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every request it accepts."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    # Statuses to answer, in order, before answering 204 to everything.
    fail_with: list[int] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [r.event for r in self.received]

    def types(self) -> list[tuple[str, str]]:
        """(type, subject) of every accepted event, in arrival order."""
        return [(e["type"], e["subject"]) for e in self.events]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.fail_with:
            return web.Response(status=self.fail_with.pop(0))
        async with self.changed:
            self.received.append(Received(dict(request.headers), body))
            self.changed.notify_all()
        return web.Response(status=204)

    async def wait_for(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` events arrived; fail the test after `within` seconds."""
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: len(self.received) >= count)
        return self.events


@asynccontextmanager
async def run_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


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
