"""The HTTP side of the daemon: /metrics, /healthz and /readyz, and (from `webui`) the status
page at / and the JSON API under /api/v1/."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from bulkwatch.daemon.health import Report, liveness, readiness
from bulkwatch.daemon.webui import WebContext, add_webui, problem_middleware

if TYPE_CHECKING:
    from datetime import datetime

    from bulkwatch.daemon.engine import Engine

__all__ = ["start_web"]


def _json(report: Report) -> web.Response:
    # 503 is what probes, load balancers and `curl --fail` all read as "not now".
    return web.json_response(report.body, status=200 if report.ok else 503)


def _context(engine: Engine) -> WebContext:
    return WebContext(
        state=engine.store,
        status=engine.status,
        clock=engine.clock,
        metrics=engine.metrics,
        api_token=engine.settings.server.api_token,
        wake_dispatcher=engine.wake_dispatcher,
    )


def _app(engine: Engine, started: datetime) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        # Rendering 10,000 stores' series takes a while; a worker thread keeps the loop (and
        # so the polls and the health probes) running meanwhile. The client is thread-safe.
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, engine.metrics.exposition)
        # 0.0.4 is what `exposition()` writes, and what every Prometheus since 2.0 reads.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def healthz(_: web.Request) -> web.Response:
        return _json(liveness(engine.status))

    async def readyz(_: web.Request) -> web.Response:
        return _json(await readiness(engine.status, started, engine.clock()))

    app = web.Application(middlewares=[problem_middleware(engine.metrics)])
    add_webui(app, _context(engine))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_web(engine: Engine, host: str, port: int) -> web.AppRunner:
    """Start the server on `host:port` (0: any free port, named in `runner.addresses`); the
    caller owns the runner and calls `cleanup()`."""
    runner = web.AppRunner(_app(engine, engine.clock()), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
