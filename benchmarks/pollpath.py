"""bulkwatch's cost per poll without the HTTP request: judging, the store, outbox, metrics, logs.

Each source is replaced by one that returns a ready `PollResult` (what the platform showed),
fingerprinting a canned body of the size a real one has, and `Unchanged` when that body is the
one last judged, as the real sources do. What is left is what bulkwatch adds to a bare GET
(minus the `json.loads` an unchanged body saves). No network, no simulator: quick and steady
enough to compare one change with the next.

    python -m benchmarks.pollpath --stores 2000 --rounds 5 [--profile out.txt]
    python -m benchmarks.pollpath --postgres postgresql://postgres@127.0.0.1:5432/test

With `--postgres URL` the state is in PostgreSQL (a schema of its own, dropped after), and
the server's CPU for this process is counted beside the process's own.

Every `--change-every`-th poll of a Shoplazza store sees a new task, so events, outbox rows
and deliveries to a (discarding) notifier are part of the figure, as in a live fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Meter, emit
from benchmarks.pgserver import StoreCpu, fresh_schema, with_params
from bulkwatch.config import load_settings
from bulkwatch.daemon.engine import Engine
from bulkwatch.model import (
    EndpointKey,
    Platform,
    PollResult,
    TaskSnapshot,
    TaskStatus,
    Unchanged,
)
from bulkwatch.sources.http.response import Fingerprint, HttpResponse
from bulkwatch.telemetry.logs import configure_logging

__all__ = ["main"]


class CannedSource:
    """Answers like a quiet store: the same tasks every time, a new one now and then."""

    def __init__(self, platform: Platform, store: str, endpoints: tuple[EndpointKey, ...]) -> None:
        self.platform = platform
        self.store = store
        self.endpoints = endpoints
        self.polls = 0
        self.change_every = 0

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged:
        self.polls += 1
        # Two old exports, plus one more each `change_every` polls.
        extra = self.polls // self.change_every if self.change_every else 0
        if self.platform is Platform.SHOPLAZZA:
            body = f"{key}:{2 + extra}".encode().ljust(400, b" ")  # ~ a two-task list
        else:
            body = f"{key}".encode().ljust(600, b" ")  # ~ a completed operation
        fingerprint = Fingerprint().add(HttpResponse(200, body, "r", None, None))
        if fingerprint == known:
            return Unchanged(key, fingerprint, "r")
        if self.platform is Platform.SHOPLAZZA:
            tasks = tuple(
                TaskSnapshot(
                    platform=self.platform,
                    store=self.store,
                    task_id=f"{self.store}-t{i}",
                    operation_type="DATA_QUERY",
                    status=TaskStatus.COMPLETED,
                    raw_status=2,
                    observed_at=now,
                    url=f"https://example.com/{self.store}/{i}.csv",
                )
                for i in range(2 + extra)
            )
            return PollResult(
                key=key, tasks=tasks, exclusive=False, request_id="r", fingerprint=fingerprint
            )
        task = TaskSnapshot(
            platform=self.platform,
            store=self.store,
            task_id=f"{self.store}-{key.endpoint}",
            operation_type=key.endpoint,
            status=TaskStatus.COMPLETED,
            raw_status="COMPLETED",
            observed_at=now,
            url="https://example.com/result.jsonl",
            partial_data_url="https://example.com/result.jsonl",
            completed_count=1200,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            completed_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
            expires_at=datetime(2099, 1, 1, tzinfo=UTC),
        )
        return PollResult(
            key=key, tasks=(task,), exclusive=True, request_id="r", fingerprint=fingerprint
        )


def _config(tmp: Path, stores: int, state: str) -> Path:
    half = stores // 2
    entries: list[dict[str, Any]] = [
        {
            "name": f"lazza-{i}",
            "platform": "shoplazza",
            "domain": f"lazza-{i}",
            "access_token": "x",
            "base_url": "http://127.0.0.1:9",
        }
        for i in range(half)
    ]
    entries += [
        {
            "name": f"line-{i}",
            "platform": "shopline",
            "handle": f"line-{i}",
            "access_token": "x",
            "base_url": "http://127.0.0.1:9",
        }
        for i in range(stores - half)
    ]
    doc = {
        "instance": "bench",
        "state": {"url": state},
        "server": {"enabled": False},
        "notifiers": [{"name": "discard", "type": "log", "format": "json"}],
        "stores": entries,
    }
    path = tmp / "config.yaml"
    path.write_text(json.dumps(doc))
    return path


async def _run(args: argparse.Namespace, tmp: Path, state: str) -> dict[str, Any]:
    settings = load_settings(_config(tmp, args.stores, state), environ={})
    async with Engine(settings) as engine:
        work: list[tuple[CannedSource, EndpointKey]] = []
        for src in engine.sources:
            canned = CannedSource(src.platform, src.store, src.endpoints)
            canned.change_every = args.change_every
            work += [(canned, key) for key in src.endpoints]
        for canned, key in work:  # the baseline round, unmeasured
            await engine.poll(canned, key)  # type: ignore[arg-type]
        profiler: Any = None
        if args.profile is not None:
            import cProfile  # noqa: PLC0415 - only when profiling

            profiler = cProfile.Profile()
            profiler.enable()
        store_cpu = StoreCpu(state)
        await store_cpu.start()
        meter = Meter()
        meter.start()
        for _ in range(args.rounds):
            for canned, key in work:
                await engine.poll(canned, key)  # type: ignore[arg-type]
            await engine.deliver_due_once()
        meter.stop()
        await store_cpu.stop()
        if profiler is not None:
            profiler.disable()
            import pstats  # noqa: PLC0415

            with args.profile.open("w") as out:
                pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(60)
        polls = args.rounds * len(work)
        figures = meter.figures(polls)
        server_s = store_cpu.seconds or 0.0
        return {
            "client": "pollpath",
            "store": "postgresql" if args.postgres else "sqlite",
            "endpoints": len(work),
            "polls": polls,
            "us_per_poll": round(1e6 * meter.cpu / polls, 1),
            "server_us_per_poll": round(1e6 * server_s / polls, 1),
            "wall_us_per_poll": round(1e6 * meter.wall / polls, 1),
            "cpu_s": figures["cpu_s"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--change-every", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile report here")
    parser.add_argument("--sort", default="cumulative", help="cProfile order: tottime...")
    parser.add_argument("--postgres", default="", metavar="URL", help="state in PostgreSQL")
    args = parser.parse_args()
    # The log notifier writes every delivered event: send them nowhere interesting.
    configure_logging("info", "json", stream=open("/dev/null", "w"))  # noqa: SIM115
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bulkwatch-pollpath-")))
        state = f"sqlite:///{tmp / 'state.db'}"
        if args.postgres:
            url = stack.enter_context(fresh_schema(args.postgres))
            state = with_params(url, application_name="bulkwatch-pollpath")
        result = asyncio.run(_run(args, tmp, state))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    emit(result)
    sys.exit(0)


if __name__ == "__main__":
    main()
