"""End to end in one process: simulator → engine (real HTTP, real SQLite) → webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bulkwatch import __version__
from bulkwatch.daemon.engine import Engine
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import Simulator, StoreSpec, make_stores, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.platform_stub import PlatformStub, json_reply
from helpers.support import settings_for
from helpers.webhook_receiver import Receiver, Reply, running_receiver


@asynccontextmanager
async def rig(
    tmp_path: Path, stores: list[StoreSpec], **extra: Any
) -> AsyncIterator[tuple[Simulator, Receiver, Engine]]:
    async with run_simulator(stores=stores) as sim, running_receiver() as receiver:
        settings = settings_for(tmp_path, sim.store_configs(), receiver.url, **extra)
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            yield sim, receiver, engine


async def cycle(engine: Engine) -> bool:
    """One poll of every endpoint, then every due delivery once."""
    ok = await engine.poll_all_once()
    await engine.deliver_due_once()
    return ok


def changes(receiver: Receiver, start: int = 0) -> list[tuple[str, str | None, str | None]]:
    return [
        (e["type"], e["data"].get("previous_status"), e["data"].get("status"))
        for e in receiver.events[start:]
    ]


async def test_every_shoplazza_transition_is_delivered_once(tmp_path: Path) -> None:
    async with rig(tmp_path, make_stores(1, 0)) as (sim, receiver, engine):
        sim.create_task("lazza-1", "done-before", TaskStatus.COMPLETED)
        assert await cycle(engine)
        assert receiver.events == []  # baseline: finished tasks are recorded silently

        sim.create_task("lazza-1", "q1", TaskStatus.CREATED)
        assert await cycle(engine)
        sim.advance("lazza-1", "q1")
        assert await cycle(engine)
        assert await cycle(engine)  # nothing changed: nothing sent
        sim.advance("lazza-1", "q1")
        assert await cycle(engine)
        sim.set_status("lazza-1", "q1", 7)  # an undocumented code
        assert await cycle(engine)
        assert changes(receiver) == [
            ("bulkwatch.task.created", None, "CREATED"),
            ("bulkwatch.task.running", "CREATED", "RUNNING"),
            ("bulkwatch.task.completed", "RUNNING", "COMPLETED"),
            ("bulkwatch.task.unknown", "COMPLETED", "UNKNOWN"),
        ]
        completed = receiver.events[2]
        assert completed["source"] == "bulkwatch/test"
        assert completed["subject"] == "lazza-1/q1"
        assert completed["data"]["platform"] == "shoplazza"
        assert completed["data"]["raw_status"] == 2
        assert completed["data"]["url"].startswith("https://")
        assert receiver.events[3]["data"]["raw_status"] == 7
        assert len({e["id"] for e in receiver.events}) == 4


async def test_every_shopline_transition_and_superseding_is_delivered(tmp_path: Path) -> None:
    async with rig(tmp_path, make_stores(0, 1)) as (sim, receiver, engine):
        assert await cycle(engine)
        sim.create_task("line-1", "b1", TaskStatus.CREATED, operation_type="QUERY")
        sim.create_task("line-1", "m1", TaskStatus.RUNNING, operation_type="MUTATION")
        assert await cycle(engine)
        for status in ("RUNNING", "COMPLETED", "EXPIRED"):
            sim.set_status("line-1", "b1", status)
            assert await cycle(engine)
        sim.set_status("line-1", "m1", "CANCELING")
        assert await cycle(engine)
        sim.set_status("line-1", "m1", "CANCELED")
        assert await cycle(engine)
        sim.create_task("line-1", "b2", TaskStatus.RUNNING, operation_type="QUERY")
        assert await cycle(engine)
        sim.create_task("line-1", "b3", TaskStatus.CREATED, operation_type="QUERY")  # replaces b2
        assert await cycle(engine)
        sim.set_status("line-1", "b3", "FAILED", error_code="ACCESS_DENIED", reason="no scope")
        assert await cycle(engine)

        got = [(e["type"], e["subject"], e["data"].get("previous_status")) for e in receiver.events]
        assert sorted(got[:2]) == [
            ("bulkwatch.task.created", "line-1/b1", None),
            ("bulkwatch.task.running", "line-1/m1", None),
        ]
        assert got[2:8] == [
            ("bulkwatch.task.running", "line-1/b1", "CREATED"),
            ("bulkwatch.task.completed", "line-1/b1", "RUNNING"),
            ("bulkwatch.task.expired", "line-1/b1", "COMPLETED"),
            ("bulkwatch.task.canceling", "line-1/m1", "RUNNING"),
            ("bulkwatch.task.canceled", "line-1/m1", "CANCELING"),
            ("bulkwatch.task.running", "line-1/b2", None),
        ]
        # One poll saw both: deliveries of one batch run concurrently, in any order.
        assert sorted(got[8:10]) == [
            ("bulkwatch.task.created", "line-1/b3", None),
            ("bulkwatch.task.superseded", "line-1/b2", None),
        ]
        assert got[10:] == [("bulkwatch.task.failed", "line-1/b3", "CREATED")]
        by_type = {e["type"]: e for e in receiver.events}
        superseded = by_type["bulkwatch.task.superseded"]["data"]
        assert (superseded["status"], superseded["superseded_by"]) == ("RUNNING", "b3")
        completed = next(e for e in receiver.events if e["type"] == "bulkwatch.task.completed")
        data = completed["data"]
        assert data["operation_type"] == "QUERY"
        assert data["url"] == data["partial_data_url"]
        assert data["expires_at"].endswith("Z")
        failed = by_type["bulkwatch.task.failed"]["data"]
        assert (failed["error_code"], failed["reason"]) == ("ACCESS_DENIED", "no scope")


SHAPES = [
    StoreSpec("lazza-tasks", Platform.SHOPLAZZA, body_style="tasks"),
    StoreSpec("lazza-querys", Platform.SHOPLAZZA, body_style="querys"),
    StoreSpec("lazza-wrapped", Platform.SHOPLAZZA, body_style="wrapped"),
    StoreSpec("line-plain", Platform.SHOPLINE, operation_types=("QUERY",)),
    StoreSpec("line-wrapped", Platform.SHOPLINE, body_style="wrapped", operation_types=("QUERY",)),
    *[
        StoreSpec(
            f"line-empty-{style}", Platform.SHOPLINE, empty_style=style, operation_types=("QUERY",)
        )
        for style in ("object", "null", "empty", "404", "data_null")
    ],
]


async def test_every_body_shape_gives_the_same_events(tmp_path: Path) -> None:
    async with rig(tmp_path, SHAPES) as (sim, receiver, engine):
        assert await cycle(engine)  # every "no task" shape is a successful, empty poll
        for spec in SHAPES:
            sim.create_task(spec.name, "t1", TaskStatus.RUNNING)
        assert await cycle(engine)
        for spec in SHAPES:
            sim.set_status(spec.name, "t1", TaskStatus.COMPLETED)
        assert await cycle(engine)
        got = sorted((e["subject"], e["type"]) for e in receiver.events)
        expected = sorted(
            (f"{spec.name}/t1", f"bulkwatch.task.{s}")
            for spec in SHAPES
            for s in ("running", "completed")
        )
        assert got == expected


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"kind": 401}, "auth"),
        ({"kind": 402}, "frozen"),
        ({"kind": 403}, "forbidden"),
        ({"kind": 423}, "blocked"),
        ({"kind": "rate_limit", "retry_after": 3}, "rate_limited"),
        ({"kind": 503}, "server"),
        ({"kind": "malformed"}, "invalid_response"),
        ({"kind": "html"}, "server"),
        ({"kind": "wrong_types"}, "invalid_response"),
        ({"kind": "huge", "size": 300_000}, "invalid_response"),
        ({"kind": "slow", "delay": 1.0}, "timeout"),
    ],
)
@pytest.mark.parametrize("platform", ["shoplazza", "shopline"])
async def test_each_failure_class_is_counted_and_changes_no_state(
    tmp_path: Path, fault: dict[str, Any], kind: str, platform: str
) -> None:
    stores = make_stores(1, 0) if platform == "shoplazza" else make_stores(0, 1)
    name = stores[0].name
    extra = {"defaults": {"timeout": 0.3, "max_body_bytes": 200_000, "down_after": 2}}
    if platform == "shopline":
        stores = [StoreSpec(name, Platform.SHOPLINE, operation_types=("QUERY",))]
    async with rig(tmp_path, stores, **extra) as (sim, receiver, engine):
        sim.create_task(name, "t1", TaskStatus.RUNNING)
        assert await cycle(engine)
        assert changes(receiver) == [("bulkwatch.task.running", None, "RUNNING")]
        before = await engine.store.list_tasks(name)

        sim.set_status(name, "t1", TaskStatus.COMPLETED)
        f = dict(fault)
        sim.inject(f.pop("kind"), store=name, times=2, **f)
        assert not await cycle(engine)
        assert await engine.store.list_tasks(name) == before
        value = engine.metrics.registry.get_sample_value(
            "bulkwatch_api_errors_total", {"platform": platform, "store": name, "kind": kind}
        )
        assert value == 1
        assert not await cycle(engine)  # second failure: by now the store is down, reported once
        assert changes(receiver, 1) == [("bulkwatch.store.down", None, None)]
        down = receiver.events[1]["data"]
        assert down["store"] == name
        assert down["kind"] == kind

        assert await cycle(engine)  # fault over: the change is seen, the store is up again
        assert sorted(changes(receiver, 2)) == [
            ("bulkwatch.store.up", None, None),
            ("bulkwatch.task.completed", "RUNNING", "COMPLETED"),
        ]


async def test_token_rejected_names_the_store(tmp_path: Path) -> None:
    async with rig(tmp_path, make_stores(0, 1), defaults={"down_after": 1}) as (sim, rec, engine):
        sim.inject(401, store="line-1", times=None)
        assert not await cycle(engine)
        (down,) = [e for e in rec.events if e["type"] == "bulkwatch.store.down"]
        assert down["data"]["store"] == "line-1"
        assert "token" in down["data"]["reason"]


async def test_one_failing_store_does_not_stop_the_others(tmp_path: Path) -> None:
    async with rig(tmp_path, make_stores(2, 1)) as (sim, receiver, engine):
        assert await cycle(engine)
        sim.inject(500, store="lazza-1", times=None)
        for store in ("lazza-1", "lazza-2", "line-1"):
            sim.create_task(store, "t", TaskStatus.RUNNING)
        assert not await cycle(engine)
        assert sorted(e["subject"] for e in receiver.events) == ["lazza-2/t", "line-1/t"]


async def test_restart_resumes_pending_deliveries_and_repeats_nothing(tmp_path: Path) -> None:
    async with run_simulator(stores=make_stores(1, 1)) as sim, running_receiver() as receiver:
        settings = settings_for(tmp_path, sim.store_configs(), receiver.url)
        sim.create_task("lazza-1", "a", TaskStatus.RUNNING)
        sim.create_task("line-1", "b", TaskStatus.CREATED)
        receiver.script = [Reply(503), Reply(503)]
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            assert await cycle(engine)
        assert receiver.events == []  # both attempts failed; rows stay pending

        sim.set_status("line-1", "b", "RUNNING")
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            await asyncio.sleep(0.25)  # let the retry backoff (at most 0.2 s here) fall due
            assert await cycle(engine)
            assert await cycle(engine)
        first_ids = {e["subject"] + e["type"]: e["id"] for e in receiver.events}
        assert sorted(first_ids) == [
            "lazza-1/abulkwatch.task.running",
            "line-1/bbulkwatch.task.created",
            "line-1/bbulkwatch.task.running",
        ]

        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            assert await cycle(engine)
        assert len(receiver.events) == 3  # same state seen again after restart: nothing new


async def test_scheduled_daemon_delivers_and_stops_cleanly(tmp_path: Path) -> None:
    async with run_simulator(stores=make_stores(1, 1)) as sim, running_receiver() as receiver:
        settings = settings_for(
            tmp_path, sim.store_configs(), receiver.url, defaults={"interval": 0.2, "jitter": 0}
        )
        stop = asyncio.Event()
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            daemon = asyncio.create_task(engine.serve(stop, grace=2))
            await sim.wait_for_requests("lazza-1", 1)
            sim.create_task("lazza-1", "a", TaskStatus.RUNNING)
            sim.create_task("line-1", "b", TaskStatus.RUNNING)
            await receiver.wait_for(2)
            sim.set_status("line-1", "b", "COMPLETED")
            await receiver.wait_for(3)
            stop.set()
            async with asyncio.timeout(5):
                await daemon
        assert sorted(receiver.types()) == [
            ("bulkwatch.task.completed", "line-1/b"),
            ("bulkwatch.task.running", "lazza-1/a"),
            ("bulkwatch.task.running", "line-1/b"),
        ]


async def test_notifier_filters_route_events_by_type_and_store(tmp_path: Path) -> None:
    async with (
        run_simulator(stores=make_stores(2, 1)) as sim,
        running_receiver() as everything,
        running_receiver() as completed_lazza,
    ):
        settings = settings_for(
            tmp_path,
            sim.store_configs(),
            notifiers=[
                {"name": "all", "type": "webhook", "url": everything.url},
                {
                    "name": "picky",
                    "type": "webhook",
                    "url": completed_lazza.url,
                    "events": ["bulkwatch.task.completed", "bulkwatch.task.fail*"],
                    "stores": ["lazza-*"],
                },
            ],
        )
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            for store in ("lazza-1", "lazza-2", "line-1"):
                sim.create_task(store, "t", TaskStatus.RUNNING)
            assert await cycle(engine)
            sim.set_status("lazza-1", "t", TaskStatus.COMPLETED)
            sim.set_status("line-1", "t", "COMPLETED")
            assert await cycle(engine)
        assert len(everything.events) == 5
        assert completed_lazza.types() == [("bulkwatch.task.completed", "lazza-1/t")]


async def test_metrics_count_polls_events_transitions_and_tasks(tmp_path: Path) -> None:
    async with rig(tmp_path, make_stores(1, 0)) as (sim, _receiver, engine):
        sim.create_task("lazza-1", "t", TaskStatus.CREATED)
        assert await cycle(engine)
        sim.advance("lazza-1", "t")
        assert await cycle(engine)
        value = engine.metrics.registry.get_sample_value
        labels = {"platform": "shoplazza", "store": "lazza-1"}
        assert value("bulkwatch_polls_total", {**labels, "outcome": "ok"}) == 2
        assert value("bulkwatch_tasks", {**labels, "status": "RUNNING"}) == 1
        assert value("bulkwatch_tasks", {**labels, "status": "CREATED"}) == 0
        assert value("bulkwatch_events_total", {"type": "bulkwatch.task.running"}) == 1
        assert (
            value(
                "bulkwatch_transitions_total",
                {"platform": "shoplazza", "from": "CREATED", "to": "RUNNING"},
            )
            == 1
        )
        assert (
            value("bulkwatch_deliveries_total", {"notifier": "hook", "outcome": "delivered"}) == 2
        )
        assert value("bulkwatch_outbox_pending", {"notifier": "hook"}) == 0
        assert value("bulkwatch_store_up", labels) == 1


async def test_polls_and_deliveries_carry_one_user_agent(
    tmp_path: Path, platform_stub: PlatformStub
) -> None:
    running = {"query_id": "t1", "query_status": 1, "query": {"url": ""}}
    platform_stub.script(json_reply({"tasks": [running]}))
    store = {
        "name": "s1",
        "platform": "shoplazza",
        "domain": "shop1",
        "access_token": "tok-1",
        "base_url": platform_stub.url,
    }
    async with running_receiver() as receiver:
        settings = settings_for(tmp_path, [store], receiver.url)
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            assert await engine.poll_all_once()  # a running task at baseline: one event
            await engine.deliver_due_once()
    [poll] = platform_stub.seen
    assert poll.headers.getall("User-Agent") == [f"bulkwatch/{__version__}"]
    [delivery] = receiver.accepted
    assert delivery.headers["user-agent"] == f"bulkwatch/{__version__}"
