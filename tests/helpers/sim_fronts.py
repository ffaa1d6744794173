"""The simulator in the test's own process, served on one port per replica, so every platform
request says which replica sent it.

Replica `i` is configured with base URLs on port `ports[i]`: the same simulated stores, the
same state, only the door differs. A middleware records every API request (store, which
door, when it arrived and when its answer was ready, on the test's monotonic clock), which is
all the replica tests need to tell who polled what and when, without touching the product.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bulkwatch.simulator import Simulator, StoreSpec, make_app

__all__ = ["Fronts", "Polled", "running_fronts"]


@dataclass(frozen=True, slots=True)
class Polled:
    """One API request: which store, through which replica's door, arrived and answered when
    (`time.monotonic()` of the test process)."""

    store: str
    replica: int
    started: float
    ended: float


class Fronts:
    """A `Simulator` and the record of who asked it what."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.ports: list[int] = []
        self.requests: list[Polled] = []

    def store_configs(self, replica: int) -> list[dict[str, Any]]:
        """The `stores:` of replica `replica`'s config: every store, through its own door."""
        base = f"http://127.0.0.1:{self.ports[replica]}"
        return [st.config(f"{base}/{st.name}") for st in self.sim.stores.values()]

    def since(self, moment: float) -> list[Polled]:
        """The requests that arrived at or after `moment`."""
        return [r for r in self.requests if r.started >= moment]

    def owners(self, since: float, until: float | None = None) -> dict[str, set[int]]:
        """store -> the replicas that polled it in [since, until)."""
        out: dict[str, set[int]] = {}
        for r in self.requests:
            if r.started >= since and (until is None or r.started < until):
                out.setdefault(r.store, set()).add(r.replica)
        return out

    def middleware(self) -> Middleware:
        @web.middleware
        async def attribute(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.monotonic()
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            try:
                return await handler(request)
            finally:
                store = request.match_info.get("store")
                if sockname is not None and store in self.sim.stores:
                    replica = self.ports.index(sockname[1])
                    self.requests.append(Polled(store, replica, started, time.monotonic()))

        return attribute


@asynccontextmanager
async def running_fronts(stores: Iterable[StoreSpec], replicas: int) -> AsyncIterator[Fronts]:
    """The simulated `stores`, served on `replicas` ports of 127.0.0.1 while the block runs."""
    fronts = Fronts(Simulator(stores, seed=1))
    app = make_app(fronts.sim)
    app.middlewares.append(fronts.middleware())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        for _ in range(replicas):
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            fronts.ports.append(int(runner.addresses[-1][1]))
        fronts.sim.attach(f"http://127.0.0.1:{fronts.ports[0]}")
        yield fronts
    finally:
        await runner.cleanup()
