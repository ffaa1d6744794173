"""The soak (opt-in: `make soak`, or `pytest -m soak`): the daemon runs for a minute or two
against 20 simulated stores whose tasks move on their own, with faults injected at random into
the platforms' answers and the receiver's, and a graceful restart every quarter of the run.

At the end nothing may be lost: every event the daemon committed was delivered, each task's
delivered status events form an unbroken chain (every event's `previous_status` is the status
of the event before it), and after a last clean poll the state matches the platforms. Along
the way memory stays bounded, no asyncio task outlives its engine, and no store ever got more
requests than its rate limit allows. `BULKWATCH_SOAK_SECONDS` sets the length (default 90).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
import random
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from bulkwatch.config import PLATFORM_RATE_LIMITS, Settings
from bulkwatch.daemon.engine import Engine
from bulkwatch.model import Platform, TaskStatus, utcnow
from bulkwatch.simulator import Driver, DriverConfig, Simulator, make_stores, run_simulator
from bulkwatch.store.base import DeliveryStatus
from bulkwatch.telemetry.metrics import Metrics
from helpers.disk_faults import read_only_files
from helpers.support import settings_for

SECONDS = float(os.environ.get("BULKWATCH_SOAK_SECONDS", "90"))
RESTARTS = 4
SEED = 424242
# (kind, options, probability per request): the platforms' bad days, all at once.
FAULTS: list[tuple[str | int, dict[str, Any], float]] = [
    (503, {}, 0.02),
    (500, {}, 0.01),
    ("rate_limit", {"retry_after": 1}, 0.01),
    ("rate_limit", {}, 0.01),
    ("malformed", {}, 0.01),
    ("html", {}, 0.01),
    ("wrong_types", {}, 0.005),
    ("huge", {"size": 300_000}, 0.005),
    ("slow", {"delay": 1.5}, 0.005),
    (401, {}, 0.002),
    (402, {}, 0.001),
    (423, {}, 0.001),
    ("empty", {"endpoint": "tasks"}, 0.005),  # on Shopline an empty body means "no task"
]

pytestmark = [pytest.mark.soak, pytest.mark.timeout(SECONDS + 120)]


@dataclass
class FlakyReceiver:
    """Accepts webhooks, failing a share of them with 503; keeps only what the checks need."""

    rng: random.Random
    fail_share: float = 0.1
    url: str = ""
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> CloudEvent
    attempts: int = 0
    duplicates: int = 0  # an id accepted again (at least once: a restart mid-delivery)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.rng.random() < self.fail_share:
            return web.Response(status=503)
        event = json.loads(body)
        if event["id"] in self.accepted:
            self.duplicates += 1
            return web.Response(status=204)
        self.accepted[event["id"]] = {"type": event["type"], "subject": event["subject"]} | {
            k: event["data"].get(k) for k in ("status", "previous_status", "observed_at")
        }
        return web.Response(status=204)


@asynccontextmanager
async def serving(receiver: FlakyReceiver) -> AsyncIterator[FlakyReceiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def drive(driver: Driver, stop: asyncio.Event) -> None:
    while not stop.is_set():
        driver.tick()
        try:
            async with asyncio.timeout(0.1):
                await stop.wait()
        except TimeoutError:
            pass


def soak_settings(tmp: Path, sim: Simulator, receiver: FlakyReceiver) -> Settings:
    defaults = {
        "rate_limit": None,  # the platforms' own: part of what the soak checks
        "burst": None,
        "interval": 0.5,
        "jitter": 0.05,
        "timeout": 1.0,
        "max_body_bytes": 200_000,
        "stall_after": 5,
        "auth_retry": 2,
        "blocked_retry": 3,
        "backoff_max": 2,
    }
    return settings_for(
        tmp,
        sim.store_configs(),
        receiver.url,
        defaults=defaults,
        shutdown_grace=2,
        retry={"initial": 0.05, "max_delay": 0.5, "max_attempts": 1000},
        delivery={"idle_interval": 0.05},
    )


def daemon_tasks() -> int:
    """Running asyncio tasks, without the simulator's and receivers' request handlers (a
    `slow` fault keeps one of those sleeping after the daemon has gone)."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if not getattr(task.get_coro(), "__qualname__", "").startswith("RequestHandler")
    )


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """structlog at WARNING into a file for the run; restored afterwards. APScheduler's
    records go to a file of their own too: pytest's log capture would keep every record, and
    with it the job and engine each one names, which is memory the daemon never holds."""
    scheduler_log = logging.getLogger("apscheduler")
    handler = logging.FileHandler(path.with_suffix(".apscheduler.log"), encoding="utf-8")
    with path.open("w", encoding="utf-8") as out:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.WriteLoggerFactory(file=out),
        )
        scheduler_log.addHandler(handler)
        scheduler_log.propagate = False
        try:
            yield
        finally:
            scheduler_log.propagate = True
            scheduler_log.removeHandler(handler)
            handler.close()
            structlog.reset_defaults()


def rss_mib() -> float:
    """Resident memory of this process (test, simulator and daemon together)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def test_soak_with_random_faults_loses_nothing_and_leaks_nothing() -> None:
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp, logging_to(Path(tmp) / "soak.log"):
        async with (
            run_simulator(stores=make_stores(10, 10), seed=SEED, expire_after=20) as sim,
            serving(FlakyReceiver(random.Random(SEED))) as receiver,
        ):
            settings = soak_settings(Path(tmp), sim, receiver)
            driver = Driver(sim, DriverConfig(step_seconds=0.7, create_every=3, history=1))
            for kind, options, probability in FAULTS:
                sim.inject(kind, times=None, probability=probability, **options)
            stop_driving = asyncio.Event()
            baseline_tasks = daemon_tasks() + 1  # + the driver started below
            traced: list[int] = []
            rss: list[float] = []
            tasks_after: list[int] = []
            peak_tasks = 0
            started = time.monotonic()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(drive(driver, stop_driving))
                for run in range(RESTARTS):
                    seconds = SECONDS / RESTARTS
                    peak_tasks = max(peak_tasks, await run_for(settings, seconds, run, sim))
                    await asyncio.sleep(0)  # let finished handlers of the run go
                    tasks_after.append(daemon_tasks())
                    gc.collect()  # an engine's reference cycles go with the next collection
                    traced.append(tracemalloc.get_traced_memory()[0])
                    rss.append(rss_mib())
                stop_driving.set()
            elapsed = time.monotonic() - started
            sim.clear_faults()
            await final_checks(settings, sim, receiver)
            check_rate_limits(sim, elapsed)
            logged = [json.loads(x) for x in (Path(tmp) / "soak.log").read_text().splitlines()]
    tracemalloc.stop()

    growth = (traced[-1] - traced[0]) / 2**20
    disk = {
        "recording the poll failed; it will be judged again next time",
        "delivery paused: cannot record outcomes",
        "could not commit recent writes",
    }
    disk_errors = sum(e["event"] in disk for e in logged)
    print(
        f"\nsoak {elapsed:.0f}s: driver changes={driver.events} "
        f"events delivered={len(receiver.accepted)} attempts={receiver.attempts} "
        f"duplicates={receiver.duplicates} disk-fault error lines={disk_errors} "
        f"traced MiB={[round(t / 2**20, 1) for t in traced]} rss MiB={[round(r) for r in rss]} "
        f"tasks after each run={tasks_after} (baseline {baseline_tasks}) peak={peak_tasks}"
    )
    assert growth < 8, f"traced memory grew {growth:.1f} MiB after the first run"
    assert max(tasks_after) <= baseline_tasks, (tasks_after, baseline_tasks)
    # Faults are warnings; an error means a bug (an exception escaped a poll or a delivery),
    # except the read-only disk's own: once per outage from each writer.
    assert disk_errors, "the read-only window made no write fail"
    errors = [e for e in logged if e["level"] in ("error", "critical") and e["event"] not in disk]
    assert not errors, errors[:5]


async def run_for(settings: Settings, seconds: float, run: int, sim: Simulator) -> int:
    """One daemon run of `seconds`, stopped as SIGTERM would; returns the peak task count.
    A third of the way in, the config is reloaded (one store's interval changed, one store
    removed and another added back); in the second run, the state database is read-only for
    two seconds at mid-run (a disk remounted read-only)."""
    stop = asyncio.Event()
    peak = 0
    started = time.monotonic()
    reloaded = disk_fault = False
    async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
        serving_task = asyncio.create_task(engine.serve(stop, grace=settings.shutdown_grace))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not reloaded and time.monotonic() - started > seconds / 3:
                reloaded = True
                await engine.reload(reloaded_settings(settings, sim, run))
            if run == 1 and not disk_fault and time.monotonic() - started > seconds / 2:
                disk_fault = True
                with read_only_files(Path(settings.state.url.removeprefix("sqlite:///"))):
                    await asyncio.sleep(2)
            peak = max(peak, len(asyncio.all_tasks()))
            try:
                async with asyncio.timeout(1.0):
                    await asyncio.shield(serving_task)
            except TimeoutError:
                continue  # still serving, as it should: sample again
            raise AssertionError("the daemon stopped by itself")
        stop.set()
        async with asyncio.timeout(settings.shutdown_grace + 3):
            await serving_task
    return peak


def reloaded_settings(settings: Settings, sim: Simulator, run: int) -> Settings:
    """The soak's config with one store's interval changed and one store left out (a
    different one each run; the next run's start brings it back)."""
    stores = list(settings.stores)
    changed, dropped = stores[run % len(stores)], stores[(run + 7) % len(stores)]
    stores = [
        s.model_copy(update={"interval": 0.6}) if s is changed else s
        for s in stores
        if s is not dropped
    ]
    return settings.model_copy(update={"stores": stores})


def _hour_ahead() -> datetime:
    return utcnow() + timedelta(hours=1)


async def final_checks(settings: Settings, sim: Simulator, receiver: FlakyReceiver) -> None:
    receiver.fail_share = 0.0
    metrics = Metrics(CollectorRegistry())
    async with Engine(settings, metrics=metrics, clock=_hour_ahead) as engine:
        assert await engine.poll_all_once()  # faults are off: every store answers
        await engine.deliver_due_once()
        store = engine.store
        assert await store.outbox.list_deliveries(DeliveryStatus.PENDING) == []
        assert await store.outbox.list_deliveries(DeliveryStatus.DEAD) == []
        delivered = await store.outbox.list_deliveries(DeliveryStatus.DELIVERED, limit=1_000_000)
        tracked = await store.list_tasks()
    missing = {d.event_id for d in delivered} - set(receiver.accepted)
    assert not missing, f"{len(missing)} committed events never reached the receiver"

    # Ordered delivery: the events of one task arrived in the order they happened.
    arrived: dict[str, list[str]] = defaultdict(list)
    for event in receiver.accepted.values():  # dicts keep the order of first acceptance
        arrived[event["subject"]].append(event["observed_at"] or "")
    for subject, times in arrived.items():
        assert times == sorted(times), (subject, times)

    # Every status event's previous_status is the status of the task's event before it.
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in receiver.accepted.values():
        status = event["status"]
        if isinstance(status, str) and event["type"] == f"bulkwatch.task.{status.lower()}":
            chains[event["subject"]].append(event)
    silent = {f"{t.snapshot.store}/{t.task_id}" for t in tracked if t.silent_baseline}
    for subject, events in chains.items():
        events.sort(key=lambda e: e["observed_at"])
        first = events[0]["previous_status"]
        assert first is None or subject in silent, (subject, events)
        for before, after in itertools.pairwise(events):
            assert after["previous_status"] == before["status"], (subject, events)

    # After the last clean poll, what is tracked is what the platforms show.
    by_key = {(t.snapshot.store, t.task_id): t for t in tracked}
    for name, st in sim.stores.items():
        for task in sim.tasks(name):
            t = by_key[name, task.id]
            raw = task.status
            assert t.snapshot.raw_status == raw, (name, task.id, t.snapshot, raw)
            if st.platform is Platform.SHOPLINE:
                assert t.snapshot.status == TaskStatus(str(raw))


def check_rate_limits(sim: Simulator, elapsed: float) -> None:
    """No store ever got more than its platform's rate (plus one burst) on average."""
    for name, st in sim.stores.items():
        rate = PLATFORM_RATE_LIMITS[st.platform.value]
        allowed = rate * elapsed + 5 * RESTARTS  # each start begins with a full bucket
        assert st.stats.requests <= allowed, (name, st.stats.requests, allowed)
