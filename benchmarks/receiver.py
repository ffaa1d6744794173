"""The webhook receiver, in a process of its own so the simulator's load cannot delay it.

`POST /hook/{phase}` answers 204 and records, per phase, the time from the event's
`data.observed_at` (when the poll that saw the change started) to now, just before the 2xx
goes out. Both clocks are this machine's wall clock. `GET /stats/{phase}` returns the counts
and percentiles. The first stdout line is `listening on <url>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from aiohttp import web

from benchmarks.common import raise_fd_limit

__all__ = ["percentile", "summary"]


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(latencies: list[float], types: dict[str, int], deliveries: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "deliveries": deliveries,
        "events_with_observed_at": len(ordered),
        "types": dict(types),
        "p50_s": round(percentile(ordered, 50), 4) if ordered else None,
        "p99_s": round(percentile(ordered, 99), 4) if ordered else None,
        "max_s": round(ordered[-1], 4) if ordered else None,
    }


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.types: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.deliveries: dict[str, int] = defaultdict(int)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        phase = request.match_info["phase"]
        received = time.time()
        self.deliveries[phase] += 1
        event = json.loads(body)
        self.types[phase][event.get("type", "?")] += 1
        observed = (event.get("data") or {}).get("observed_at")
        if isinstance(observed, str):  # task events carry it; store.up/down do not
            self.latencies[phase].append(received - datetime.fromisoformat(observed).timestamp())
        return web.Response(status=204)

    async def stats(self, request: web.Request) -> web.Response:
        phase = request.match_info["phase"]
        return web.json_response(
            summary(self.latencies[phase], self.types[phase], self.deliveries[phase])
        )


async def _main(host: str) -> None:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/hook/{phase}", recorder.hook)
    app.router.add_get("/stats/{phase}", recorder.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, 0, backlog=1024).start()
    port = runner.addresses[0][1]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    raise_fd_limit()
    # The orchestrator ends it with SIGTERM; nothing here needs a clean shutdown.
    asyncio.run(_main(args.host))


if __name__ == "__main__":
    main()
