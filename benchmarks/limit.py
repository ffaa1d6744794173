"""The limit: a bare aiohttp loop doing bulkwatch's GETs and `json.loads`, nothing else.

`--mode throughput`: `--concurrency` workers go round the endpoints as fast as they can, one
warm-up round first (connections, caches), then whole rounds until `--duration` has passed.
`--mode paced`: each endpoint is fetched once per `--interval`, the first fetches spread over
the interval as bulkwatch's scheduler spreads them: the least any 60 s poller can cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from benchmarks.common import Endpoint, Meter, emit, load_endpoints, raise_fd_limit

__all__ = ["main"]


class Fetcher:
    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.polls = 0
        self.errors = 0

    async def fetch(self, ep: Endpoint) -> None:
        try:
            async with self._session.get(
                ep.url, params=ep.params, headers=ep.headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
            json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.errors += 1
        self.polls += 1


async def _round(fetcher: Fetcher, endpoints: Sequence[Endpoint], concurrency: int) -> None:
    todo = iter(endpoints)

    async def worker() -> None:
        for ep in todo:  # the shared iterator hands each endpoint to one worker
            await fetcher.fetch(ep)

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())


async def throughput(
    fetcher: Fetcher, endpoints: Sequence[Endpoint], concurrency: int, duration: float
) -> dict[str, float]:
    await _round(fetcher, endpoints, concurrency)
    fetcher.polls = fetcher.errors = 0
    meter = Meter()
    meter.start()
    rounds = 0
    while meter.wall < duration:
        await _round(fetcher, endpoints, concurrency)
        rounds += 1
        meter.stop()
    return {**meter.figures(fetcher.polls), "rounds": rounds, "errors": fetcher.errors}


async def paced(
    fetcher: Fetcher, endpoints: Sequence[Endpoint], interval: float, duration: float
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    inflight: set[asyncio.Task[None]] = set()
    n = len(endpoints)
    meter = Meter()
    meter.start()
    t0 = loop.time()
    i = 0
    while True:
        due = t0 + interval * (i // n) + interval * (i % n) / n
        if due - t0 >= duration:
            break
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        task = loop.create_task(fetcher.fetch(endpoints[i % n]))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        i += 1
    if inflight:
        await asyncio.wait(inflight)
    meter.stop()
    return {**meter.figures(fetcher.polls), "errors": fetcher.errors}


async def _main(args: argparse.Namespace) -> None:
    endpoints = load_endpoints(args.endpoints)
    # The same pool as the engine's session: 200 connections, DNS cached.
    connector = aiohttp.TCPConnector(limit=200, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        fetcher = Fetcher(session, args.timeout)
        if args.mode == "throughput":
            figures = await throughput(fetcher, endpoints, args.concurrency, args.duration)
        else:
            figures = await paced(fetcher, endpoints, args.interval, args.duration)
    emit({"client": f"limit-{args.mode}", "endpoints": len(endpoints), **figures})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=Path, required=True)
    parser.add_argument("--mode", choices=["throughput", "paced"], default="throughput")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    raise_fd_limit()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
