"""The HTTP side of the daemon: /metrics, /healthz and /readyz."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from bulkwatch.app import Engine

__all__ = ["start_web"]


def _app(engine: Engine, started: float) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(engine.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_s": round(time.monotonic() - started)})

    async def readyz(_: web.Request) -> web.Response:
        now = engine.clock()
        stale = []
        for _source, key in engine.endpoints:
            interval = engine.intervals[key.store]
            last = engine.last_poll.get(key)
            if last is None or (now - last).total_seconds() > 2 * interval + 5:
                stale.append(str(key))
        body = {"status": "ok" if not stale else "not ready", "stale_endpoints": stale[:50]}
        return web.json_response(body, status=200 if not stale else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_web(engine: Engine, host: str, port: int) -> web.AppRunner:
    """Start the server; the caller owns the runner and calls `cleanup()`."""
    runner = web.AppRunner(_app(engine, time.monotonic()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
