"""The built-in platform simulator, exercised through real HTTP requests on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from bulkwatch.config import Settings, load_settings
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import (
    Driver,
    DriverConfig,
    FaultKind,
    NotFoundError,
    Simulator,
    StoreSpec,
    make_stores,
    run_simulator,
    serve,
    write_config,
)

LAZZA_PATH = "/openapi/2022-01/data/tasks"
LINE_PATH = "/admin/openapi/v20260301/current_bulk_operation.json"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z = 2023-11-15T06:13:20+08:00


class FakeClock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    stores = [
        *make_stores(2, 2),
        StoreSpec("lazza-querys", Platform.SHOPLAZZA, body_style="querys"),
        StoreSpec("lazza-wrapped", Platform.SHOPLAZZA, body_style="wrapped"),
        StoreSpec("line-wrapped", Platform.SHOPLINE, body_style="wrapped"),
    ]
    async with run_simulator(stores=stores, seed=7, clock=clock) as s:
        yield s


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str | int] | None = None,
    body: Any = None,
) -> Reply:
    async with session.request(method, url, headers=headers, params=params, json=body) as r:
        return Reply(r.status, r.headers, await r.read())


async def lazza(
    session: aiohttp.ClientSession,
    sim: Simulator,
    store: str = "lazza-1",
    *,
    token: str | None = None,
    **params: str | int,
) -> Reply:
    headers = {"Access-Token": token or f"sim-{store}", "Content-Type": "application/json"}
    return await request(
        session, "GET", sim.base_url(store) + LAZZA_PATH, headers=headers, params=params
    )


async def line(
    session: aiohttp.ClientSession,
    sim: Simulator,
    store: str = "line-1",
    op: str | None = "QUERY",
    *,
    token: str | None = None,
) -> Reply:
    headers = {"Authorization": f"Bearer {token or f'sim-{store}'}"}
    params = {"type": op} if op else {}
    return await request(
        session, "GET", sim.base_url(store) + LINE_PATH, headers=headers, params=params
    )


async def control(
    session: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: Any = None
) -> Reply:
    return await request(session, method, f"{sim.url}/_sim{path}", body=body)


# -- Shoplazza list -------------------------------------------------------------------------


async def test_shoplazza_list_is_newest_first_and_paged_by_page_and_limit(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    ids = [sim.create_task("lazza-1", f"q{i}", 2).id for i in range(45)]
    newest_first = ids[::-1]

    first = await lazza(session, sim)
    assert first.status == 200
    assert [t["query_id"] for t in first.json()["tasks"]] == newest_first[:20]
    third = await lazza(session, sim, page=3)
    assert [t["query_id"] for t in third.json()["tasks"]] == newest_first[40:]
    assert (await lazza(session, sim, page=4)).json() == {"tasks": []}
    everything = await lazza(session, sim, limit=250)
    assert len(everything.json()["tasks"]) == 45
    small = await lazza(session, sim, page=2, limit=7)
    assert [t["query_id"] for t in small.json()["tasks"]] == newest_first[7:14]


@pytest.mark.parametrize(
    "params", [{"limit": 251}, {"limit": 0}, {"page": 0}, {"limit": "ten"}, {"page": "x"}]
)
async def test_shoplazza_list_rejects_bad_paging_with_400(
    sim: Simulator, session: aiohttp.ClientSession, params: dict[str, str | int]
) -> None:
    headers = {"Access-Token": "sim-lazza-1"}
    url = sim.base_url("lazza-1") + LAZZA_PATH
    reply = await request(session, "GET", url, headers=headers, params=params)
    assert reply.status == 400
    assert "error" in reply.json()


async def test_shoplazza_item_shape_and_url_only_when_completed(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("lazza-1", "done", TaskStatus.COMPLETED)
    sim.create_task("lazza-1", "pending", 0)
    tasks = (await lazza(session, sim)).json()["tasks"]
    assert tasks[0] == {"query_id": "pending", "query_status": 0, "query": {"url": ""}}
    assert tasks[1]["query_status"] == 2
    assert tasks[1]["query"]["url"].endswith("/done.csv")


@pytest.mark.parametrize(
    ("store", "shape"),
    [
        ("lazza-1", lambda items: {"tasks": items}),
        ("lazza-querys", lambda items: {"querys": items}),
        ("lazza-wrapped", lambda items: {"code": "Success", "data": {"tasks": items}}),
    ],
)
async def test_shoplazza_body_style_chooses_the_list_shape(
    sim: Simulator, session: aiohttp.ClientSession, store: str, shape: Any
) -> None:
    sim.create_task(store, "q1", 1)
    item = {"query_id": "q1", "query_status": 1, "query": {"url": ""}}
    assert (await lazza(session, sim, store)).json() == shape([item])


async def test_shoplazza_list_keeps_only_the_newest_max_tasks(clock: FakeClock) -> None:
    spec = StoreSpec("lazza-small", Platform.SHOPLAZZA, max_tasks=3)
    sim = Simulator([spec], seed=1, clock=clock)
    for i in range(5):
        sim.create_task("lazza-small", f"q{i}")
    assert [t.id for t in sim.tasks("lazza-small")] == ["q4", "q3", "q2"]


# -- Shopline current -----------------------------------------------------------------------


async def test_shopline_current_task_has_the_seed_fields_at_top_level(
    sim: Simulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim.create_task("line-1", "op-1", "RUNNING")
    clock.advance(60)
    sim.set_status("line-1", "op-1", TaskStatus.COMPLETED, completed_count=1200)

    body = (await line(session, sim)).json()
    assert set(body) == {
        "id", "status", "type", "createdAt", "completedAt", "expiredAt", "completedCount",
        "errorCode", "reason", "url", "partialDataUrl", "storeId",
    }  # fmt: skip
    assert body["id"] == "op-1"
    assert body["status"] == "COMPLETED"
    assert body["type"] == "QUERY"
    assert body["createdAt"] == "2023-11-15T06:13:20+08:00"
    assert body["completedAt"] == "2023-11-15T06:14:20+08:00"
    assert body["expiredAt"] == "2023-11-15T18:14:20+08:00"  # 12 h later by default
    assert body["completedCount"] == 1200
    assert body["url"] == body["partialDataUrl"]
    assert body["url"].endswith(".jsonl?Expires=1700043260")
    assert body["errorCode"] is None
    assert body["storeId"] == sim.store("line-1").store_id


async def test_shopline_wrapped_style_puts_the_task_under_data(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("line-wrapped", "op-1")
    body = (await line(session, sim, "line-wrapped")).json()
    assert list(body) == ["data"]
    assert body["data"]["id"] == "op-1"


@pytest.mark.parametrize(
    ("style", "status", "body"),
    [
        ("object", 200, b"{}"),
        ("null", 200, b"null"),
        ("empty", 200, b""),
        ("data_null", 200, b'{"data":null}'),
        ("404", 404, b'{"errors": "Not Found"}'),
    ],
)
async def test_shopline_without_a_current_task_answers_the_empty_style(
    session: aiohttp.ClientSession, style: Any, status: int, body: bytes
) -> None:
    spec = StoreSpec("line-x", Platform.SHOPLINE, empty_style=style)
    async with run_simulator(stores=[spec]) as sim:
        reply = await line(session, sim, "line-x")
    assert (reply.status, reply.body) == (status, body)


async def test_shopline_type_selects_the_slot_and_defaults_to_query(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("line-1", "q", operation_type="QUERY")
    sim.create_task("line-1", "m", operation_type="MUTATION_GENERAL")
    assert (await line(session, sim, op="QUERY")).json()["id"] == "q"
    assert (await line(session, sim, op=None)).json()["id"] == "q"
    mutation = (await line(session, sim, op="MUTATION")).json()
    assert (mutation["id"], mutation["type"]) == ("m", "MUTATION_GENERAL")
    assert (await line(session, sim, op="BOGUS")).status == 400


# -- auth, ids, routing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "headers", "body"),
    [
        ("shoplazza", {}, {"error": "Unauthorized"}),
        ("shoplazza", {"Access-Token": "wrong"}, {"error": "Unauthorized"}),
        ("shoplazza", {"Authorization": "Bearer sim-lazza-1"}, {"error": "Unauthorized"}),
        ("shopline", {}, {"errors": "Unauthorized"}),
        ("shopline", {"Authorization": "Bearer wrong"}, {"errors": "Unauthorized"}),
        ("shopline", {"Authorization": "sim-line-1"}, {"errors": "Unauthorized"}),
        ("shopline", {"Access-Token": "sim-line-1"}, {"errors": "Unauthorized"}),
    ],
)
async def test_a_wrong_or_missing_token_gets_401_in_the_platform_shape(
    sim: Simulator,
    session: aiohttp.ClientSession,
    platform: str,
    headers: dict[str, str],
    body: dict[str, str],
) -> None:
    url = sim.base_url("lazza-1") + LAZZA_PATH
    if platform == "shopline":
        url = sim.base_url("line-1") + LINE_PATH
    reply = await request(session, "GET", url, headers=headers)
    assert (reply.status, reply.json()) == (401, body)
    store = "lazza-1" if platform == "shoplazza" else "line-1"
    assert sim.stats(store)["stores"][store]["unauthorized"] == 1


async def test_every_response_carries_a_unique_request_id(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    lazza_ids = {(await lazza(session, sim)).headers["Request-Id"] for _ in range(5)}
    line_ids = {(await line(session, sim)).headers["traceId"] for _ in range(5)}
    unauthorized = await line(session, sim, token="nope")
    assert len(lazza_ids) == 5
    assert len(line_ids) == 5
    assert unauthorized.headers["traceId"] not in line_ids
    assert not lazza_ids & line_ids


@pytest.mark.parametrize(
    "path",
    [
        "/nobody" + LAZZA_PATH,
        "/lazza-1" + LINE_PATH,  # the other platform's endpoint
        "/line-1" + LAZZA_PATH,
        "/lazza-1/openapi/2022-01/data/task",
    ],
)
async def test_unknown_stores_and_paths_get_404(
    sim: Simulator, session: aiohttp.ClientSession, path: str
) -> None:
    reply = await request(session, "GET", sim.url + path, headers={"Access-Token": "sim-lazza-1"})
    assert reply.status == 404


async def test_any_api_version_segment_is_served(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    headers = {"Access-Token": "sim-lazza-1"}
    url = sim.base_url("lazza-1") + "/openapi/2024-07/data/tasks"
    assert (await request(session, "GET", url, headers=headers)).status == 200


async def test_require_content_type_makes_shoplazza_answer_400_without_it(
    session: aiohttp.ClientSession,
) -> None:
    spec = StoreSpec("lazza-strict", Platform.SHOPLAZZA, require_content_type=True)
    async with run_simulator(stores=[spec]) as sim:
        url = sim.base_url("lazza-strict") + LAZZA_PATH
        bare = await request(session, "GET", url, headers={"Access-Token": "sim-lazza-strict"})
        ok = await lazza(session, sim, "lazza-strict")
    assert (bare.status, ok.status) == (400, 200)


# -- faults ---------------------------------------------------------------------------------

STATUS_CODES = [401, 402, 403, 404, 423, 433, 500, 502, 503, 504]


@pytest.mark.parametrize("status", STATUS_CODES)
@pytest.mark.parametrize("store", ["lazza-1", "line-1"])
async def test_status_faults_answer_that_status_with_the_platform_error_body(
    sim: Simulator, session: aiohttp.ClientSession, status: int, store: str
) -> None:
    sim.inject(FaultKind.STATUS, status=status, store=store)
    get = lazza if store.startswith("lazza") else line
    reply = await get(session, sim, store)
    assert reply.status == status
    key = "error" if store.startswith("lazza") else "errors"
    assert isinstance(reply.json()[key], str)
    assert "Retry-After" not in reply.headers
    assert (await get(session, sim, store)).status == 200  # times=1: used up


@pytest.mark.parametrize(
    ("store", "retry_after", "header", "body"),
    [
        ("line-1", None, None, {"errors": "Too many request"}),
        ("line-1", 2.0, "2", {"errors": "Too many request"}),
        ("lazza-1", 1.5, "1.5", {"error": "Too Many Requests"}),
        ("lazza-1", None, None, {"error": "Too Many Requests"}),
    ],
)
async def test_rate_limit_fault_sends_retry_after_only_when_asked(
    sim: Simulator,
    session: aiohttp.ClientSession,
    *,
    store: str,
    retry_after: float | None,
    header: str | None,
    body: dict[str, str],
) -> None:
    sim.inject("rate_limit", store=store, retry_after=retry_after)
    reply = await (lazza if store.startswith("lazza") else line)(session, sim, store)
    assert (reply.status, reply.json()) == (429, body)
    assert reply.headers.get("Retry-After") == header


@pytest.mark.parametrize("store", ["lazza-1", "line-1"])
async def test_body_faults_break_the_body_in_the_named_way(
    sim: Simulator, session: aiohttp.ClientSession, store: str
) -> None:
    sim.create_task(store, "t1", "COMPLETED")
    get = lazza if store.startswith("lazza") else line
    id_header = "Request-Id" if store.startswith("lazza") else "traceId"

    sim.inject("malformed", store=store)
    malformed = await get(session, sim, store)
    assert malformed.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.body)

    sim.inject("html", store=store)
    html = await get(session, sim, store)
    assert html.status == 502
    assert html.headers["Content-Type"].startswith("text/html")
    assert html.body.startswith(b"<!DOCTYPE html>")
    assert id_header not in html.headers  # a gateway page, not the platform

    sim.inject("empty", store=store)
    empty = await get(session, sim, store)
    assert (empty.status, empty.body) == (200, b"")

    sim.inject("wrong_types", store=store)
    wrong = (await get(session, sim, store)).json()
    task = wrong["tasks"][0] if store.startswith("lazza") else wrong
    assert not isinstance(task.get("query_id", task.get("id")), str)

    sim.inject("huge", store=store, size=100_000)
    huge = await get(session, sim, store)
    assert len(huge.body) == 100_000
    json.loads(huge.body)  # valid, only too big

    assert sim.stats(store)["stores"][store]["faults"] == 5
    assert (await get(session, sim, store)).status == 200


async def test_html_fault_can_carry_another_status(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.inject("html", status=503, store="line-1")
    reply = await line(session, sim)
    assert reply.status == 503
    assert b"503 Service Unavailable" in reply.body


async def test_default_huge_fault_is_over_the_daemons_default_4_mib_cap(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.inject("huge", store="line-1")
    assert len((await line(session, sim)).body) > 4 * 1024 * 1024


async def test_slow_fault_delays_the_normal_answer(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("line-1", "op")
    sim.inject("slow", store="line-1", delay=0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await line(session, sim)
    assert loop.time() - started >= 0.1
    assert (reply.status, reply.json()["id"]) == (200, "op")


async def test_slow_fault_can_outlast_a_client_timeout(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.inject("slow", store="lazza-1", delay=0.2)
    url = sim.base_url("lazza-1") + LAZZA_PATH
    with pytest.raises(TimeoutError):
        async with session.get(
            url, headers={"Access-Token": "sim-lazza-1"}, timeout=aiohttp.ClientTimeout(0.02)
        ) as r:
            await r.read()


async def test_a_fault_for_n_responses_hits_exactly_n(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.inject(503, store="lazza-1", times=3)
    statuses = [(await lazza(session, sim)).status for _ in range(5)]
    assert statuses == [503, 503, 503, 200, 200]
    assert sim.faults.rules() == []


async def test_faults_are_isolated_by_store_and_endpoint_and_global_ones_hit_all(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.inject(500, store="lazza-1", times=None)
    sim.inject(502, store="line-1", endpoint="MUTATION", times=None)
    assert (await lazza(session, sim, "lazza-1")).status == 500
    assert (await lazza(session, sim, "lazza-2")).status == 200
    assert (await line(session, sim, "line-1", "QUERY")).status == 200
    assert (await line(session, sim, "line-1", "MUTATION")).status == 502
    assert (await line(session, sim, "line-2", "MUTATION")).status == 200

    sim.inject(504, times=None)  # every store, every endpoint
    assert (await lazza(session, sim, "lazza-2")).status == 504
    assert (await line(session, sim, "line-2", "QUERY")).status == 504
    assert (await lazza(session, sim, "lazza-1")).status == 500  # store rules come first

    sim.clear_faults("lazza-1")
    assert (await lazza(session, sim, "lazza-1")).status == 504
    sim.clear_faults()
    assert (await lazza(session, sim, "lazza-1")).status == 200


async def _fault_pattern(session: aiohttp.ClientSession, seed: int) -> list[int]:
    async with run_simulator(stores=make_stores(1, 0), seed=seed) as sim:
        sim.inject(503, probability=0.3, times=None)
        return [(await lazza(session, sim)).status for _ in range(60)]


async def test_probabilistic_faults_are_reproducible_with_a_seed(
    session: aiohttp.ClientSession,
) -> None:
    first = await _fault_pattern(session, seed=3)
    again = await _fault_pattern(session, seed=3)
    other = await _fault_pattern(session, seed=4)
    assert first == again
    assert first != other
    assert 5 <= first.count(503) <= 35


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "status"},
        {"kind": "status", "status": 200},
        {"kind": "nonsense"},
        {"kind": 503, "probability": 0.0},
        {"kind": 503, "times": 0},
        {"kind": "huge", "size": 10},
        {"kind": "slow", "delay": -1.0},
        {"kind": 503, "store": "nobody"},
    ],
)
def test_invalid_fault_rules_are_refused(kwargs: dict[str, Any]) -> None:
    sim = Simulator(make_stores(1, 1))
    with pytest.raises((ValueError, NotFoundError)):
        sim.inject(**kwargs)


async def test_latency_is_added_to_every_api_response(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.latency = 0.05
    loop = asyncio.get_running_loop()
    started = loop.time()
    await lazza(session, sim)
    await line(session, sim)
    assert loop.time() - started >= 0.1


# -- lifecycles, driven by hand -------------------------------------------------------------


async def test_shoplazza_task_steps_through_0_1_2(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    task = sim.create_task("lazza-1", "q1")
    seen = [(await lazza(session, sim)).json()["tasks"][0]["query_status"]]
    for _ in range(2):
        sim.advance("lazza-1", task.id)
        seen.append((await lazza(session, sim)).json()["tasks"][0]["query_status"])
    assert seen == [0, 1, 2]
    assert task.url is not None
    with pytest.raises(ValueError, match="no next step"):
        sim.advance("lazza-1", task.id)


async def test_shoplazza_serves_unknown_raw_codes(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("lazza-1", "odd", 7)
    assert (await lazza(session, sim)).json()["tasks"][0]["query_status"] == 7
    with pytest.raises(ValueError, match="no code"):
        sim.create_task("lazza-1", "canceled", TaskStatus.CANCELED)
    # FAILED is undocumented: the simulator plays the variant's code (3 unless told).
    assert sim.create_task("lazza-1", "failed", TaskStatus.FAILED).status == 3


async def test_shopline_task_runs_completes_then_expires(
    sim: Simulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    task = sim.create_task("line-1", "op")
    statuses = [(await line(session, sim)).json()["status"]]
    for _ in range(3):
        clock.advance(10)
        sim.advance("line-1", task.id)
        statuses.append((await line(session, sim)).json()["status"])
    assert statuses == ["CREATED", "RUNNING", "COMPLETED", "EXPIRED"]
    assert task.completed_at == T0 + 20
    assert task.expired_at == T0 + 20 + 12 * 3600


async def test_shopline_failure_fills_error_code_and_reason(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("line-1", "op", "RUNNING")
    sim.advance("line-1", "op", fail=True)
    body = (await line(session, sim)).json()
    assert (body["status"], body["errorCode"], body["reason"]) == (
        "FAILED",
        "TIMEOUT",
        "Process timeout",
    )
    assert body["url"] is None
    sim.set_status("line-1", "op", "FAILED", error_code="NO_DATA", reason="nothing matched")
    body = (await line(session, sim)).json()
    assert (body["errorCode"], body["reason"]) == ("NO_DATA", "nothing matched")


async def test_fields_can_be_set_explicitly_including_to_null(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("line-1", "op", "COMPLETED", url=None, completed_count=0)
    body = (await line(session, sim)).json()
    assert (body["url"], body["partialDataUrl"], body["completedCount"]) == (None, None, 0)
    sim.update_task("line-1", "op", partial_data_url="https://x/p.jsonl", completed_count=5)
    body = (await line(session, sim)).json()
    assert (body["partialDataUrl"], body["completedCount"], body["status"]) == (
        "https://x/p.jsonl",
        5,
        "COMPLETED",
    )


async def test_shopline_serves_unknown_status_strings_as_given(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("line-1", "op", "Paused")
    assert (await line(session, sim)).json()["status"] == "Paused"
    sim.set_status("line-1", "op", "canceling")
    assert (await line(session, sim)).json()["status"] == "CANCELING"


async def test_a_new_shopline_task_supersedes_the_current_one_of_its_type(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    old = sim.create_task("line-1", "old", "RUNNING")
    sim.create_task("line-1", "mutation", operation_type="MUTATION")
    new = sim.replace_current("line-1", "QUERY", "new")
    assert (await line(session, sim)).json()["id"] == "new"
    assert (await line(session, sim, op="MUTATION")).json()["id"] == "mutation"
    assert sim.current("line-1") is new
    with pytest.raises(NotFoundError):
        sim.task("line-1", old.id)
    assert sim.stats("line-1")["stores"]["line-1"]["superseded"] == 1
    with pytest.raises(ValueError, match="not a Shopline store"):
        sim.replace_current("lazza-1")


async def test_removed_and_cleared_tasks_disappear(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.create_task("lazza-1", "a")
    sim.create_task("lazza-1", "b")
    sim.remove_task("lazza-1", "a")
    assert [t["query_id"] for t in (await lazza(session, sim)).json()["tasks"]] == ["b"]
    sim.create_task("line-1", "q")
    sim.create_task("line-1", "m", operation_type="MUTATION")
    sim.remove_task("line-1", "m")
    assert (await line(session, sim, op="MUTATION")).body == b"{}"
    assert sim.clear_current("line-1", "QUERY") is not None
    assert (await line(session, sim)).body == b"{}"


def test_duplicate_ids_unknown_stores_and_bad_specs_are_refused() -> None:
    sim = Simulator(make_stores(1, 1))
    sim.create_task("lazza-1", "a")
    with pytest.raises(ValueError, match="already"):
        sim.create_task("lazza-1", "a")
    with pytest.raises(NotFoundError):
        sim.create_task("nobody")
    with pytest.raises(ValueError, match="type"):
        sim.create_task("line-1", operation_type="DATA_QUERY")
    for spec in [
        StoreSpec("_sim", Platform.SHOPLAZZA),
        StoreSpec("x", Platform.SHOPLINE, body_style="querys"),
        StoreSpec("x", Platform.SHOPLINE, operation_types=("QUERY", "OTHER")),
    ]:
        with pytest.raises(ValueError, match=r"invalid|body_style|operation_types"):
            Simulator([spec])
    with pytest.raises(ValueError, match="duplicate"):
        Simulator(make_stores(1, 0) + make_stores(1, 0))


def test_generated_ids_are_deterministic_with_a_seed() -> None:
    def ids(seed: int) -> list[str]:
        sim = Simulator(make_stores(1, 1), seed=seed, clock=FakeClock())
        return [sim.create_task("lazza-1").id, sim.create_task("line-1").id]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
    assert re.fullmatch(r"[0-9a-f-]{36}", ids(1)[0])
    assert ids(1)[1].isdigit()


# -- control routes -------------------------------------------------------------------------


async def test_control_routes_drive_a_task_over_http(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    created = await control(session, sim, "POST", "/stores/line-1/tasks", {"id": "op"})
    assert (created.status, created.json()["status"]) == (201, "CREATED")
    advanced = await control(session, sim, "POST", "/stores/line-1/tasks/op/advance")
    assert advanced.json()["status"] == "RUNNING"
    patched = await control(
        session, sim, "PATCH", "/stores/line-1/tasks/op", {"completed_count": 40}
    )
    assert (patched.json()["status"], patched.json()["completed_count"]) == ("RUNNING", 40)
    failed = await control(session, sim, "POST", "/stores/line-1/tasks/op/advance", {"fail": True})
    assert failed.json()["error_code"] == "TIMEOUT"
    assert (await line(session, sim)).json()["status"] == "FAILED"

    replaced = await control(
        session, sim, "POST", "/stores/line-1/tasks", {"id": "op2", "status": "COMPLETED"}
    )
    assert replaced.json()["url"] is not None
    listed = await control(session, sim, "GET", "/stores/line-1/tasks")
    assert [t["id"] for t in listed.json()] == ["op2"]
    cleared = await control(session, sim, "DELETE", "/stores/line-1/current/QUERY")
    assert cleared.json()["removed"]["id"] == "op2"

    await control(session, sim, "POST", "/stores/lazza-1/tasks", {"id": "q", "status": 2})
    assert (await control(session, sim, "GET", "/stores/lazza-1/tasks/q")).json()["status"] == 2
    assert (await control(session, sim, "DELETE", "/stores/lazza-1/tasks/q")).status == 200
    assert (await lazza(session, sim)).json() == {"tasks": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/stores/nobody", None, 404),
        ("GET", "/stores/line-1/tasks/none", None, 404),
        ("POST", "/stores/line-1/tasks", {"bogus": 1}, 400),
        ("POST", "/stores/lazza-1/tasks", {"status": "CANCELED"}, 400),
        ("POST", "/stores/lazza-1/tasks/none/advance", None, 404),
        ("POST", "/faults", {"kind": "status"}, 400),
        ("POST", "/faults", {}, 400),
        ("DELETE", "/faults/99", None, 404),
        ("PATCH", "/stores/line-1", {"body_style": "querys"}, 400),
        ("PUT", "/latency", {"seconds": -1}, 400),
        ("POST", "/driver/tick", None, 409),
    ],
)
async def test_control_routes_refuse_bad_requests(
    sim: Simulator,
    session: aiohttp.ClientSession,
    *,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    reply = await control(session, sim, method, path, body)
    assert reply.status == status
    assert reply.json()["error"]


async def test_faults_latency_and_store_settings_over_http(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    rule = await control(
        session, sim, "POST", "/faults", {"kind": "rate_limit", "store": "line-1", "times": None}
    )
    assert rule.status == 201
    assert (await line(session, sim)).status == 429
    listed = (await control(session, sim, "GET", "/faults")).json()
    assert [(r["id"], r["applied"]) for r in listed] == [(rule.json()["id"], 1)]
    await control(session, sim, "DELETE", f"/faults/{rule.json()['id']}")
    assert (await line(session, sim)).status == 200

    await control(session, sim, "POST", "/faults", {"kind": 503})
    await control(session, sim, "DELETE", "/faults")
    assert (await lazza(session, sim)).status == 200

    assert (await control(session, sim, "PUT", "/latency", {"seconds": 0.01})).status == 200
    assert sim.latency == 0.01

    await control(session, sim, "PATCH", "/stores/line-1", {"token": "renewed"})
    assert (await line(session, sim)).status == 401
    assert (await line(session, sim, token="renewed")).status == 200
    await control(session, sim, "PATCH", "/stores/line-1", {"empty_style": "404"})
    assert (await line(session, sim, token="renewed")).status == 404


async def test_stores_can_be_added_and_listed_as_bulkwatch_config(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    added = await control(
        session, sim, "POST", "/stores", {"name": "line-new", "platform": "shopline"}
    )
    assert added.status == 201
    assert (await line(session, sim, "line-new")).status == 200
    configs = (await control(session, sim, "GET", "/config")).json()
    assert configs == sim.store_configs()
    info = (await control(session, sim, "GET", "/stores/line-new")).json()
    assert (info["handle"], info["tasks"]) == ("line-new", [])
    health = (await control(session, sim, "GET", "/health")).json()
    assert health == {"ok": True, "stores": len(sim.stores)}


# -- counters -------------------------------------------------------------------------------


async def test_request_counters_are_per_store_and_per_endpoint(
    sim: Simulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    for _ in range(3):
        await lazza(session, sim, "lazza-1")
    await line(session, sim, "line-1", "QUERY")
    await line(session, sim, "line-1", "MUTATION")
    await line(session, sim, "line-1", "MUTATION", token="bad")
    await request(session, "GET", sim.url + "/nobody" + LAZZA_PATH)

    assert sim.request_count("lazza-1") == 3
    assert sim.request_count("lazza-2") == 0
    stats = (await control(session, sim, "GET", "/stats")).json()
    assert stats["total_requests"] == 6
    assert stats["unknown_store_requests"] == 1
    assert stats["stores"]["line-1"]["endpoints"] == {"QUERY": 1, "MUTATION": 2}
    assert stats["stores"]["line-1"]["unauthorized"] == 1
    assert stats["stores"]["lazza-1"]["last_request_at"] == clock.now
    one = (await control(session, sim, "GET", "/stats?store=lazza-1")).json()
    assert list(one["stores"]) == ["lazza-1"]

    await control(session, sim, "DELETE", "/stats")
    assert sim.request_count("lazza-1") == 0
    assert sim.stats()["total_requests"] == 0


async def test_wait_for_requests_wakes_when_the_count_is_reached(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    waiter = asyncio.create_task(sim.wait_for_requests("lazza-2", 2))
    await lazza(session, sim, "lazza-2")
    assert not waiter.done()
    await lazza(session, sim, "lazza-2")
    async with asyncio.timeout(2):
        await waiter
    async with asyncio.timeout(2):
        await sim.wait_for_requests("lazza-2", 1)  # already reached
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await sim.wait_for_requests("lazza-2", 3)


# -- the automatic driver -------------------------------------------------------------------


def _trace(seed: int, ticks: int = 40) -> list[tuple[float, str, str, int | str]]:
    clock = FakeClock()
    sim = Simulator(make_stores(3, 3), seed=seed, clock=clock, expire_after=5.0)
    driver = Driver(
        sim,
        DriverConfig(step_seconds=2.0, create_every=5.0, fail_probability=0.3, history=1),
    )
    seen: list[tuple[float, str, str, int | str]] = []
    for _ in range(ticks):
        driver.tick()
        seen.extend(
            (clock.now, name, t.id, t.status) for name in sim.stores for t in sim.tasks(name)
        )
        clock.advance(1.0)
    return seen


def test_driver_runs_are_reproducible_with_a_seed() -> None:
    first = _trace(seed=11)
    assert first == _trace(seed=11)
    assert first != _trace(seed=12)
    statuses = {status for _, _, _, status in first}
    assert {0, 1, 2, "CREATED", "RUNNING", "COMPLETED", "FAILED", "EXPIRED"} <= statuses


def test_driver_moves_a_task_one_step_every_step_seconds(clock: FakeClock) -> None:
    sim = Simulator(make_stores(1, 1), seed=5, clock=clock, expire_after=30.0)
    config = DriverConfig(step_seconds=2.0, create_every=None, fail_probability=0.0)
    driver = Driver(sim, config)
    driver.start()
    lazza_task = sim.create_task("lazza-1", "q")
    line_task = sim.create_task("line-1", "op")
    # Tasks made by hand are not the driver's until adopted.
    driver.adopt("lazza-1", lazza_task.id)
    driver.adopt("line-1", line_task.id)

    history = []
    for _ in range(4):
        clock.advance(1.0)
        driver.tick()
        clock.advance(1.0)
        driver.tick()
        history.append((lazza_task.status, line_task.status))
    assert history == [(1, "RUNNING"), (2, "COMPLETED"), (2, "COMPLETED"), (2, "COMPLETED")]
    assert line_task.completed_at == T0 + 4.0
    clock.now = line_task.expired_at or 0.0
    assert driver.tick() == 1
    assert line_task.status == "EXPIRED"
    assert driver.pending == 0


def test_driver_creates_tasks_at_the_configured_rate(clock: FakeClock) -> None:
    sim = Simulator(make_stores(5, 0), seed=2, clock=clock)
    driver = Driver(sim, DriverConfig(step_seconds=1.0, create_every=10.0))
    for _ in range(100):  # 100 s at ~1 new task / 10 s / store
        driver.tick()
        clock.advance(1.0)
    counts = [len(sim.tasks(name)) for name in sim.stores]
    assert all(6 <= n <= 14 for n in counts), counts


def test_driver_drives_a_store_added_after_start(clock: FakeClock) -> None:
    sim = Simulator(make_stores(1, 0), seed=2, clock=clock)
    driver = Driver(sim, DriverConfig(step_seconds=1.0, create_every=2.0))
    driver.start()
    sim.add_store(StoreSpec("lazza-late", Platform.SHOPLAZZA))
    driver.add_store("lazza-late")
    for _ in range(10):
        driver.tick(clock.advance(1.0))
    assert sim.tasks("lazza-late")


def test_driver_supersedes_running_shopline_tasks_when_told_to(clock: FakeClock) -> None:
    sim = Simulator(make_stores(0, 1), seed=3, clock=clock)
    config = DriverConfig(
        step_seconds=100.0,  # tasks stay CREATED: every new one must supersede
        create_every=1.0,
        supersede_probability=1.0,
    )
    driver = Driver(sim, config)
    for _ in range(30):
        driver.tick()
        clock.advance(1.0)
    assert sim.store("line-1").superseded >= 10
    assert len(sim.tasks("line-1")) == 2  # one current per type, the old ones gone


def test_driver_without_superseding_waits_for_the_current_task(clock: FakeClock) -> None:
    sim = Simulator(make_stores(0, 1), seed=3, clock=clock)
    config = DriverConfig(step_seconds=100.0, create_every=1.0, supersede_probability=0.0)
    driver = Driver(sim, config)
    for _ in range(30):
        driver.tick()
        clock.advance(1.0)
    assert sim.store("line-1").superseded == 0


def test_driver_leaves_a_task_alone_once_it_is_changed_by_hand(clock: FakeClock) -> None:
    sim = Simulator(make_stores(1, 0), seed=1, clock=clock)
    driver = Driver(sim, DriverConfig(step_seconds=1.0, create_every=1000.0))
    while not sim.tasks("lazza-1"):
        driver.tick(clock.advance(1.0))
    (task,) = sim.tasks("lazza-1")
    assert task.status == 0
    sim.set_status("lazza-1", task.id, 7)
    for _ in range(5):
        clock.advance(1.0)
        driver.tick()
    assert task.status == 7


def test_driver_tick_cost_follows_changes_not_stores(clock: FakeClock) -> None:
    sim = Simulator(make_stores(5000, 5000), seed=1, clock=clock)
    driver = Driver(sim, DriverConfig(step_seconds=1.0, create_every=3600.0))
    driver.start()
    assert driver.pending == 10_000  # one scheduled creation per store
    changed = [driver.tick(clock.advance(1.0)) for _ in range(5)]
    # ~10,000 stores / 3600 s ≈ 3 new tasks a second, plus their steps.
    assert all(n < 40 for n in changed), changed
    assert sum(changed) > 0


def test_driver_config_rejects_nonsense() -> None:
    cases: list[dict[str, Any]] = [
        {"step_seconds": 0.0},
        {"create_every": 0.0},
        {"fail_probability": 1.5},
        {"running_steps": 0},
    ]
    for kwargs in cases:
        with pytest.raises(ValueError, match=r"must|probabilities|>="):
            DriverConfig(**kwargs)


async def test_run_simulator_ticks_the_driver_through_the_injected_sleep(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    slept: asyncio.Queue[float] = asyncio.Queue()
    wake = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        await slept.put(seconds)
        await wake.wait()
        wake.clear()

    config = DriverConfig(step_seconds=1.0, create_every=None, history=1)
    async with run_simulator(
        stores=make_stores(0, 1), seed=1, clock=clock, driver=config, driver_sleep=fake_sleep
    ) as sim:
        async with asyncio.timeout(2):
            assert await slept.get() == config.tick_seconds
        first = (await line(session, sim)).json()
        assert first["status"] == "COMPLETED"  # history: a finished task per type

        clock.advance(12 * 3600)
        wake.set()
        async with asyncio.timeout(2):
            await slept.get()  # the loop went round once: one tick done
        assert (await line(session, sim)).json()["status"] == "EXPIRED"
        assert sim.driver is not None
        ticked = await control(session, sim, "POST", "/driver/tick")
        assert ticked.json() == {"changed": 0}


# -- running it -----------------------------------------------------------------------------


async def test_store_configs_are_valid_bulkwatch_store_settings(sim: Simulator) -> None:
    settings = Settings(stores=sim.store_configs())
    assert [s.name for s in settings.stores] == list(sim.stores)
    line_store = next(s for s in settings.stores if s.name == "line-1")
    assert line_store.url_base() == sim.base_url("line-1")
    assert line_store.token() == "sim-line-1"


async def test_write_config_produces_a_loadable_bulkwatch_config(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "bulkwatch.yaml",
        sim,
        interval=2.0,
        extra={"state": {"url": f"sqlite:///{tmp_path}/state.db"}},
    )
    settings = load_settings(path, environ={})
    assert settings.defaults.interval == 2.0
    assert len(settings.stores) == len(sim.stores)


def test_make_stores_names_stores_by_platform() -> None:
    specs = make_stores(2, 3, token="t")
    assert [(s.name, s.platform) for s in specs] == [
        ("lazza-1", Platform.SHOPLAZZA),
        ("lazza-2", Platform.SHOPLAZZA),
        ("line-1", Platform.SHOPLINE),
        ("line-2", Platform.SHOPLINE),
        ("line-3", Platform.SHOPLINE),
    ]
    assert {s.token for s in specs} == {"t"}


async def test_serve_announces_its_url_writes_a_config_and_stops_when_cancelled(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    lines: list[str] = []
    ready: asyncio.Queue[Simulator] = asyncio.Queue()
    config_path = tmp_path / "sim.yaml"
    task = asyncio.create_task(
        serve(
            port=0,
            stores=3,
            step=0.5,
            seed=1,
            config_path=config_path,
            announce=lines.append,
            ready=ready.put_nowait,
        )
    )
    async with asyncio.timeout(5):
        sim = await ready.get()
    assert lines[0] == f"bulkwatch simulator listening on {sim.url}"
    assert sorted(sim.stores) == ["lazza-1", "lazza-2", "line-1"]
    assert sim.driver is not None
    assert (await lazza(session, sim)).status == 200
    assert len(load_settings(config_path, environ={}).stores) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_simulator_in_a_subprocess_is_driven_over_the_control_routes(
    session: aiohttp.ClientSession,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkwatch.simulator",
        "--port",
        "0",
        "--stores",
        "2",
        "--manual",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            first = (await proc.stdout.readline()).decode()
        url = first.rsplit(" ", 1)[-1].strip()
        assert first.startswith("bulkwatch simulator listening on http://127.0.0.1:")
        reply = await request(
            session, "POST", f"{url}/_sim/stores/line-1/tasks", body={"id": "op", "status": 2}
        )
        assert reply.status == 400  # a Shopline status is a string
        await request(
            session,
            "POST",
            f"{url}/_sim/stores/line-1/tasks",
            body={"id": "op", "status": "COMPLETED"},
        )
        current = await request(
            session,
            "GET",
            f"{url}/line-1{LINE_PATH}",
            headers={"Authorization": "Bearer sim-line-1"},
        )
        assert current.json()["status"] == "COMPLETED"
        stats = (await request(session, "GET", f"{url}/_sim/stats")).json()
        assert stats["stores"]["line-1"]["requests"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await proc.wait()
    assert code == 0
