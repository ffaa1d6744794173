"""Polls whose responses are byte for byte the last judged ones: neither parsed nor judged nor
written, yet every change, timer and failure is still seen.

The engine runs on a manual clock against the real simulator, and the endpoint row's
`last_success_at` tells a judged poll (it moves) from a skipped one (it stays).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import EndpointKey, EndpointState, Platform, TaskStatus
from bulkwatch.simulator import make_stores
from helpers.clock import ManualClock
from helpers.reliability_support import cycle, rig, sample
from helpers.webhook_receiver import Receiver

LAZZA = EndpointKey("lazza-1", Platform.SHOPLAZZA, "tasks")
LINE = EndpointKey("line-1", Platform.SHOPLINE, "QUERY")


async def endpoint_state(engine: Engine, key: EndpointKey) -> EndpointState:
    [state] = [e for e in await engine.store.list_endpoints(key.store) if e.key == key]
    return state


async def judged_at(engine: Engine, key: EndpointKey) -> datetime | None:
    return (await endpoint_state(engine, key)).last_success_at


def received(receiver: Receiver) -> list[str]:
    return [f"{e['type'].removeprefix('bulkwatch.')} {e['subject']}" for e in receiver.events]


async def step(engine: Engine, clock: ManualClock, seconds: float = 10.0) -> None:
    clock.advance(seconds)
    assert await cycle(engine)


async def test_identical_responses_are_not_judged_again_until_they_change(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with rig(tmp_path, make_stores(1, 1), clock=clock) as (sim, receiver, engine):
        at = clock.now.timestamp()
        sim.create_task("lazza-1", "q1", TaskStatus.RUNNING, now=at)
        sim.create_task("line-1", "b1", TaskStatus.RUNNING, operation_type="QUERY", now=at)
        await step(engine, clock)
        first = clock.now
        assert await judged_at(engine, LAZZA) == first
        assert await judged_at(engine, LINE) == first

        for _ in range(3):
            await step(engine, clock)
        # Three more successful polls of each endpoint, none of them judged or written.
        assert await judged_at(engine, LAZZA) == first
        assert await judged_at(engine, LINE) == first
        labels = {"platform": "shoplazza", "store": "lazza-1", "outcome": "ok"}
        assert sample(engine, "bulkwatch_polls_total", **labels) == 4
        metric = "bulkwatch_last_success_timestamp_seconds"
        last = sample(engine, metric, platform="shoplazza", store="lazza-1")
        assert last == clock.now.timestamp()  # the metric does not lag

        sim.set_status("lazza-1", "q1", TaskStatus.COMPLETED, now=clock.now.timestamp())
        sim.set_status("line-1", "b1", TaskStatus.COMPLETED, now=clock.now.timestamp())
        await step(engine, clock)
        assert await judged_at(engine, LAZZA) == clock.now
        assert await judged_at(engine, LINE) == clock.now
        await receiver.wait_for(4)
        assert sorted(received(receiver)) == [
            "task.completed lazza-1/q1",
            "task.completed line-1/b1",
            "task.running lazza-1/q1",
            "task.running line-1/b1",
        ]
        tasks = {(t.snapshot.store, t.task_id): t for t in await engine.store.list_tasks()}
        assert tasks["lazza-1", "q1"].snapshot.status is TaskStatus.COMPLETED


async def test_a_stall_is_reported_although_the_responses_never_change(tmp_path: Path) -> None:
    clock = ManualClock()
    defaults = {"stall_after": 60, "expiry_warning": 30}
    async with rig(tmp_path, make_stores(1, 1), clock=clock, defaults=defaults) as (
        sim,
        receiver,
        engine,
    ):
        at = clock.now.timestamp()
        sim.create_task("lazza-1", "q1", TaskStatus.RUNNING, now=at)
        sim.create_task("line-1", "b1", TaskStatus.RUNNING, operation_type="QUERY", now=at)
        await step(engine, clock)
        await step(engine, clock, 40)  # 50 s after creation: skipped, nothing due yet
        assert await judged_at(engine, LINE) == clock.now - timedelta(seconds=40)
        await step(engine, clock, 15)  # 65 s after creation: Shopline's task stalls
        assert await judged_at(engine, LINE) == clock.now
        await receiver.wait_for(3)
        assert received(receiver)[2] == "task.stalled line-1/b1"
        # Shoplazza lists no creation time: its task stalls 60 s after it was first seen.
        assert await judged_at(engine, LAZZA) == clock.now - timedelta(seconds=55)
        await step(engine, clock, 10)
        assert await judged_at(engine, LAZZA) == clock.now
        await receiver.wait_for(4)
        assert received(receiver)[3] == "task.stalled lazza-1/q1"
        await step(engine, clock)  # each reported once; identical polls are skipped again
        assert await judged_at(engine, LAZZA) == clock.now - timedelta(seconds=10)
        assert len(receiver.events) == 4


async def test_an_expiry_warning_is_sent_although_the_responses_never_change(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    defaults = {"expiry_warning": 60}
    async with rig(tmp_path, make_stores(0, 1), clock=clock, defaults=defaults) as (
        sim,
        receiver,
        engine,
    ):
        at = clock.now.timestamp()
        expires = clock.now + timedelta(seconds=300)
        sim.create_task("line-1", "b1", TaskStatus.RUNNING, operation_type="QUERY", now=at)
        await step(engine, clock)
        sim.set_status("line-1", "b1", TaskStatus.COMPLETED, now=at, expired_at=expires.timestamp())
        await step(engine, clock)
        await step(engine, clock, 200)  # 90 s before expiry: skipped
        assert [e["type"] for e in await receiver.wait_for(2)] == [
            "bulkwatch.task.running",
            "bulkwatch.task.completed",
        ]
        await step(engine, clock, 40)  # 50 s before expiry: inside the warning
        events = await receiver.wait_for(3)
        assert events[-1]["type"] == "bulkwatch.task.expiring"
        assert events[-1]["data"]["expires_at"] == expires.isoformat().replace("+00:00", "Z")


async def test_after_a_failure_the_same_response_is_judged_again(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rig(tmp_path, make_stores(1, 0), clock=clock, defaults={"down_after": 1}) as (
        sim,
        receiver,
        engine,
    ):
        sim.create_task("lazza-1", "q1", TaskStatus.RUNNING, now=clock.now.timestamp())
        await step(engine, clock)
        sim.inject(503, store="lazza-1")
        clock.advance(10)
        assert not await cycle(engine)
        assert (await endpoint_state(engine, LAZZA)).consecutive_failures == 1
        await step(engine, clock)  # the same list as before the failure: judged, store up
        state = await endpoint_state(engine, LAZZA)
        assert (state.consecutive_failures, state.last_success_at) == (0, clock.now)
        types = [e["type"] for e in await receiver.wait_for(3)]
        assert types == ["bulkwatch.task.running", "bulkwatch.store.down", "bulkwatch.store.up"]


async def test_a_response_with_problems_is_judged_and_counted_every_time(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with rig(tmp_path, make_stores(1, 0), clock=clock) as (sim, _, engine):
        at = clock.now.timestamp()
        sim.create_task("lazza-1", "q1", TaskStatus.RUNNING, now=at)
        unreadable = sim.create_task("lazza-1", "q2", TaskStatus.RUNNING, now=at)
        unreadable.status = "soon"  # not an integer query_status: the entry is skipped
        for _ in range(3):
            await step(engine, clock)
            assert await judged_at(engine, LAZZA) == clock.now
        labels = {"platform": "shoplazza", "store": "lazza-1", "kind": "invalid_response"}
        assert sample(engine, "bulkwatch_api_errors_total", **labels) == 3


async def test_task_gauges_show_what_the_platform_shows_now(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rig(tmp_path, make_stores(0, 1), clock=clock) as (sim, _, engine):
        at = clock.now.timestamp()
        sim.create_task("line-1", "b1", TaskStatus.RUNNING, operation_type="QUERY", now=at)
        await step(engine, clock)

        def shown(status: str) -> float:
            labels = {"platform": "shopline", "store": "line-1", "status": status}
            return sample(engine, "bulkwatch_tasks", **labels)

        assert (shown("RUNNING"), shown("COMPLETED")) == (1, 0)
        sim.replace_current("line-1", "QUERY", "b2", TaskStatus.COMPLETED, now=at)
        await step(engine, clock)
        # b1 was superseded: tracked (and reported) but no longer shown.
        assert (shown("RUNNING"), shown("COMPLETED")) == (0, 1)
        sim.clear_current("line-1", "QUERY")
        await step(engine, clock)
        assert (shown("RUNNING"), shown("COMPLETED")) == (0, 0)
