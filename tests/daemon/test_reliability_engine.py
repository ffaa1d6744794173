"""Backoff and isolation through the real engine: scheduled polls skip a failing store, a new
token ends its wait, and one hanging store delays no other store's polls."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.scheduler import InflightJobs
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import Simulator, StoreSpec, make_stores, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.reliability_support import rig, sample
from helpers.support import settings_for
from helpers.webhook_receiver import running_receiver

INTERVAL = 10.0


async def tick(engine: Engine, clock: ManualClock, seconds: float = INTERVAL) -> None:
    """Move the clock one interval and run every endpoint's scheduled job once."""
    clock.advance(seconds)
    for source, key in engine.endpoints:
        await engine.poll_if_due(source, key)
    await engine.deliver_due_once()


def polls(engine: Engine, store: str, outcome: str, platform: str = "shoplazza") -> float:
    labels = {"platform": platform, "store": store, "outcome": outcome}
    return sample(engine, "bulkwatch_polls_total", **labels)


async def test_a_failing_store_backs_off_exponentially_and_a_success_resets_it(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    defaults = {"interval": INTERVAL, "backoff_max": 80, "down_after": 100}
    async with rig(tmp_path, make_stores(2, 0), clock=clock, defaults=defaults) as (sim, _, eng):
        sim.inject(503, store="lazza-1", times=None)
        for _ in range(30):
            await tick(eng, clock)
        # Waits of at least 5, 10, 20, 40, 40... s: far fewer requests than the 30 slots.
        requests = sim.request_count("lazza-1")
        assert 6 <= requests <= 12
        assert polls(eng, "lazza-1", "error") == requests
        assert polls(eng, "lazza-1", "skipped") == 30 - requests
        assert sim.request_count("lazza-2") == 30  # the healthy store kept its schedule
        assert polls(eng, "lazza-2", "skipped") == 0

        sim.clear_faults()
        for _ in range(9):  # at most 80 s until the store is tried again
            await tick(eng, clock)
        assert not eng.backoff.waiting("lazza-1", clock())
        after = sim.request_count("lazza-1")
        await tick(eng, clock)
        assert sim.request_count("lazza-1") == after + 1  # back on its normal interval


async def test_a_429_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rig(tmp_path, make_stores(1, 0), clock=clock, defaults={"interval": INTERVAL}) as (
        sim,
        _,
        eng,
    ):
        sim.inject("rate_limit", store="lazza-1", retry_after=25)
        await tick(eng, clock)
        await tick(eng, clock)  # +10 s: still waiting
        await tick(eng, clock)  # +20 s: still waiting
        assert sim.request_count("lazza-1") == 1
        await tick(eng, clock)  # +30 s: Retry-After (25 s, +10 % jitter at most) is over
        assert sim.request_count("lazza-1") == 2
        assert polls(eng, "lazza-1", "ok") == 1


async def test_a_rejected_token_waits_slowly_until_the_token_file_is_renewed(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    token_file = tmp_path / "line-1.token"
    token_file.write_text("expired-token\n", encoding="utf-8")
    spec = [StoreSpec("line-1", Platform.SHOPLINE, operation_types=("QUERY",))]
    async with (
        run_simulator(stores=spec, clock=clock.timestamp) as sim,
        running_receiver() as receiver,
    ):
        [store] = sim.store_configs()
        del store["access_token"]
        store["access_token_file"] = str(token_file)
        defaults = {"interval": INTERVAL, "auth_retry": 600}
        settings = settings_for(tmp_path, [store], receiver.url, defaults=defaults)
        async with Engine(settings, metrics=Metrics(CollectorRegistry()), clock=clock) as eng:
            sim.create_task("line-1", "b1", TaskStatus.RUNNING)
            await tick(eng, clock)
            for _ in range(20):  # 200 s of a 450-600 s wait: no request
                await tick(eng, clock)
            assert sim.request_count("line-1") == 1
            assert sample(eng, "bulkwatch_store_up", platform="shopline", store="line-1") == 0
            assert [e["type"] for e in receiver.events] == ["bulkwatch.store.down"]

            token_file.write_text(sim.store("line-1").token + "\n", encoding="utf-8")
            await tick(eng, clock)  # the renewed token ends the wait at once
            assert sim.request_count("line-1") == 2
            assert sorted(e["type"] for e in receiver.events) == [
                "bulkwatch.store.down",
                "bulkwatch.store.up",
                "bulkwatch.task.running",
            ]


# --- isolation ---------------------------------------------------------------------------------


async def arrivals(sim: Simulator, store: str, count: int) -> list[float]:
    """Loop times at which `store` received its first `count` requests."""
    loop = asyncio.get_running_loop()
    times = []
    for n in range(1, count + 1):
        await sim.wait_for_requests(store, n)
        times.append(loop.time())
    return times


async def test_a_hanging_store_and_a_garbage_store_delay_no_other_store(tmp_path: Path) -> None:
    stores = [
        *make_stores(3, 0),
        StoreSpec("line-1", Platform.SHOPLINE, operation_types=("QUERY",)),
    ]
    defaults = {"interval": 0.2, "jitter": 0, "timeout": 0.5, "max_body_bytes": 100_000}
    async with rig(tmp_path, stores, defaults=defaults) as (sim, _, engine):
        sim.inject("slow", store="lazza-1", delay=1.0, times=None)  # hangs past the timeout
        sim.inject("huge", store="lazza-2", size=150_000, times=None)  # garbage, over the cap
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            daemon = tg.create_task(engine.serve(stop, grace=1))
            async with asyncio.timeout(10):
                healthy = await asyncio.gather(
                    arrivals(sim, "lazza-3", 10), arrivals(sim, "line-1", 10)
                )
            stop.set()
            await daemon
        for times in healthy:
            gaps = [b - a for a, b in itertools.pairwise(times)]
            # Every 0.2 s; a gap near 0.5 s would mean a wait on the hanging store's timeout.
            assert max(gaps) < 0.4, gaps
        # The hanging store never had two polls in flight: no pile-up behind the timeout.
        assert sim.request_count("lazza-1") <= 4
        labels = {"platform": "shoplazza", "store": "lazza-1", "kind": "timeout"}
        assert sample(engine, "bulkwatch_api_errors_total", **labels) >= 1


# --- finishing in-flight polls at shutdown -----------------------------------------------------


async def test_finish_waits_for_polls_then_cancels_the_late_ones_quietly() -> None:
    jobs = InflightJobs()
    quick_done = asyncio.Event()
    hang = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0)
        quick_done.set()

    async def slow() -> None:
        await hang.wait()  # never set: only cancellation ends it

    runs = [
        asyncio.create_task(jobs.wrap(poll, name)()) for poll, name in ((quick, "q"), (slow, "s"))
    ]
    # Neither job has started yet: finish must still see (and wait for) both.
    cancelled = await jobs.finish(asyncio.get_running_loop().time() + 0.2)
    assert cancelled == 1
    assert quick_done.is_set()
    assert len(jobs) == 0
    for run in runs:
        assert run.done()
        assert not run.cancelled()  # the scheduler sees two jobs that returned normally
        assert run.exception() is None


async def test_a_job_cancelled_itself_still_raises() -> None:
    jobs = InflightJobs()
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    run = asyncio.create_task(jobs.wrap(slow, "s")())
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert len(jobs) == 0
