"""A daemon's web server with the status page and API, over a real engine polling the
simulator: shared by the API, schema and browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.web import start_web
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.platform_stub import closed_port_url
from helpers.support import bound_port, settings_for

TOKEN = "test-api-token-0123456789"
INTERVAL = 30.0


@dataclass
class Site:
    sim: Simulator
    engine: Engine
    url: str
    http: aiohttp.ClientSession
    clock: ManualClock

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, Any]:
        """Status, content type, and the body: parsed when it is JSON, else text."""
        async with self.http.get(self.url + path, **kwargs) as resp:
            text = await resp.text()
            json_body = resp.content_type.endswith("json")
            return (
                resp.status,
                resp.content_type,
                (await resp.json(content_type=None)) if json_body else text,
            )

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        """Status, headers, and the parsed JSON body."""
        async with self.http.post(self.url + path, json=body, **kwargs) as resp:
            return resp.status, resp.headers, await resp.json(content_type=None)

    async def poll(self, rounds: int = 1) -> None:
        """Every endpoint polled `rounds` times, the clock moved an interval after each."""
        for _ in range(rounds):
            await self.engine.poll_all_once()
            await self.engine.deliver_due_once()
            self.clock.advance(INTERVAL)


@asynccontextmanager
async def site(
    tmp_path: Path,
    *,
    lazza: int = 2,
    line: int = 1,
    token: str | None = TOKEN,
    dead_hook: bool = False,
) -> AsyncIterator[Site]:
    """The simulator with `lazza` + `line` stores, an engine (manual clock, store down after
    one failed poll) and its web server on a free port. `dead_hook`: a second notifier, a
    webhook nothing listens on, whose deliveries die at their first failure."""
    clock = ManualClock()
    notifiers: list[dict[str, Any]] = [{"name": "console", "type": "log"}]
    if dead_hook:
        notifiers.append({"name": "hook", "type": "webhook", "url": closed_port_url()})
    async with run_simulator(stores=make_stores(lazza, line), clock=clock.timestamp) as sim:
        settings = settings_for(
            tmp_path,
            sim.store_configs(),
            notifiers=notifiers,
            defaults={"interval": INTERVAL, "jitter": 0, "timeout": 2, "down_after": 1},
            retry={"initial": 0.05, "max_delay": 0.2, "max_attempts": 1},
            server={"enabled": True, "host": "127.0.0.1", "port": 0}
            | ({"api_token": token} if token else {}),
        )
        async with (
            Engine(settings, metrics=Metrics(CollectorRegistry()), clock=clock) as engine,
            aiohttp.ClientSession() as http,
        ):
            runner = await start_web(engine, "127.0.0.1", 0)
            try:
                yield Site(sim, engine, f"http://127.0.0.1:{bound_port(runner)}", http, clock)
            finally:
                await runner.cleanup()
