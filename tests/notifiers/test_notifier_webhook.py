"""The webhook notifier against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bulkwatch import __version__
from bulkwatch.common.retry_after import parse_retry_after
from bulkwatch.model import (
    EventType,
    Platform,
    TaskSnapshot,
    TaskStatus,
    encode_cloudevent,
    task_event,
)
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import DeliveryError, NotifierContext, OutgoingEvent
from bulkwatch.notifiers.sample import sample_event, send_sample
from bulkwatch.notifiers.webhook import CONTENT_TYPE, WebhookNotifier, WebhookNotifierConfig
from helpers.webhook_receiver import Receiver, Reply

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def outgoing(attempt: int = 1) -> OutgoingEvent:
    snapshot = TaskSnapshot(
        platform=Platform.SHOPLAZZA,
        store="lazza-main",
        task_id="d6ca13c4",
        operation_type="DATA_QUERY",
        status=TaskStatus.COMPLETED,
        raw_status=2,
        observed_at=NOW,
        url="https://files.example.com/export.csv",
    )
    event = task_event(
        EventType.TASK_COMPLETED, snapshot, seq=1, previous=TaskStatus.RUNNING, now=NOW
    )
    body = encode_cloudevent(event, "test-1")
    return OutgoingEvent(
        id=event.id,
        type=event.type,
        store=event.store,
        body=body,
        cloudevent=json.loads(body),
        attempt=attempt,
    )


def notifier(session: aiohttp.ClientSession, url: str, **fields: object) -> WebhookNotifier:
    config = WebhookNotifierConfig.model_validate({"name": "hook", "url": url, **fields})
    return WebhookNotifier(config, session)


async def test_signed_delivery_verifies_with_standard_webhooks_and_parses_as_cloudevent(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    event = outgoing()
    await notifier(session, receiver.url, secret=SECRET).send(event)

    (request,) = receiver.requests
    assert request.body == event.body
    assert request.headers["content-type"] == CONTENT_TYPE
    assert request.headers["webhook-id"] == event.id
    assert Webhook(SECRET).verify(request.body, request.headers) == json.loads(event.body)

    parsed = from_http_event(HTTPMessage(headers=request.headers, body=request.body))
    assert parsed.get_id() == event.id
    assert parsed.get_type() == "bulkwatch.task.completed"
    assert parsed.get_source() == "bulkwatch/test-1"
    assert parsed.get_subject() == "lazza-main/d6ca13c4"
    data = parsed.get_data()
    assert isinstance(data, dict)
    assert data["status"] == "COMPLETED"
    assert data["previous_status"] == "RUNNING"


async def test_signature_made_with_another_secret_is_rejected_by_the_receiver(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await notifier(session, receiver.url, secret=SECRET).send(outgoing())
    (request,) = receiver.requests
    other = "whsec_" + base64.b64encode(b"another secret entirely!").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)


async def test_unsigned_delivery_has_no_signature_headers_and_sends_extra_headers(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    hook = notifier(session, receiver.url, headers={"Authorization": "Bearer t0ken"})
    await hook.send(outgoing())

    (request,) = receiver.requests
    assert request.headers["content-type"] == CONTENT_TYPE
    assert request.headers["authorization"] == "Bearer t0ken"
    assert not {"webhook-id", "webhook-timestamp", "webhook-signature"} & set(request.headers)


@pytest.mark.parametrize("status", [200, 201, 204])
async def test_2xx_is_delivered(
    receiver: Receiver, session: aiohttp.ClientSession, status: int
) -> None:
    receiver.default = Reply(status)
    await notifier(session, receiver.url, secret=SECRET).send(outgoing())
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (408, {}, None),
        (429, {}, None),
        (429, {"Retry-After": "30"}, 30.0),
        (500, {}, None),
        (502, {}, None),
        (503, {}, None),
        (503, {"Retry-After": "120"}, 120.0),
        (503, {"Retry-After": "soon"}, None),
    ],
)
async def test_retryable_statuses_raise_retryable_error_with_retry_after(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    receiver.default = Reply(status, headers)
    with pytest.raises(DeliveryError) as caught:
        await notifier(session, receiver.url, secret=SECRET).send(outgoing())
    assert not caught.value.permanent
    assert caught.value.retry_after == retry_after
    assert str(caught.value) == f"HTTP {status} from webhook"
    assert SECRET not in str(caught.value)


async def test_retry_after_as_http_date_becomes_seconds(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)
    receiver.default = Reply(429, {"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(DeliveryError) as caught:
        await notifier(session, receiver.url).send(outgoing())
    assert caught.value.retry_after is not None
    assert 100 <= caught.value.retry_after <= 120


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        (400, {}, "HTTP 400 from webhook"),
        (401, {}, "HTTP 401 from webhook"),
        (404, {}, "HTTP 404 from webhook"),
        (410, {}, "HTTP 410 from webhook"),
        (422, {}, "HTTP 422 from webhook"),
        (301, {"Location": "/elsewhere"}, "HTTP 301 from webhook (redirects are not followed)"),
    ],
)
async def test_other_4xx_and_redirects_are_permanent(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str],
    message: str,
) -> None:
    receiver.default = Reply(status, headers)
    with pytest.raises(DeliveryError) as caught:
        await notifier(session, receiver.url, secret=SECRET).send(outgoing())
    assert caught.value.permanent
    assert str(caught.value) == message
    assert len(receiver.requests) == 1  # the redirect was not followed


async def test_slow_receiver_times_out_as_retryable(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.hold = asyncio.Event()
    with pytest.raises(DeliveryError) as caught:
        await notifier(session, receiver.url, timeout=0.2).send(outgoing())
    assert not caught.value.permanent
    assert str(caught.value) == "timeout after 0.2s"


@pytest.fixture
def refusing_port() -> Iterator[int]:
    # Bound but never listening: connecting is refused, and nobody else can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_connection_refused_is_retryable(
    session: aiohttp.ClientSession, refusing_port: int
) -> None:
    hook = notifier(session, f"http://127.0.0.1:{refusing_port}/hook", secret=SECRET)
    with pytest.raises(DeliveryError) as caught:
        await hook.send(outgoing())
    assert not caught.value.permanent
    assert str(caught.value) == "connection refused"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("45", 45.0),
        (" 45 ", 45.0),
        ("-5", None),
        ("1.5", 1.5),  # not RFC delta-seconds, but its meaning is plain: honoured
        ("later", None),
        ("Mon, 23 Nov 2026 10:01:00 GMT", 60.0),
        ("Mon, 23 Nov 2026 09:59:00 GMT", 0.0),  # already past: retry at will
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "ftp://example.com/x"}, "must be an http:// or https:// URL with a host"),
        ({"url": "http://"}, "must be an http:// or https:// URL with a host"),
        ({"secret": "c2VjcmV0LXNlY3JldA=="}, "must be 'whsec_' followed by base64"),
        ({"secret": "whsec_not base64!!"}, "must be 'whsec_' followed by base64"),
        ({"secret": "whsec_"}, "the key is empty"),
        ({"timeout": 0}, "greater than 0"),
        ({"headers": {"webhook-signature": "x"}}, "webhook-signature is set by bulkwatch"),
        ({"headers": {"Content-Type": "text/plain"}}, "Content-Type is set by bulkwatch"),
        ({"secret": SECRET, "secret_file": "/nonexistent"}, "give secret or secret_file"),
        ({"secret_file": "/nonexistent/secret"}, "secret_file: cannot read /nonexistent/secret"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookNotifierConfig.model_validate(
            {"name": "hook", "url": "https://hooks.example.com/x", **fields}
        )
    text = str(caught.value)
    assert message in text
    secret = fields.get("secret")
    if isinstance(secret, str) and len(secret) > len("whsec_"):
        assert secret not in text


def test_secret_file_is_read_at_config_time(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    config = WebhookNotifierConfig(name="hook", url="https://h.example.com/", secret_file=path)
    assert config.secret is not None
    assert config.secret.get_secret_value() == SECRET


def test_secret_file_with_a_bad_secret_names_the_field_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("hunter2-not-a-webhook-secret", encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        WebhookNotifierConfig(name="hook", url="https://h.example.com/", secret_file=path)
    assert f"secret_file: the content of {path} must be 'whsec_'" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_and_headers_stay_out_of_repr() -> None:
    config = WebhookNotifierConfig(
        name="hook",
        url="https://h.example.com/",
        secret=SecretStr(SECRET),
        headers={"Authorization": "Bearer t0ken"},
    )
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert "t0ken" not in repr(config)


def test_duration_strings_are_accepted_for_timeout() -> None:
    config = WebhookNotifierConfig.model_validate(
        {"name": "hook", "url": "http://127.0.0.1/", "timeout": "1m"}
    )
    assert config.timeout == 60.0


async def test_registry_builds_a_webhook_notifier_from_config(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    kind = registry.get("webhook")
    assert kind is not None
    config = kind.config_model.model_validate(
        {"name": "hook", "type": "webhook", "url": receiver.url, "secret": SECRET}
    )
    hook = kind.build(config, NotifierContext(session=session, instance="test-1"))
    await hook.send(outgoing())
    await hook.aclose()
    assert hook.name == "hook"
    assert Webhook(SECRET).verify(receiver.requests[0].body, receiver.requests[0].headers)


async def test_notify_test_sends_the_user_agent_of_every_bulkwatch_request(
    receiver: Receiver,
) -> None:
    config = WebhookNotifierConfig(name="hook", url=receiver.url)
    event = sample_event("test-1", "lazza-main", Platform.SHOPLAZZA)
    assert await send_sample(config, event, "test-1") is None
    (request,) = receiver.requests
    assert request.headers["user-agent"] == f"bulkwatch/{__version__}"
