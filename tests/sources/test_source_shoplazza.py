"""The Shoplazza source against a scripted Shoplazza API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

from bulkwatch.model import (
    EndpointKey,
    FailureKind,
    Platform,
    PollError,
    PollResult,
    TaskSnapshot,
    TaskStatus,
    Unchanged,
)
from bulkwatch.sources.shoplazza import ShoplazzaSource
from helpers.platform_stub import PlatformStub, Reply, Seen, closed_port_url, json_reply
from helpers.source_support import Failure, build_source, failed_poll, poll

TOKEN = "lazza-SECRET-token-4f1c"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = EndpointKey("lazza-main", Platform.SHOPLAZZA, "tasks")
RID = {"Request-Id": "req-7"}


def lazza(
    session: aiohttp.ClientSession, base_url: str, *, max_body_bytes: int = 1 << 20, **fields: Any
) -> ShoplazzaSource:
    store = {
        "name": "lazza-main",
        "platform": "shoplazza",
        "domain": "mystore",
        "access_token": TOKEN,
        "base_url": base_url,
        **fields,
    }
    source = build_source(session, store, max_body_bytes=max_body_bytes)
    assert isinstance(source, ShoplazzaSource)
    return source


@pytest.fixture
def source(platform_stub: PlatformStub, session: aiohttp.ClientSession) -> ShoplazzaSource:
    return lazza(session, platform_stub.url)


def snap(task_id: str, status: TaskStatus, raw: int, **fields: Any) -> TaskSnapshot:
    return TaskSnapshot(
        platform=Platform.SHOPLAZZA,
        store="lazza-main",
        task_id=task_id,
        operation_type="DATA_QUERY",
        status=status,
        raw_status=raw,
        observed_at=NOW,
        **fields,
    )


async def poll_error(source: ShoplazzaSource) -> PollError:
    return await failed_poll(source, KEY, NOW, TOKEN)


async def test_poll_sends_the_documented_request_and_keeps_the_request_id(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    platform_stub.script(json_reply({"tasks": []}, headers={"Request-Id": "req-1"}))

    result = await poll(source, KEY, NOW)

    assert result == PollResult(key=KEY, tasks=(), exclusive=False, request_id="req-1")
    [seen] = platform_stub.seen
    assert seen.path == "/openapi/2022-01/data/tasks"
    assert seen.query == {"page": "1", "limit": "100"}
    assert seen.headers["Access-Token"] == TOKEN
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json"
    assert "Authorization" not in seen.headers


async def test_api_version_and_page_limit_come_from_the_store(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.script(json_reply({"tasks": []}))
    source = lazza(session, platform_stub.url, api_version="2024-07", page_limit=250)

    await poll(source, KEY, NOW)

    assert platform_stub.seen[0].path == "/openapi/2024-07/data/tasks"
    assert platform_stub.seen[0].query == {"page": "1", "limit": "250"}


TWO_TASKS = [
    {"query_id": "d6ca13c4", "query_status": 2, "query": {"url": "https://oss.example/a.csv"}},
    {"query_id": 1234, "query_status": "0", "query": {"url": ""}},
]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"tasks": TWO_TASKS}, id="tasks"),
        pytest.param({"querys": TWO_TASKS}, id="querys"),
        pytest.param({"code": "Success", "data": {"tasks": TWO_TASKS}}, id="wrapper-tasks"),
        pytest.param({"code": "Success", "data": {"querys": TWO_TASKS}}, id="wrapper-querys"),
        pytest.param({"code": 0, "data": {"tasks": TWO_TASKS}}, id="wrapper-numeric-code"),
        pytest.param({"data": {"tasks": TWO_TASKS}}, id="wrapper-without-code"),
        pytest.param({"tasks": TWO_TASKS, "total": 2}, id="extra-keys"),
    ],
)
async def test_every_accepted_body_shape_gives_the_same_snapshots(
    platform_stub: PlatformStub, source: ShoplazzaSource, body: dict[str, Any]
) -> None:
    platform_stub.script(json_reply(body))

    result = await poll(source, KEY, NOW)

    assert result.tasks == (
        snap("d6ca13c4", TaskStatus.COMPLETED, 2, url="https://oss.example/a.csv"),
        snap("1234", TaskStatus.CREATED, 0, url=None),
    )
    assert result.problems == ()


@pytest.mark.parametrize(
    "body",
    [{"tasks": None}, {"querys": []}, {"code": "Success", "data": None}],
    ids=["null-list", "empty-list", "wrapper-null-data"],
)
async def test_an_empty_list_is_a_successful_poll_with_no_tasks(
    platform_stub: PlatformStub, source: ShoplazzaSource, body: dict[str, Any]
) -> None:
    platform_stub.script(json_reply(body))

    result = await poll(source, KEY, NOW)

    assert result.tasks == ()
    assert result.problems == ()


@pytest.mark.parametrize(
    ("raw", "status", "kept"),
    [
        (0, TaskStatus.CREATED, 0),
        (1, TaskStatus.RUNNING, 1),
        (2, TaskStatus.COMPLETED, 2),
        ("2", TaskStatus.COMPLETED, 2),
        (2.0, TaskStatus.COMPLETED, 2),
        (9, TaskStatus.UNKNOWN, 9),
        (-1, TaskStatus.UNKNOWN, -1),
    ],
)
async def test_query_status_maps_through_the_default_table(
    platform_stub: PlatformStub, source: ShoplazzaSource, raw: Any, status: TaskStatus, kept: int
) -> None:
    platform_stub.script(json_reply({"tasks": [{"query_id": "q", "query_status": raw}]}))

    [task] = (await poll(source, KEY, NOW)).tasks

    assert (task.status, task.raw_status) == (status, kept)


async def test_a_store_status_map_overrides_and_extends_the_defaults(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    tasks = [{"query_id": "a", "query_status": 9}, {"query_id": "b", "query_status": 1}]
    platform_stub.script(json_reply({"tasks": tasks}))
    source = lazza(session, platform_stub.url, status_map={"9": "FAILED", "1": "CREATED"})

    result = await poll(source, KEY, NOW)

    assert result.tasks == (
        snap("a", TaskStatus.FAILED, 9),
        snap("b", TaskStatus.CREATED, 1),
    )


async def test_optional_times_are_read_leniently_and_bad_ones_reported(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    task = {
        "query_id": "d1",
        "query_status": 2,
        "createdAt": "2026-11-23T09:00:00+08:00",
        "completed_at": 1795424400000,  # epoch milliseconds
        "expired_at": "soon",
    }
    platform_stub.script(json_reply({"tasks": [task]}))

    result = await poll(source, KEY, NOW)

    assert result.tasks == (
        snap(
            "d1",
            TaskStatus.COMPLETED,
            2,
            created_at=datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
            completed_at=datetime.fromtimestamp(1795424400, UTC),
        ),
    )
    assert result.problems == (
        "page 1 tasks[0].expired_at: cannot read 'soon' as an ISO 8601 time",
    )


async def test_unusable_entries_are_skipped_and_described_while_the_rest_count(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    entries: list[Any] = [
        "oops",
        {"query_status": 2},
        {"query_id": "", "query_status": 2},
        {"query_id": True, "query_status": 2},
        {"query_id": "s1", "query_status": True},
        {"query_id": "s2", "query_status": "done"},
        {"query_id": "s3"},
        {"query_id": "ok", "query_status": 2, "query": {"url": "https://oss.example/ok.csv"}},
        {"query_id": "q", "query_status": 1, "query": "not-an-object"},
        {"query_id": "u", "query_status": 1, "query": {"url": 5}},
    ]
    platform_stub.script(json_reply({"tasks": entries}, headers=RID))

    result = await poll(source, KEY, NOW)

    assert result.tasks == (
        snap("ok", TaskStatus.COMPLETED, 2, url="https://oss.example/ok.csv"),
        snap("q", TaskStatus.RUNNING, 1),
        snap("u", TaskStatus.RUNNING, 1),
    )
    assert result.problems == (
        "page 1 tasks[0]: expected an object, got a string; skipped",
        "page 1 tasks[1]: missing query_id; skipped",
        "page 1 tasks[2]: missing query_id; skipped",
        "page 1 tasks[3]: bad query_id True; skipped",
        "page 1 tasks[4]: query_status True of task 's1' is not an integer; skipped",
        "page 1 tasks[5]: query_status 'done' of task 's2' is not an integer; skipped",
        "page 1 tasks[6]: missing query_status of task 's3'; skipped",
        "page 1 tasks[8].query: expected an object, got a string",
        "page 1 tasks[9].query.url: expected a string, got a number",
    )
    assert result.request_id == "req-7"


def pages(by_page: dict[int, list[Any]]) -> Any:
    """A responder serving the list page by page; pages past the last are empty."""

    def respond(seen: Seen) -> Reply:
        page = int(seen.query["page"])
        return json_reply({"tasks": by_page.get(page, [])}, headers={"Request-Id": f"p{page}"})

    return respond


def task(task_id: str, status: int = 1) -> dict[str, Any]:
    return {"query_id": task_id, "query_status": status}


async def test_paging_stops_at_the_first_short_page_and_dedupes_across_pages(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.respond = pages(
        {1: [task("t1"), task("t2")], 2: [task("t3"), task("t1", 2)], 3: [task("t4")]}
    )
    source = lazza(session, platform_stub.url, page_limit=2, max_pages=10)

    result = await poll(source, KEY, NOW)

    assert [s.query for s in platform_stub.seen] == [
        {"page": "1", "limit": "2"},
        {"page": "2", "limit": "2"},
        {"page": "3", "limit": "2"},
    ]
    assert [(t.task_id, t.status) for t in result.tasks] == [
        ("t1", TaskStatus.RUNNING),  # the first occurrence wins
        ("t2", TaskStatus.RUNNING),
        ("t3", TaskStatus.RUNNING),
        ("t4", TaskStatus.RUNNING),
    ]
    assert result.problems == (
        "page 2 tasks[1]: duplicate query_id 't1' (first seen on page 1); skipped",
    )
    assert result.request_id == "p1"


async def test_a_list_longer_than_max_pages_is_read_at_both_ends_while_its_order_is_unknown(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    ids = [f"t{n}" for n in range(1, 20)]  # 19 tasks, 2 a page: 10 pages

    def respond(seen: Seen) -> Reply:
        page, limit = int(seen.query["page"]), int(seen.query["limit"])
        chunk = ids[(page - 1) * limit : page * limit]
        return json_reply({"tasks": [task(i) for i in chunk]})

    platform_stub.respond = respond
    source = lazza(session, platform_stub.url, page_limit=2, max_pages=3)

    result = await poll(source, KEY, NOW)

    full_pages = [s.query["page"] for s in platform_stub.seen if s.query["limit"] == "2"]
    assert full_pages == ["1", "2", "3", "10", "9", "8"]
    assert [t.task_id for t in result.tasks] == [*ids[:6], *ids[-5:]]
    assert result.listing is not None
    assert (result.listing.read, result.listing.length) == (11, 19)
    assert not result.listing.complete
    assert result.problems == ()


async def test_a_full_page_followed_by_an_empty_one_ends_the_list(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.respond = pages({1: [task("a"), task("b")]})
    source = lazza(session, platform_stub.url, page_limit=2)

    result = await poll(source, KEY, NOW)

    assert len(platform_stub.seen) == 2
    assert [t.task_id for t in result.tasks] == ["a", "b"]


async def test_a_failing_later_page_fails_the_whole_poll_with_its_own_request_id(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    def respond(seen: Seen) -> Reply:
        if seen.query["page"] == "1":
            return json_reply({"tasks": [task("a"), task("b")]}, headers={"Request-Id": "p1"})
        return json_reply({"error": "busy"}, status=503, headers={"Request-Id": "p2"})

    platform_stub.respond = respond
    source = lazza(session, platform_stub.url, page_limit=2)

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (FailureKind.SERVER, 503, "p2")
    assert error.message.startswith("page 2: platform server error")
    assert '"busy"' in error.message


HTTP_DATE = format_datetime(NOW + timedelta(seconds=120), usegmt=True)


FAILURES = [
    Failure(400, {"error": "invalid access token"}, FailureKind.AUTH, "renew"),
    Failure(400, {"errors": ["page must be a number"]}, FailureKind.CLIENT, "page must be"),
    Failure(401, {"error": "Unauthorized"}, FailureKind.AUTH, "token rejected"),
    Failure(402, {"errors": "store frozen"}, FailureKind.FROZEN, "store frozen"),
    Failure(403, {"errors": {"scope": ["read_data"]}}, FailureKind.FORBIDDEN, "scope: read_data"),
    Failure(404, {"errors": ["no result"]}, FailureKind.CLIENT, '"no result"'),
    Failure(405, "Method Not Allowed", FailureKind.CLIENT, '"Method Not Allowed"'),
    Failure(422, {"errors": {"limit": "too big"}}, FailureKind.CLIENT, "limit: too big"),
    Failure(423, {}, FailureKind.BLOCKED, "security checks"),
    Failure(429, {"errors": "Too many request"}, FailureKind.RATE_LIMITED, '"Too many request"'),
    Failure(429, {}, FailureKind.RATE_LIMITED, "after 7 s", {"Retry-After": "7"}, 7.0),
    Failure(429, {}, FailureKind.RATE_LIMITED, "after 120 s", {"Retry-After": HTTP_DATE}, 120.0),
    Failure(433, {}, FailureKind.BLOCKED, "security checks"),
    Failure(436, {}, FailureKind.BLOCKED, "security checks"),
    Failure(500, {"error": "internal"}, FailureKind.SERVER, '"internal"'),
    Failure(502, "<html><title>502 Bad Gateway</title></html>", FailureKind.SERVER, "Bad Gateway"),
    Failure(503, "", FailureKind.SERVER, "retry after 30 s", {"Retry-After": "30"}, 30.0),
    Failure(504, "", FailureKind.SERVER, "platform server error"),
]


@pytest.mark.parametrize("case", [pytest.param(f, id=f"{f.status}-{f.fragment}") for f in FAILURES])
async def test_error_statuses_become_poll_errors_of_the_right_kind(
    platform_stub: PlatformStub, source: ShoplazzaSource, case: Failure
) -> None:
    body = case.body.encode() if isinstance(case.body, str) else json.dumps(case.body).encode()
    platform_stub.script(Reply(status=case.status, body=body, headers={**RID, **case.headers}))

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (case.kind, case.status, "req-7")
    assert error.retry_after == case.retry_after
    assert case.fragment in error.message
    assert "store lazza-main" in str(error)


async def test_an_echoed_token_is_redacted_from_the_error(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    platform_stub.script(json_reply({"error": f"token {TOKEN} is expired"}, status=401))

    error = await poll_error(source)

    assert "token [redacted] is expired" in error.message


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        (b"[]", FailureKind.INVALID_RESPONSE, "body is a list"),
        (b"42", FailureKind.INVALID_RESPONSE, "body is a number"),
        (b'"ok"', FailureKind.INVALID_RESPONSE, "body is a string"),
        (b'{"tasks": "x"}', FailureKind.INVALID_RESPONSE, "tasks is a string; expected a list"),
        (b'{"data": []}', FailureKind.INVALID_RESPONSE, "data is a list"),
        (b'{"items": []}', FailureKind.INVALID_RESPONSE, "no 'tasks' or 'querys' list in the body"),
        (b'{"data": {"rows": 1}}', FailureKind.INVALID_RESPONSE, "list in the data (keys: 'rows')"),
        (b"", FailureKind.INVALID_RESPONSE, "empty body"),
        (b"<html><title>Maintenance</title>", FailureKind.INVALID_RESPONSE, "HTML page"),
        (b'{"tasks": [{"query_id": "a"', FailureKind.INVALID_RESPONSE, "not valid JSON"),
        (b"\xff\xfe{", FailureKind.INVALID_RESPONSE, "not valid"),
        (b'{"code": "InternalError", "message": "boom"}', FailureKind.CLIENT, '"boom"'),
        (b'{"code": "Unauthorized", "message": "bad access token"}', FailureKind.AUTH, "code"),
    ],
)
async def test_unreadable_bodies_fail_the_poll_naming_what_was_wrong(
    platform_stub: PlatformStub,
    source: ShoplazzaSource,
    body: bytes,
    kind: FailureKind,
    fragment: str,
) -> None:
    platform_stub.script(Reply(body=body, headers=RID))

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (kind, 200, "req-7")
    assert fragment in error.message


BIG = json.dumps({"tasks": [task(f"t{n}") for n in range(200)]}).encode()


async def test_a_declared_length_over_the_cap_is_rejected_before_reading_the_body(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    # The server sends half the body and then waits: only a reject on Content-Length,
    # before reading, answers before the timeout.
    cap = len(BIG) * 3 // 4
    platform_stub.script(Reply(body=BIG, headers=RID, stall_body=True))
    source = lazza(session, platform_stub.url, max_body_bytes=cap, timeout=1)

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (
        FailureKind.INVALID_RESPONSE,
        200,
        "req-7",
    )
    assert f"larger than the {cap}-byte limit" in error.message


async def test_a_streamed_body_over_the_cap_is_rejected(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.script(Reply(body=BIG, headers=RID, chunked=True))
    source = lazza(session, platform_stub.url, max_body_bytes=1000)

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (
        FailureKind.INVALID_RESPONSE,
        200,
        "req-7",
    )
    assert "larger than the 1000-byte limit" in error.message


async def test_an_error_page_over_the_cap_still_reports_the_status(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.script(Reply(status=503, body=b"<html>" + b"x" * 5000, headers=RID))
    source = lazza(session, platform_stub.url, max_body_bytes=1000)

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (FailureKind.SERVER, 503, "req-7")


@pytest.mark.parametrize("stall_body", [False, True], ids=["no-headers", "half-body"])
async def test_a_response_slower_than_the_timeout_is_a_timeout(
    platform_stub: PlatformStub, session: aiohttp.ClientSession, stall_body: bool
) -> None:
    platform_stub.script(Reply(body=BIG, headers=RID, hold=not stall_body, stall_body=stall_body))
    source = lazza(session, platform_stub.url, timeout=0.2)

    error = await poll_error(source)

    assert (error.kind, error.http_status) == (FailureKind.TIMEOUT, None)
    assert error.request_id == ("req-7" if stall_body else None)
    assert "no complete response within 0.2 s" in error.message


async def test_a_refused_connection_is_a_network_failure(
    session: aiohttp.ClientSession,
) -> None:
    source = lazza(session, closed_port_url())

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (FailureKind.NETWORK, None, None)
    assert "connection failed" in error.message


async def test_a_connection_dropped_mid_response_is_a_network_failure(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    platform_stub.script(Reply(body=BIG, headers=RID, reset=True))

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (FailureKind.NETWORK, None, "req-7")


async def test_a_redirect_is_refused_so_the_token_never_leaves_the_host(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    target = "https://elsewhere.example/collect?x=1"
    platform_stub.script(Reply(status=302, headers={**RID, "Location": target}))

    error = await poll_error(source)

    assert (error.kind, error.http_status) == (FailureKind.INVALID_RESPONSE, 302)
    assert "redirected to another host (https://elsewhere.example)" in error.message
    assert "token was not sent there" in error.message
    assert len(platform_stub.seen) == 1


async def test_cancelling_a_poll_propagates_cancellation(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    platform_stub.script(Reply(hold=True))
    polling = asyncio.create_task(poll(source, KEY, NOW))
    async with asyncio.timeout(5):
        await platform_stub.arrived.wait()

    polling.cancel()

    with pytest.raises(asyncio.CancelledError):
        await polling


async def test_make_source_builds_a_shoplazza_source_with_one_tasks_endpoint(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    store = {
        "name": "lazza-main",
        "platform": "shoplazza",
        "domain": "mystore",
        "access_token": "t",
    }

    source = build_source(session, store)

    assert isinstance(source, ShoplazzaSource)
    assert (source.platform, source.store, source.endpoints) == (
        Platform.SHOPLAZZA,
        "lazza-main",
        (KEY,),
    )
    with pytest.raises(ValueError, match="not an endpoint"):
        await poll(source, EndpointKey("lazza-main", Platform.SHOPLINE, "QUERY"), NOW)


# --- unchanged responses ---------------------------------------------------------------


async def test_the_same_one_page_list_again_is_unchanged_and_not_parsed(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    platform_stub.respond = pages({1: [task("t1")]})
    first = await source.poll_since(KEY, NOW, None)
    assert isinstance(first, PollResult)
    assert first.fingerprint is not None

    again = await source.poll_since(KEY, NOW, first.fingerprint)
    assert again == Unchanged(KEY, first.fingerprint, request_id="p1")

    platform_stub.respond = pages({1: [task("t1", 2)]})  # one byte differs
    changed = await source.poll_since(KEY, NOW, first.fingerprint)
    assert isinstance(changed, PollResult)
    assert [t.status for t in changed.tasks] == [TaskStatus.COMPLETED]
    assert changed.fingerprint != first.fingerprint


async def test_a_longer_list_never_matches_its_first_page(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    source = lazza(session, platform_stub.url, page_limit=2, max_pages=5)
    platform_stub.respond = pages({1: [task("t1")]})
    short = await source.poll_since(KEY, NOW, None)
    platform_stub.respond = pages({1: [task("t1"), task("t2")], 2: [task("t3")]})
    long = await source.poll_since(KEY, NOW, None)
    assert isinstance(short, PollResult)
    assert isinstance(long, PollResult)
    assert long.fingerprint != short.fingerprint

    # The same two pages again: page 1 alone is not the whole list, so every page is read.
    platform_stub.seen.clear()
    again = await source.poll_since(KEY, NOW, long.fingerprint)
    assert isinstance(again, PollResult)
    assert [t.task_id for t in again.tasks] == ["t1", "t2", "t3"]
    assert again.fingerprint == long.fingerprint
    assert len(platform_stub.seen) == 2


async def test_an_error_answer_is_never_unchanged(
    platform_stub: PlatformStub, source: ShoplazzaSource
) -> None:
    platform_stub.script(json_reply({"tasks": []}))
    first = await source.poll_since(KEY, NOW, None)
    assert isinstance(first, PollResult)
    assert first.fingerprint is not None
    platform_stub.script(json_reply({"tasks": []}, status=500))
    with pytest.raises(PollError) as info:
        await source.poll_since(KEY, NOW, first.fingerprint)
    assert info.value.kind is FailureKind.SERVER
