"""bulkwatch's real engine against the simulator: sources, tracker, store, outbox, webhook.

`--mode throughput`: `Engine.poll_all_once(concurrency)` rounds back to back, with the
dispatcher delivering alongside (as in the daemon), after one unmeasured warm-up round that
records the baseline; measured over whole rounds for at least `--duration` seconds.
`--mode daemon`: `Engine.serve()`, the real daemon with its APScheduler jobs at the config's
interval, measured for `--duration` seconds after `--warmup` seconds of running.
With `state.replicas` on, the daemon is one replica: its lease renewals over the window and
the stores it owns at the end are reported too.
`--mode idle`: the engine with one scheduler job per endpoint, none due for an hour, and the
dispatcher waiting: what the scheduler costs while nothing happens.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Meter, emit, raise_fd_limit, rss_mib
from benchmarks.pgserver import StoreCpu
from benchmarks.replicas import lease_counts, lease_figures
from bulkwatch.config import load_settings
from bulkwatch.daemon.collector import freeze_startup_objects, tuned_collector
from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.scheduler import PollJob, build_scheduler
from bulkwatch.daemon.web import start_web
from bulkwatch.model import EndpointKey
from bulkwatch.sources.base import Source
from bulkwatch.store.base import DeliveryStatus
from bulkwatch.telemetry.logs import configure_logging

__all__ = ["main"]


def polls_done(engine: Engine) -> dict[str, int]:
    """Polls recorded so far by outcome, from the engine's own `polls_total` counter."""
    out: dict[str, int] = {}
    for metric in engine.metrics.polls.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels["outcome"]
                out[outcome] = out.get(outcome, 0) + int(sample.value)
    return out


def _delta(after: dict[str, int], before: dict[str, int]) -> tuple[int, int]:
    total = sum(after.values()) - sum(before.values())
    errors = total - (after.get("ok", 0) - before.get("ok", 0))
    return total, errors


class GcTimer:
    """Time spent in the cyclic garbage collector, per generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.runs[info["generation"]] += 1

    def reset(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]

    def figures(self) -> dict[str, Any]:
        return {"gc_s": [round(x, 3) for x in self.seconds], "gc_runs": self.runs}


GC = GcTimer()


class LoopLag:
    """How late the event loop wakes a 50 ms sleeper: what a blocked loop costs everyone."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            self.lags.append(loop.time() - before - 0.05)

    def figures(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        return {
            "loop_lag_p99_s": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))], 4),
            "loop_lag_max_s": round(lags[-1], 4),
        }


async def _outbox_empty(engine: Engine, within: float) -> int:
    """Wait for the dispatcher to deliver everything pending; return what is left."""
    deadline = time.monotonic() + within
    while True:
        counts = await engine.store.outbox.outbox_counts()
        pending = sum(n for (_, status), n in counts.items() if status is DeliveryStatus.PENDING)
        if pending == 0 or time.monotonic() >= deadline:
            return pending
        await asyncio.sleep(0.1)


class Profile:
    """pyinstrument over the measured window, when asked; its overhead skews the figures."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._profiler: Any = None

    def start(self) -> None:
        if self._path is None:
            return
        from pyinstrument import Profiler  # noqa: PLC0415 - only when profiling

        # Not async-aware: the whole thread's time, whichever coroutine spends it.
        self._profiler = Profiler(interval=0.001, async_mode="disabled")
        self._profiler.start()

    def stop(self) -> None:
        if self._path is None or self._profiler is None:
            return
        self._profiler.stop()
        self._path.write_text(self._profiler.output_text(unicode=False, color=False))
        self._path.with_suffix(".html").write_text(self._profiler.output_html())
        # `pyinstrument --load <file> --show-all` renders it again, any way you like.
        self._profiler.last_session.save(str(self._path.with_suffix(".pyisession")))


async def throughput(
    engine: Engine, duration: float, concurrency: int, profile: Profile, *, freeze: bool
) -> dict[str, Any]:
    dispatcher = asyncio.create_task(engine.dispatcher.run())
    started = time.perf_counter()
    await engine.poll_all_once(concurrency)
    warmup_s = time.perf_counter() - started
    objects = len(gc.get_objects())
    if freeze:
        gc.freeze()
    before = polls_done(engine)
    profile.start()
    GC.reset()
    store_cpu = StoreCpu(engine.settings.state.url)
    await store_cpu.start()
    meter = Meter()
    meter.start()
    rounds = 0
    while meter.wall < duration:
        await engine.poll_all_once(concurrency)
        rounds += 1
        meter.stop()
    await store_cpu.stop()
    profile.stop()
    polls, errors = _delta(polls_done(engine), before)
    left = await _outbox_empty(engine, 30.0)
    await engine.dispatcher.drain(5.0)
    await dispatcher
    return {
        **store_cpu.add_to(meter.figures(polls)),
        "errors": errors,
        "rounds": rounds,
        "concurrency": concurrency,
        "warmup_s": round(warmup_s, 2),
        "outbox_left": left,
        "objects_after_warmup": objects,
        **GC.figures(),
    }


async def daemon(
    engine: Engine, duration: float, warmup: float, profile: Profile, *, background: bool = True
) -> dict[str, Any]:
    stop = asyncio.Event()
    ready = asyncio.Event()
    started = time.perf_counter()
    # As `bulkwatch run` does: the start-up objects frozen once everything runs.
    serving = asyncio.create_task(engine.serve(stop, grace=10.0, ready=ready.set))
    server = engine.settings.server
    # As `bulkwatch run` does when the config enables it: the status page and the API.
    web = await start_web(engine, server.host, server.port) if server.enabled else None
    await ready.wait()
    freeze_startup_objects()
    startup_s = time.perf_counter() - started
    # Until every job has run once: metric series and first-poll work are start-up costs.
    await asyncio.sleep(warmup)
    lag = LoopLag()
    lagging = asyncio.create_task(lag.run())
    before = polls_done(engine)
    leases = lease_counts(engine.metrics.registry)
    rss: list[float] = []
    profile.start()
    GC.reset()
    store_cpu = StoreCpu(engine.settings.state.url, background=background)
    await store_cpu.start()
    meter = Meter()
    meter.start()
    while meter.wall < duration:
        rss.append(rss_mib())
        await asyncio.sleep(min(5.0, max(duration - meter.wall, 0.01)))
        meter.stop()
    await store_cpu.stop()
    profile.stop()
    polls, errors = _delta(polls_done(engine), before)
    lease = lease_figures(leases, lease_counts(engine.metrics.registry), meter.wall)
    lagging.cancel()
    stop.set()
    await serving
    if web is not None:
        await web.cleanup()
    return {
        **store_cpu.add_to(meter.figures(polls)),
        "errors": errors,
        "startup_s": round(startup_s, 2),
        "warmup_s": warmup,
        "rss_mib_mean": round(sum(rss) / len(rss), 1),
        **lease,
        **lag.figures(),
        **GC.figures(),
    }


async def idle(engine: Engine, duration: float) -> dict[str, Any]:
    stores = {s.name: s for s in engine.stores}

    def runner(source: Source, key: EndpointKey) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await engine.poll(source, key)

        return run

    jobs = [
        PollJob(
            key,
            stores[key.store].interval,
            stores[key.store].jitter,
            runner(src, key),
        )
        for src, key in engine.endpoints
    ]
    # RSS hardly moves (freed start-up memory is reused), so a second, throwaway scheduler
    # tells what the jobs hold; tracing would slow the timed build.
    tracemalloc.start()
    build_scheduler(jobs, engine.clock(), engine.metrics)
    job_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    started = time.perf_counter()
    # First runs an hour away: nothing falls due while we watch.
    scheduler = build_scheduler(jobs, engine.clock() + timedelta(hours=1), engine.metrics)
    scheduler.start()
    build_s = time.perf_counter() - started
    dispatcher = asyncio.create_task(engine.dispatcher.run())
    await asyncio.sleep(2.0)
    rss_jobs = rss_mib()
    meter = Meter()
    meter.start()
    await asyncio.sleep(duration)
    meter.stop()
    scheduler.shutdown(wait=False)
    await engine.dispatcher.drain(1.0)
    await dispatcher
    return {
        "jobs": len(jobs),
        "wall_s": round(meter.wall, 3),
        "cpu_s": round(meter.cpu, 4),
        "cpu_percent": round(100 * meter.cpu / meter.wall, 3),
        "scheduler_build_s": round(build_s, 3),
        "rss_mib": round(rss_jobs, 1),
        "scheduler_kib_per_job": round(job_bytes / 1024 / max(len(jobs), 1), 2),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(args.config, environ={})
    profile = Profile(args.profile)
    async with Engine(settings) as engine:
        if args.mode == "throughput":
            return await throughput(
                engine, args.duration, args.concurrency, profile, freeze=args.gc_freeze
            )
        if args.mode == "daemon":
            background = args.server_cpu == "all"
            return await daemon(engine, args.duration, args.warmup, profile, background=background)
        return await idle(engine, args.duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--mode", choices=["throughput", "daemon", "idle"], required=True)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=0.0, help="daemon: seconds unmeasured")
    parser.add_argument("--profile", type=Path, default=None, help="pyinstrument report here")
    parser.add_argument(
        "--server-cpu",
        choices=["all", "own"],
        default="all",
        help="PostgreSQL CPU counted: its backends for this client and the background "
        "processes (all), or the backends only (own: replicas other than the first)",
    )
    # Experiments only: the figures `make bench` reports are bulkwatch's own GC behaviour.
    parser.add_argument(
        "--gc-freeze", action="store_true", help="throughput: gc.freeze() once warm"
    )
    parser.add_argument("--gc-threshold", type=int, default=0, help="gc gen0 threshold")
    args = parser.parse_args()
    raise_fd_limit()
    gc.callbacks.append(GC)
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    # As in production: info level, JSON lines (to the orchestrator's log file).
    configure_logging("info", "json", stream=sys.stderr)
    with tuned_collector():  # the collector settings of `bulkwatch run`
        figures = asyncio.run(_main(args))
    emit({"client": f"engine-{args.mode}", **figures})


if __name__ == "__main__":
    main()
