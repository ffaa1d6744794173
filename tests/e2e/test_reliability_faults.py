"""The fault matrix: every failing status and unreadable body, on both platforms, through the
real engine (HTTP on 127.0.0.1, SQLite, webhook receiver).

Each case starts from a store with task t1 RUNNING, changes t1 to COMPLETED on the platform, and
breaks the next answer. The broken poll must log a specific reason, count one
`bulkwatch_api_errors_total{kind}`, change no task state and send no task event; the next,
healthy poll must then report the completion: nothing was lost.

The simulator injects what it knows; a scripted platform (`platform_stub`) serves the bodies it
cannot make (missing ids, duplicate ids across pages, dates without offset, dropped
connections, Shoplazza's 400 for a bad token).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import StoreSpec
from bulkwatch.telemetry.metrics import Metrics
from helpers.platform_stub import PlatformStub, Reply, Seen, closed_port_url, json_reply
from helpers.reliability_support import cycle, rig, sample, states
from helpers.support import settings_for
from helpers.webhook_receiver import Receiver, running_receiver

LIMITS = {"timeout": 0.3, "max_body_bytes": 200_000, "down_after": 3}
PLATFORMS = ("shoplazza", "shopline")


@dataclass(frozen=True)
class SimCase:
    """A fault the simulator injects; `reason` may differ per platform."""

    id: str
    fault: dict[str, Any]
    kind: str
    reason: str | dict[str, str]
    platforms: tuple[str, ...] = PLATFORMS
    down_now: bool = False  # a failure a person must fix: store.down at the first one


SIM_CASES = [
    SimCase("401", {"kind": 401}, "auth", "token rejected", down_now=True),
    SimCase("402", {"kind": 402}, "frozen", "store is frozen", down_now=True),
    SimCase("403", {"kind": 403}, "forbidden", "access denied"),
    # A Shopline 404 means "no current task", a valid answer, so only Shoplazza fails on it.
    SimCase("404", {"kind": 404}, "client", "rejected the request", platforms=("shoplazza",)),
    SimCase("422", {"kind": 422}, "client", "rejected the request"),
    *[
        SimCase(str(code), {"kind": code}, "blocked", "security checks", down_now=True)
        for code in (423, 433, 434, 435, 436)
    ],
    SimCase(
        "429-retry-after", {"kind": "rate_limit", "retry_after": 3}, "rate_limited", "after 3 s"
    ),
    SimCase("429", {"kind": "rate_limit"}, "rate_limited", "rate limited by the platform"),
    *[
        SimCase(str(code), {"kind": code}, "server", "platform server error")
        for code in (500, 502, 503, 504)
    ],
    SimCase("html-502", {"kind": "html"}, "server", "502 Bad Gateway"),
    SimCase("html-200", {"kind": "html", "status": 200}, "invalid_response", "HTML page"),
    SimCase("truncated-json", {"kind": "malformed"}, "invalid_response", "not valid JSON"),
    # An empty Shopline body is "no current task", a valid answer.
    SimCase("empty-body", {"kind": "empty"}, "invalid_response", "empty body", ("shoplazza",)),
    SimCase(
        "wrong-types",
        {"kind": "wrong_types"},
        "invalid_response",
        {"shoplazza": "none of the 1 task entries", "shopline": "status that is a number"},
    ),
    SimCase(
        "over-size-cap",
        {"kind": "huge", "size": 300_000},
        "invalid_response",
        "larger than the 200000-byte limit",
    ),
    SimCase(
        "slower-than-timeout",
        {"kind": "slow", "delay": 0.8},
        "timeout",
        "no complete response within 0.3 s",
    ),
]


def one_store(platform: str) -> tuple[str, list[StoreSpec]]:
    if platform == "shoplazza":
        return "lazza-1", [StoreSpec("lazza-1", Platform.SHOPLAZZA)]
    return "line-1", [StoreSpec("line-1", Platform.SHOPLINE, operation_types=("QUERY",))]


def reason_of(reason: str | dict[str, str], platform: str) -> str:
    return reason if isinstance(reason, str) else reason[platform]


def task_types(receiver: Receiver) -> list[str]:
    return [e["type"] for e in receiver.events if e["type"].startswith("bulkwatch.task.")]


@pytest.mark.parametrize(
    ("case", "platform"),
    [
        pytest.param(case, platform, id=f"{platform}-{case.id}")
        for case in SIM_CASES
        for platform in case.platforms
    ],
)
async def test_a_simulated_fault_is_logged_counted_and_changes_no_task_state(
    tmp_path: Path, case: SimCase, platform: str
) -> None:
    name, stores = one_store(platform)
    async with rig(tmp_path, stores, defaults=LIMITS) as (sim, receiver, engine):
        sim.create_task(name, "t1", TaskStatus.RUNNING)
        assert await cycle(engine)
        before = states(await engine.store.list_tasks(name))

        sim.set_status(name, "t1", TaskStatus.COMPLETED)
        fault = dict(case.fault)
        sim.inject(fault.pop("kind"), store=name, **fault)
        with capture_logs(processors=[merge_contextvars]) as logs:
            assert not await cycle(engine)

        assert states(await engine.store.list_tasks(name)) == before
        assert task_types(receiver) == ["bulkwatch.task.running"]
        labels = {"platform": platform, "store": name}
        assert sample(engine, "bulkwatch_api_errors_total", **labels, kind=case.kind) == 1
        [failing] = [e for e in logs if e["event"] == "poll failing"]
        assert (failing["store"], failing["kind"], failing["log_level"]) == (
            name,
            case.kind,
            "warning",
        )
        assert reason_of(case.reason, platform) in failing["error"]
        assert "Traceback" not in str(logs)
        downs = [e for e in receiver.events if e["type"] == "bulkwatch.store.down"]
        assert len(downs) == (1 if case.down_now else 0)
        assert sample(engine, "bulkwatch_store_up", **labels) == (0 if case.down_now else 1)
        assert engine.backoff.waiting(name, engine.clock())  # the store waits before its next poll

        assert await cycle(engine)  # the fault is over: the change comes through, once
        assert task_types(receiver) == ["bulkwatch.task.running", "bulkwatch.task.completed"]
        assert not engine.backoff.waiting(name, engine.clock())


async def test_a_rejected_token_takes_the_store_down_at_once_naming_it(tmp_path: Path) -> None:
    name, stores = one_store("shopline")
    async with rig(tmp_path, stores, defaults=LIMITS) as (sim, receiver, engine):
        sim.inject(401, store=name, times=None)
        assert not await cycle(engine)
        [down] = [e for e in receiver.events if e["type"] == "bulkwatch.store.down"]
        assert down["data"]["store"] == name
        assert down["data"]["kind"] == "auth"
        assert "token rejected" in down["data"]["reason"]
        assert not await cycle(engine)  # still failing: no second store.down
        assert [e["type"] for e in receiver.events] == ["bulkwatch.store.down"]


# --- bodies only a scripted platform serves ----------------------------------------------------


def lazza_entry(task_id: str, status: object, **extra: object) -> dict[str, object]:
    return {"query_id": task_id, "query_status": status, "query": {"url": ""}, **extra}


def line_body(task_id: str, status: object, **extra: object) -> dict[str, object]:
    return {"id": task_id, "status": status, "type": "QUERY", **extra}


RUNNING = {"shoplazza": 1, "shopline": "RUNNING"}
COMPLETED = {"shoplazza": 2, "shopline": "COMPLETED"}
PAGE_LIMIT = 2
# The engine runs on this test's own clock; the date without offset is half an hour before it,
# well inside every stall and expiry window whatever today's date is.
NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
NAIVE = (NOW - timedelta(minutes=30)).replace(tzinfo=None).isoformat()


@dataclass
class World:
    """A scripted platform with one store: t1 (and, on Shoplazza, t2), and the next fault."""

    platform: str
    tasks: dict[str, object] = field(default_factory=dict)
    fault: Callable[[World, Seen], Reply] | None = None

    def respond(self, seen: Seen) -> Reply:
        return self.normal(seen) if self.fault is None else self.fault(self, seen)

    def normal(self, seen: Seen) -> Reply:
        if self.platform == "shopline":
            return json_reply(line_body("t1", self.tasks["t1"]), headers={"traceId": "trace-1"})
        page = int(seen.query["page"])
        entries = [lazza_entry(task_id, status) for task_id, status in self.tasks.items()]
        on_page = entries[(page - 1) * PAGE_LIMIT : page * PAGE_LIMIT]
        return json_reply({"tasks": on_page}, headers={"Request-Id": f"req-{page}"})


def _dropped(world: World, seen: Seen) -> Reply:
    return dataclasses.replace(world.normal(seen), reset=True)


def _bad_credentials(world: World, seen: Seen) -> Reply:
    return json_reply({"error": "Invalid access token"}, 400, {"Request-Id": "req-9"})


def _not_json(world: World, seen: Seen) -> Reply:
    return Reply(200, b"Service temporarily unavailable", {"Content-Type": "text/plain"})


def _first_page(seen: Seen, *entries: dict[str, object]) -> Reply:
    """A Shoplazza page: `entries` on page 1, nothing after it."""
    return json_reply({"tasks": list(entries) if seen.query["page"] == "1" else []})


def _missing_id(world: World, seen: Seen) -> Reply:
    if world.platform == "shopline":
        return json_reply({"status": "COMPLETED", "type": "QUERY"})
    return _first_page(seen, {"query_status": 2}, lazza_entry("t2", 1))


def _duplicate_across_pages(world: World, seen: Seen) -> Reply:
    # The list moved while we paged: t1 shows up again, finished, on page 2.
    if seen.query["page"] == "1":
        return json_reply({"tasks": [lazza_entry("t1", 1), lazza_entry("t2", 1)]})
    return json_reply({"tasks": [lazza_entry("t1", 2)]})


def _naive_date(world: World, seen: Seen) -> Reply:
    if world.platform == "shopline":
        return json_reply(line_body("t1", "RUNNING", createdAt=NAIVE))
    return _first_page(seen, lazza_entry("t1", 1, created_at=NAIVE), lazza_entry("t2", 1))


def _status_not_an_int(world: World, seen: Seen) -> Reply:
    return _first_page(seen, lazza_entry("t1", "done"), lazza_entry("t2", 1))


@dataclass(frozen=True)
class StubCase:
    id: str
    fault: Callable[[World, Seen], Reply]
    kind: str
    reason: str | dict[str, str]
    platforms: tuple[str, ...] = PLATFORMS
    failed: bool = True  # False: the poll succeeds, the bad entry is skipped or assumed
    down_now: bool = False


STUB_CASES = [
    StubCase(
        "400-bad-credentials",
        _bad_credentials,
        "auth",
        "token rejected",
        ("shoplazza",),
        down_now=True,
    ),
    StubCase("connection-dropped", _dropped, "network", "closed before the whole body"),
    StubCase("plain-text-body", _not_json, "invalid_response", "not valid JSON"),
    # One Shoplazza entry without an id is skipped; a Shopline body without one is refused.
    StubCase(
        "missing-id",
        _missing_id,
        "invalid_response",
        "missing query_id; skipped",
        ("shoplazza",),
        failed=False,
    ),
    StubCase("missing-id", _missing_id, "invalid_response", "without a usable id", ("shopline",)),
    StubCase(
        "duplicate-id-across-pages",
        _duplicate_across_pages,
        "invalid_response",
        "duplicate query_id 't1' (first seen on page 1); skipped",
        ("shoplazza",),
        failed=False,
    ),
    StubCase(
        "date-without-offset",
        _naive_date,
        "invalid_response",
        "has no UTC offset; read as UTC",
        failed=False,
    ),
    StubCase(
        "status-not-an-integer",
        _status_not_an_int,
        "invalid_response",
        "query_status 'done' of task 't1' is not an integer; skipped",
        ("shoplazza",),
        failed=False,
    ),
]


def stub_store(platform: str, url: str) -> dict[str, Any]:
    if platform == "shoplazza":
        return {
            "name": "s1",
            "platform": platform,
            "domain": "shop1",
            "access_token": "tok-s1",
            "base_url": url,
            "page_limit": PAGE_LIMIT,
        }
    return {
        "name": "s1",
        "platform": platform,
        "handle": "shop1",
        "access_token": "tok-s1",
        "base_url": url,
        "operation_types": ["QUERY"],
    }


@pytest.mark.parametrize(
    ("case", "platform"),
    [
        pytest.param(case, platform, id=f"{platform}-{case.id}")
        for case in STUB_CASES
        for platform in case.platforms
    ],
)
async def test_a_scripted_bad_answer_is_logged_counted_and_changes_no_task_state(
    tmp_path: Path, platform_stub: PlatformStub, case: StubCase, platform: str
) -> None:
    world = World(platform, {"t1": RUNNING[platform]})
    if platform == "shoplazza":
        world.tasks["t2"] = 1
    platform_stub.respond = world.respond
    async with running_receiver() as receiver:
        settings = settings_for(
            tmp_path, [stub_store(platform, platform_stub.url)], receiver.url, defaults=LIMITS
        )
        engine = Engine(settings, metrics=Metrics(CollectorRegistry()), clock=lambda: NOW)
        async with engine:
            assert await cycle(engine)
            before = states(await engine.store.list_tasks("s1"))
            first = task_types(receiver)

            world.tasks["t1"] = COMPLETED[platform]
            world.fault = case.fault
            with capture_logs(processors=[merge_contextvars]) as logs:
                assert await cycle(engine) is not case.failed

            assert states(await engine.store.list_tasks("s1")) == before
            assert task_types(receiver) == first
            labels = {"platform": platform, "store": "s1"}
            assert sample(engine, "bulkwatch_api_errors_total", **labels, kind=case.kind) == 1
            message = "poll failing" if case.failed else "response entry skipped or assumed"
            [logged] = [e for e in logs if e["event"] == message]
            assert logged["store"] == "s1"
            said = logged["error"] if case.failed else logged["problem"]
            assert reason_of(case.reason, platform) in said
            downs = [e for e in receiver.events if e["type"] == "bulkwatch.store.down"]
            assert len(downs) == (1 if case.down_now else 0)

            world.fault = None
            assert await cycle(engine)
            assert task_types(receiver) == [*first, "bulkwatch.task.completed"]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_refused_connection_is_a_network_failure_and_changes_nothing(
    tmp_path: Path, platform_stub: PlatformStub, platform: str
) -> None:
    world = World(platform, {"t1": RUNNING[platform]})
    platform_stub.respond = world.respond
    async with running_receiver() as receiver:

        def engine_at(url: str) -> Engine:
            stores = [stub_store(platform, url)]
            settings = settings_for(tmp_path, stores, receiver.url, defaults=LIMITS)
            return Engine(settings, metrics=Metrics(CollectorRegistry()))

        async with engine_at(platform_stub.url) as engine:
            assert await cycle(engine)
            before = states(await engine.store.list_tasks("s1"))
        world.tasks["t1"] = COMPLETED[platform]
        async with engine_at(closed_port_url()) as engine:  # the platform is unreachable
            with capture_logs(processors=[merge_contextvars]) as logs:
                assert not await cycle(engine)
            assert states(await engine.store.list_tasks("s1")) == before
            labels = {"platform": platform, "store": "s1", "kind": "network"}
            assert sample(engine, "bulkwatch_api_errors_total", **labels) == 1
            [failing] = [e for e in logs if e["event"] == "poll failing"]
            assert "connection failed" in failing["error"]
        async with engine_at(platform_stub.url) as engine:
            assert await cycle(engine)
        assert task_types(receiver)[-1] == "bulkwatch.task.completed"
