"""The Shopline source against a scripted Shopline API on 127.0.0.1."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulkwatch.config import load_settings, resolve_stores
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
from bulkwatch.sources.factory import make_source
from bulkwatch.sources.shopline import ShoplineSource
from helpers.platform_stub import PlatformStub, Reply, closed_port_url, json_reply
from helpers.source_support import Failure, build_source, failed_poll, poll

TOKEN = "line-SECRET-eyJhbGciOiJIUzUxMiJ9.abc"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
QUERY = EndpointKey("line-main", Platform.SHOPLINE, "QUERY")
MUTATION = EndpointKey("line-main", Platform.SHOPLINE, "MUTATION")
TRACE = {"traceId": "trace-9"}
CST = timezone(timedelta(hours=8))
URL = "https://sl-private-oss.example.com/task-jsonline/prod/1/9b0c.jsonl?Expires=1754059510"


def line(
    session: aiohttp.ClientSession, base_url: str, *, max_body_bytes: int = 1 << 20, **fields: Any
) -> ShoplineSource:
    store = {
        "name": "line-main",
        "platform": "shopline",
        "handle": "open001",
        "access_token": TOKEN,
        "base_url": base_url,
        **fields,
    }
    source = build_source(session, store, max_body_bytes=max_body_bytes)
    assert isinstance(source, ShoplineSource)
    return source


@pytest.fixture
def source(platform_stub: PlatformStub, session: aiohttp.ClientSession) -> ShoplineSource:
    return line(session, platform_stub.url)


def snap(**fields: Any) -> TaskSnapshot:
    values: dict[str, Any] = {
        "platform": Platform.SHOPLINE,
        "store": "line-main",
        "task_id": "9b0c0f04",
        "operation_type": "QUERY",
        "status": TaskStatus.RUNNING,
        "raw_status": "RUNNING",
        "observed_at": NOW,
    }
    return TaskSnapshot(**{**values, **fields})


async def poll_error(source: ShoplineSource, key: EndpointKey = QUERY) -> PollError:
    return await failed_poll(source, key, NOW, TOKEN)


async def poll_one(platform_stub: PlatformStub, source: ShoplineSource, body: Any) -> PollResult:
    platform_stub.script(json_reply(body, headers=TRACE))
    result = await poll(source, QUERY, NOW)
    assert result.exclusive
    assert result.request_id == "trace-9"
    return result


COMPLETED = {
    "id": "9b0c0f04",
    "status": "COMPLETED",
    "type": "QUERY",
    "createdAt": "2023-04-06T10:48:29+08:00",
    "completedAt": "2023-04-06T10:50:00+08:00",
    "expiredAt": "2023-04-06T22:50:00+08:00",
    "completedCount": 1200,
    "errorCode": None,
    "reason": "",
    "url": URL,
    "partialDataUrl": URL,
    "storeId": "1672369729606",
}
COMPLETED_SNAPSHOT = snap(
    status=TaskStatus.COMPLETED,
    raw_status="COMPLETED",
    url=URL,
    partial_data_url=URL,
    completed_count=1200,
    created_at=datetime(2023, 4, 6, 10, 48, 29, tzinfo=CST),
    completed_at=datetime(2023, 4, 6, 10, 50, tzinfo=CST),
    expires_at=datetime(2023, 4, 6, 22, 50, tzinfo=CST),
)


async def test_poll_sends_the_documented_request(
    platform_stub: PlatformStub, source: ShoplineSource
) -> None:
    platform_stub.script(json_reply({}))

    await poll(source, MUTATION, NOW)

    [seen] = platform_stub.seen
    assert seen.path == "/admin/openapi/v20260301/current_bulk_operation.json"
    assert seen.query == {"type": "MUTATION"}
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"
    assert seen.headers["Accept"] == "application/json"
    assert "Access-Token" not in seen.headers


@pytest.mark.parametrize(
    "body",
    [COMPLETED, {"data": COMPLETED}, {"code": 200, "message": "success", "data": COMPLETED}],
    ids=["top-level", "data-wrapper", "code-wrapper"],
)
async def test_every_field_of_a_completed_operation_is_read(
    platform_stub: PlatformStub, source: ShoplineSource, body: dict[str, Any]
) -> None:
    result = await poll_one(platform_stub, source, body)

    assert result.tasks == (COMPLETED_SNAPSHOT,)
    assert result.problems == ()


async def test_a_failed_operation_keeps_its_error_code_reason_and_partial_data(
    platform_stub: PlatformStub, source: ShoplineSource
) -> None:
    body = {
        "id": 42,
        "status": "FAILED",
        "type": "MUTATION_GENERAL",
        "createdAt": "2023-04-06T02:48:29Z",
        "completedCount": "37",
        "errorCode": "TIMEOUT",
        "reason": "Process timeout",
        "url": "",
        "partialDataUrl": URL,
    }

    result = await poll_one(platform_stub, source, body)

    assert result.tasks == (
        snap(
            task_id="42",
            operation_type="MUTATION_GENERAL",
            status=TaskStatus.FAILED,
            raw_status="FAILED",
            error_code="TIMEOUT",
            reason="Process timeout",
            completed_count=37,
            partial_data_url=URL,
            created_at=datetime(2023, 4, 6, 2, 48, 29, tzinfo=UTC),
        ),
    )
    assert result.problems == ()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("CREATED", TaskStatus.CREATED),
        ("RUNNING", TaskStatus.RUNNING),
        ("CANCELING", TaskStatus.CANCELING),
        ("CANCELED", TaskStatus.CANCELED),
        ("COMPLETED", TaskStatus.COMPLETED),
        ("FAILED", TaskStatus.FAILED),
        ("EXPIRED", TaskStatus.EXPIRED),
        ("completed", TaskStatus.COMPLETED),
        (" Running ", TaskStatus.RUNNING),
        ("PAUSED", TaskStatus.UNKNOWN),
    ],
)
async def test_status_is_matched_case_insensitively_and_the_raw_value_kept(
    platform_stub: PlatformStub, source: ShoplineSource, raw: str, status: TaskStatus
) -> None:
    result = await poll_one(platform_stub, source, {"id": "9b0c0f04", "status": raw})

    assert result.tasks == (snap(status=status, raw_status=raw),)
    assert result.problems == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "bulk operation '9b0c0f04' has a status that is missing"),
        (3, "bulk operation '9b0c0f04' has a status that is a number, not a string"),
    ],
)
async def test_a_missing_or_non_string_status_fails_the_poll(
    platform_stub: PlatformStub, source: ShoplineSource, raw: Any, message: str
) -> None:
    # One task only: reading it as UNKNOWN would invent a transition or a superseded task.
    platform_stub.script(json_reply({"id": "9b0c0f04", "status": raw}, headers=TRACE))
    error = await poll_error(source)
    assert error.kind is FailureKind.INVALID_RESPONSE
    assert error.message == message


@pytest.mark.parametrize(
    ("raw", "operation_type", "problems"),
    [
        ("QUERY", "QUERY", ()),
        ("MUTATION", "MUTATION", ()),
        ("MUTATION_GENERAL", "MUTATION_GENERAL", ()),
        ("mutation_general", "MUTATION_GENERAL", ()),
        (None, "MUTATION", ()),
        ("BULK_EXPORT", "BULK_EXPORT", ()),
        (7, "MUTATION", ("type: expected a string, got a number; read as MUTATION",)),
    ],
)
async def test_type_defaults_to_the_polled_type(
    platform_stub: PlatformStub,
    source: ShoplineSource,
    raw: Any,
    operation_type: str,
    problems: tuple[str, ...],
) -> None:
    body = {"id": "9b0c0f04", "status": "RUNNING", "type": raw}
    platform_stub.script(json_reply({k: v for k, v in body.items() if v is not None}))

    result = await poll(source, MUTATION, NOW)

    assert result.key == MUTATION
    assert [t.operation_type for t in result.tasks] == [operation_type]
    assert result.problems == problems


@pytest.mark.parametrize(
    ("raw", "expected", "problems"),
    [
        ("2023-04-06T10:48:29+08:00", datetime(2023, 4, 6, 10, 48, 29, tzinfo=CST), ()),
        ("2023-04-06T02:48:29.5Z", datetime(2023, 4, 6, 2, 48, 29, 500000, tzinfo=UTC), ()),
        (
            "2023-04-06T10:48:29",
            datetime(2023, 4, 6, 10, 48, 29, tzinfo=UTC),
            ("createdAt: '2023-04-06T10:48:29' has no UTC offset; read as UTC",),
        ),
        ("yesterday", None, ("createdAt: cannot read 'yesterday' as an ISO 8601 time",)),
        ({"t": 1}, None, ("createdAt: expected an ISO 8601 time, got an object",)),
        ("", None, ()),
    ],
)
async def test_times_need_an_offset_and_bad_ones_are_reported_not_fatal(
    platform_stub: PlatformStub,
    source: ShoplineSource,
    raw: Any,
    expected: datetime | None,
    problems: tuple[str, ...],
) -> None:
    body = {"id": "9b0c0f04", "status": "RUNNING", "createdAt": raw}

    result = await poll_one(platform_stub, source, body)

    [task] = result.tasks
    assert task.created_at == expected
    assert task.created_at is None or task.created_at.utcoffset() is not None
    assert result.problems == problems


@pytest.mark.parametrize(
    ("raw", "expected", "problems"),
    [
        (12, 12, ()),
        ("12", 12, ()),
        ("x", None, ("completedCount: 'x' is not an integer",)),
        (True, None, ("completedCount: True is not an integer",)),
        (1.5, None, ("completedCount: 1.5 is not an integer",)),
        (None, None, ()),
    ],
)
async def test_completed_count_accepts_integer_like_strings(
    platform_stub: PlatformStub,
    source: ShoplineSource,
    raw: Any,
    expected: int | None,
    problems: tuple[str, ...],
) -> None:
    body = {"id": "9b0c0f04", "status": "RUNNING", "completedCount": raw}

    result = await poll_one(platform_stub, source, body)

    assert [t.completed_count for t in result.tasks] == [expected]
    assert result.problems == problems


async def test_wrongly_typed_text_fields_are_dropped_and_reported(
    platform_stub: PlatformStub, source: ShoplineSource
) -> None:
    body = {"id": "9b0c0f04", "status": "RUNNING", "url": ["x"], "errorCode": 5}

    result = await poll_one(platform_stub, source, body)

    assert result.tasks == (snap(),)
    assert result.problems == (
        "url: expected a string, got a list",
        "errorCode: expected a string, got a number",
    )


@pytest.mark.parametrize(
    ("reply", "http_status"),
    [
        pytest.param(json_reply({}, headers=TRACE), 200, id="empty-object"),
        pytest.param(Reply(body=b"null", headers=TRACE), 200, id="null"),
        pytest.param(Reply(body=b"", headers=TRACE), 200, id="empty-body"),
        pytest.param(Reply(body=b" \r\n ", headers=TRACE), 200, id="whitespace"),
        pytest.param(Reply(status=204, headers=TRACE), 204, id="no-content"),
        pytest.param(json_reply({"errors": "Not Found"}, 404, TRACE), 404, id="404"),
        pytest.param(Reply(status=404, headers=TRACE), 404, id="404-empty"),
        pytest.param(json_reply({"data": None}, headers=TRACE), 200, id="data-null"),
        pytest.param(json_reply({"data": {}}, headers=TRACE), 200, id="data-empty"),
        pytest.param(json_reply({"code": 200, "data": None}, headers=TRACE), 200, id="code"),
        pytest.param(json_reply({"id": None}, headers=TRACE), 200, id="id-null"),
        pytest.param(json_reply({"id": "", "status": ""}, headers=TRACE), 200, id="id-empty"),
        pytest.param(
            json_reply({"id": "", "status": "RUNNING"}, headers=TRACE), 200, id="id-empty-status"
        ),
        pytest.param(
            Reply(404, b"<html><title>404 Not Found</title></html>", TRACE), 404, id="404-html"
        ),
    ],
)
async def test_every_no_current_task_answer_is_an_empty_successful_poll(
    platform_stub: PlatformStub, source: ShoplineSource, reply: Reply, http_status: int
) -> None:
    platform_stub.script(reply)

    result = await poll(source, QUERY, NOW)

    assert result == PollResult(
        key=QUERY, tasks=(), exclusive=True, request_id="trace-9", http_status=http_status
    )
    assert result.no_task  # how it said so, for the poller, `status` and `probe`


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        (b"[]", FailureKind.INVALID_RESPONSE, "body is a list; expected a bulk operation"),
        (b"3", FailureKind.INVALID_RESPONSE, "body is a number"),
        (b'"done"', FailureKind.INVALID_RESPONSE, "body is a string"),
        (b'{"data": []}', FailureKind.INVALID_RESPONSE, "data is a list"),
        (b'{"status": "RUNNING"}', FailureKind.INVALID_RESPONSE, "without a usable id"),
        (b'{"id": "  "}', FailureKind.INVALID_RESPONSE, "without a usable id"),
        (b'{"id": {"a": 1}}', FailureKind.INVALID_RESPONSE, "(id an object"),
        (b'{"data": {"status": "RUNNING"}}', FailureKind.INVALID_RESPONSE, "keys: 'status'"),
        (b"<!DOCTYPE html><title>Blocked</title>", FailureKind.INVALID_RESPONSE, "HTML"),
        (b'{"id": "9b0c0f04", "status": "RUN', FailureKind.INVALID_RESPONSE, "not valid JSON"),
        (b'{"code": 401, "message": "access token expired"}', FailureKind.AUTH, "expired"),
        (b'{"code": 500, "message": "busy", "data": null}', FailureKind.CLIENT, "code '500'"),
    ],
)
async def test_unreadable_bodies_fail_the_poll_naming_what_was_wrong(
    platform_stub: PlatformStub,
    source: ShoplineSource,
    body: bytes,
    kind: FailureKind,
    fragment: str,
) -> None:
    platform_stub.script(Reply(body=body, headers=TRACE))

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (kind, 200, "trace-9")
    assert fragment in error.message


HTTP_DATE = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
FAILURES = [
    Failure(400, {"errors": "type is invalid"}, FailureKind.CLIENT, '"type is invalid"'),
    Failure(401, {"errors": "Unauthorized"}, FailureKind.AUTH, "renew the store's access token"),
    Failure(402, {"errors": "Payment Required"}, FailureKind.FROZEN, "frozen"),
    Failure(403, {"errors": ["no scope"]}, FailureKind.FORBIDDEN, '"no scope"'),
    Failure(405, {}, FailureKind.CLIENT, "rejected the request"),
    Failure(422, {"errors": {"type": ["bad"]}}, FailureKind.CLIENT, '"type: bad"'),
    Failure(423, "Locked", FailureKind.BLOCKED, '"Locked"'),
    Failure(429, {"errors": "Too many request"}, FailureKind.RATE_LIMITED, '"Too many request"'),
    Failure(429, {}, FailureKind.RATE_LIMITED, "after 2 s", {"Retry-After": "2"}, 2.0),
    Failure(429, {}, FailureKind.RATE_LIMITED, "after 90 s", {"Retry-After": HTTP_DATE}, 90.0),
    Failure(433, {}, FailureKind.BLOCKED, "security checks"),
    Failure(434, {}, FailureKind.BLOCKED, "security checks"),
    Failure(435, {}, FailureKind.BLOCKED, "security checks"),
    Failure(436, {}, FailureKind.BLOCKED, "security checks"),
    Failure(500, {"error": "internal"}, FailureKind.SERVER, '"internal"'),
    Failure(502, "<html><title>Bad Gateway</title></html>", FailureKind.SERVER, '"Bad Gateway"'),
    Failure(503, "", FailureKind.SERVER, "server error"),
    Failure(504, "", FailureKind.SERVER, "server error"),
]


@pytest.mark.parametrize("case", [pytest.param(f, id=f"{f.status}-{f.fragment}") for f in FAILURES])
async def test_error_statuses_become_poll_errors_of_the_right_kind(
    platform_stub: PlatformStub, source: ShoplineSource, case: Failure
) -> None:
    body = case.body.encode() if isinstance(case.body, str) else json.dumps(case.body).encode()
    # Lower-case on purpose: the header lookup must not depend on the gateway's spelling.
    headers = {"traceid": "trace-9", **case.headers}
    platform_stub.script(Reply(status=case.status, body=body, headers=headers))

    error = await poll_error(source)

    assert (error.kind, error.http_status, error.request_id) == (case.kind, case.status, "trace-9")
    assert error.retry_after == case.retry_after
    assert case.fragment in error.message


async def test_a_rejected_token_names_the_store_and_says_to_renew_it(
    platform_stub: PlatformStub, source: ShoplineSource
) -> None:
    platform_stub.script(json_reply({"errors": f"invalid token Bearer {TOKEN}"}, 401, TRACE))

    error = await poll_error(source)

    assert str(error) == (
        "store line-main (shopline QUERY): auth: HTTP 401: token rejected; "
        'renew the store\'s access token; platform said: "invalid token Bearer [redacted]" '
        "(request id trace-9)"
    )


BIG = json.dumps({**COMPLETED, "reason": "x" * 5000}).encode()


@dataclass(frozen=True)
class Fault:
    """A reply that breaks the transport, and the failure the poll must report."""

    name: str
    reply: Reply
    kind: FailureKind
    fragment: str
    request_id: str | None = "trace-9"
    max_body_bytes: int = 1 << 20


FAULTS = [
    Fault("slow", Reply(hold=True), FailureKind.TIMEOUT, "within 0.2 s", None),
    Fault(
        "stalled-body",
        Reply(body=BIG, headers=TRACE, stall_body=True),
        FailureKind.TIMEOUT,
        "0.2 s",
    ),
    Fault("reset", Reply(body=BIG, headers=TRACE, reset=True), FailureKind.NETWORK, "closed"),
    Fault(
        "over-cap",
        Reply(body=BIG, headers=TRACE),
        FailureKind.INVALID_RESPONSE,
        "2000-byte",
        max_body_bytes=2000,
    ),
    Fault(
        "over-cap-streamed",
        Reply(body=BIG, headers=TRACE, chunked=True),
        FailureKind.INVALID_RESPONSE,
        "larger than the 2000-byte limit",
        max_body_bytes=2000,
    ),
]


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.name) for f in FAULTS])
async def test_transport_failures_are_classified(
    platform_stub: PlatformStub, session: aiohttp.ClientSession, fault: Fault
) -> None:
    platform_stub.script(fault.reply)
    source = line(session, platform_stub.url, timeout=0.2, max_body_bytes=fault.max_body_bytes)

    error = await poll_error(source)

    assert (error.kind, error.request_id) == (fault.kind, fault.request_id)
    assert fault.fragment in error.message


async def test_a_refused_connection_is_a_network_failure(
    session: aiohttp.ClientSession,
) -> None:
    error = await poll_error(line(session, closed_port_url()))

    assert (error.kind, error.http_status, error.request_id) == (FailureKind.NETWORK, None, None)
    assert "connection failed" in error.message


async def test_a_rotated_token_file_is_picked_up_without_a_restart(
    platform_stub: PlatformStub, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token_file = tmp_path / "line-main.token"
    token_file.write_text("token-one\n")
    config = tmp_path / "config.yaml"
    store = {
        "name": "line-main",
        "platform": "shopline",
        "handle": "open001",
        "access_token_file": str(token_file),
        "base_url": platform_stub.url,
    }
    config.write_text(json.dumps({"instance": "test", "stores": [store]}))
    settings = load_settings(config, environ={})
    source = make_source(resolve_stores(settings)[0], session)
    platform_stub.script(json_reply({}))

    def rewrite(text: str) -> None:
        before = token_file.stat().st_mtime_ns
        token_file.write_text(text)
        # A coarse clock can leave the mtime unchanged: make the change visible explicitly.
        os.utime(token_file, ns=(before + 10**9, before + 10**9))

    await poll(source, QUERY, NOW)
    rewrite("token-two\n")
    await poll(source, QUERY, NOW)
    rewrite("")  # a writer caught halfway: keep the last good token
    await poll(source, QUERY, NOW)
    token_file.unlink()  # mid-rotation: keep the last good token
    await poll(source, QUERY, NOW)

    assert [s.headers["Authorization"] for s in platform_stub.seen] == [
        "Bearer token-one",
        "Bearer token-two",
        "Bearer token-two",
        "Bearer token-two",
    ]


async def test_one_endpoint_per_operation_type(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    both = {"name": "line-main", "platform": "shopline", "handle": "open001", "access_token": "t"}
    only_mutation = line(session, platform_stub.url, operation_types=["MUTATION"])

    source = build_source(session, both)

    assert isinstance(source, ShoplineSource)
    assert (source.platform, source.store, source.endpoints) == (
        Platform.SHOPLINE,
        "line-main",
        (QUERY, MUTATION),
    )
    assert only_mutation.endpoints == (MUTATION,)
    with pytest.raises(ValueError, match="not an endpoint"):
        await poll(only_mutation, QUERY, NOW)


# --- unchanged responses ---------------------------------------------------------------


async def test_the_same_answer_again_is_unchanged_and_not_parsed(
    platform_stub: PlatformStub, source: ShoplineSource
) -> None:
    body = {"id": "gid://shopline/BulkOperation/7", "status": "RUNNING", "type": "QUERY"}
    platform_stub.script(json_reply(body, headers=TRACE))
    first = await source.poll_since(QUERY, NOW, None)
    assert isinstance(first, PollResult)
    assert first.fingerprint is not None
    assert first == await poll(source, QUERY, NOW)

    again = await source.poll_since(QUERY, NOW, first.fingerprint)
    assert again == Unchanged(QUERY, first.fingerprint, request_id="trace-9")

    platform_stub.script(json_reply({**body, "completedCount": 1}, headers=TRACE))
    changed = await source.poll_since(QUERY, NOW, first.fingerprint)
    assert isinstance(changed, PollResult)
    assert changed.tasks[0].completed_count == 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (Reply(status=404, body=b""), Reply(status=200, body=b"")),
        (Reply(status=200, body=b"{}"), Reply(status=200, body=b"{} ")),
    ],
    ids=["status", "body"],
)
async def test_every_byte_and_the_status_make_the_fingerprint(
    platform_stub: PlatformStub, source: ShoplineSource, one: Reply, other: Reply
) -> None:
    platform_stub.script(one)
    first = await source.poll_since(QUERY, NOW, None)
    platform_stub.script(other)
    second = await source.poll_since(QUERY, NOW, None)
    assert isinstance(first, PollResult)
    assert isinstance(second, PollResult)
    assert first.tasks == second.tasks == ()  # both say "no current task"...
    assert first.fingerprint != second.fingerprint  # ...in different bytes


async def test_an_error_answer_is_never_unchanged(
    platform_stub: PlatformStub, source: ShoplineSource
) -> None:
    platform_stub.script(Reply(status=404, body=b""))
    first = await source.poll_since(QUERY, NOW, None)
    assert isinstance(first, PollResult)
    platform_stub.script(Reply(status=503, body=b""))
    with pytest.raises(PollError) as info:
        await source.poll_since(QUERY, NOW, first.fingerprint)
    assert info.value.kind is FailureKind.SERVER
