"""The Slack notifier against a local stand-in for Slack's incoming-webhook endpoint.

The stand-in checks every message as Slack would (JSON, a `text`, Block Kit blocks within
Slack's size limits) and answers `invalid_blocks` otherwise, so a test that passes sends a
message Slack would accept.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from bulkwatch.model import TaskStatus
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import DeliveryError, NotifierContext
from bulkwatch.notifiers.slack import SlackNotifier, SlackNotifierConfig
from bulkwatch.store.base import DeliveryStatus
from helpers.notifier_support import (
    RESULT_URL,
    delivery_harness,
    outgoing,
    store_change,
    task_change,
)

SECRET_PATH = "/services/T0001/B0002/s3cr3tXYZ"
BLOCK_TYPES = {"header", "section", "actions", "context"}


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class FakeSlack:
    """Accepts messages Slack would accept; replies from `script`, then 200 `ok`."""

    def __init__(self) -> None:
        self.url = ""
        self.messages: list[dict[str, Any]] = []
        self.script: list[Answer] = []
        self.hold: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.hold is not None:
            await self.hold.wait()
        if request.content_type != "application/json":
            return web.Response(status=400, text="invalid_payload")
        try:
            message = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        problem = check_message(message)
        if problem:
            return web.Response(status=400, text=f"invalid_blocks: {problem}")
        self.messages.append(message)
        answer = self.script.pop(0) if self.script else Answer()
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)


def check_message(message: Any) -> str | None:
    """What Slack would reject in a message, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return "no text"
    blocks = message.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return "blocks"
    for block in blocks:
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            return f"block type {kind}"
        if kind == "header":
            text = block["text"]
            if text["type"] != "plain_text" or not 0 < len(text["text"]) <= 150:
                return "header"
        if kind == "section":
            if "text" in block and not 0 < len(block["text"]["text"]) <= 3000:
                return "section text"
            fields = block.get("fields", [])
            if len(fields) > 10 or any(not 0 < len(f["text"]) <= 2000 for f in fields):
                return "section fields"
        if kind == "actions":
            for element in block["elements"]:
                if element["type"] != "button" or len(element["url"]) > 3000:
                    return "button"
        if kind == "context" and not 0 < len(block["elements"]) <= 10:
            return "context"
    return None


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post(SECRET_PATH, fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}{SECRET_PATH}"
    try:
        yield fake
    finally:
        if fake.hold is not None:
            fake.hold.set()
        await runner.cleanup()


def notifier(session: aiohttp.ClientSession, url: str, **fields: object) -> SlackNotifier:
    config = SlackNotifierConfig.model_validate({"name": "chat", "webhook_url": url, **fields})
    return SlackNotifier(config, session)


def blocks_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in message["blocks"] if b["type"] == kind]


async def test_completed_task_message_has_header_fields_link_and_context(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    event = outgoing(task_change())
    await notifier(session, slack.url).send(event)

    (message,) = slack.messages
    assert message["text"] == "lazza-main: task d6ca13c4 RUNNING → COMPLETED"
    (header,) = blocks_of(message, "header")
    assert header["text"]["text"] == "Task completed"
    text_section, fields_section = blocks_of(message, "section")
    assert text_section["text"] == {"type": "mrkdwn", "text": message["text"]}
    assert [f["text"] for f in fields_section["fields"]] == [
        "*Store*\nlazza-main",
        "*Task*\nd6ca13c4",
        "*Status*\nRUNNING → COMPLETED",
        "*Rows*\n1200",
        "*Operation*\nDATA_QUERY",
    ]
    (actions,) = blocks_of(message, "actions")
    assert actions["elements"][0]["url"] == RESULT_URL
    assert actions["elements"][0]["text"]["text"] == "Download result"
    (context,) = blocks_of(message, "context")
    assert context["elements"][0]["text"] == (
        f"`bulkwatch.task.completed` · id `{event.id}` · bulkwatch/test-1"
    )


async def test_store_down_message_names_the_reason_and_has_no_buttons(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    await notifier(session, slack.url).send(outgoing(store_change()))
    (message,) = slack.messages
    assert message["text"] == "lazza-main is down: HTTP 401: invalid token"
    assert blocks_of(message, "header")[0]["text"]["text"] == "Store down"
    assert blocks_of(message, "actions") == []


async def test_templates_are_used_and_values_are_escaped_for_mrkdwn(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    event = outgoing(task_change(TaskStatus.FAILED, error_code="E<1>", reason="a & b <@channel>"))
    hook = notifier(session, slack.url, title="$store: $title", text="*Failed:* $error")
    await hook.send(event)

    (message,) = slack.messages
    assert blocks_of(message, "header")[0]["text"]["text"] == "lazza-main: Task failed"
    assert message["text"] == "*Failed:* E&lt;1&gt;: a &amp; b &lt;@channel&gt;"


async def test_long_values_are_cut_to_slacks_limits(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    event = outgoing(task_change(TaskStatus.FAILED, reason="x" * 5000, task_id="t" * 400))
    await notifier(session, slack.url, title="$task_id").send(event)
    (message,) = slack.messages  # the stand-in checked every limit
    assert blocks_of(message, "header")[0]["text"]["text"].endswith("…")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer(400, "invalid_payload"), ("HTTP 400 from Slack: invalid_payload", True, None)),
        (Answer(403, "invalid_token"), ("HTTP 403 from Slack: invalid_token", True, None)),
        (Answer(404, "no_service"), ("HTTP 404 from Slack: no_service", True, None)),
        (
            Answer(410, "channel_is_archived"),
            ("HTTP 410 from Slack: channel_is_archived", True, None),
        ),
        (
            Answer(429, "rate_limited", {"Retry-After": "30"}),
            ("HTTP 429 from Slack: rate_limited", False, 30.0),
        ),
        (Answer(500, "<html>oops</html>"), ("HTTP 500 from Slack", False, None)),
        (Answer(503, "", {"Retry-After": "7"}), ("HTTP 503 from Slack", False, 7.0)),
    ],
)
async def test_slack_answers_map_to_permanent_or_retryable_failures(
    slack: FakeSlack,
    session: aiohttp.ClientSession,
    answer: Answer,
    expected: tuple[str, bool, float | None],
) -> None:
    """(message, permanent, retry_after) for each answer; Slack's error code is quoted only
    when it is one (never an HTML page)."""
    slack.script = [answer]
    with pytest.raises(DeliveryError) as caught:
        await notifier(session, slack.url).send(outgoing())
    error = caught.value
    assert (str(error), error.permanent, error.retry_after) == expected


async def test_unreachable_slack_is_retryable_and_the_url_never_appears(
    session: aiohttp.ClientSession,
) -> None:
    url = f"http://127.0.0.1:1{SECRET_PATH}"
    with pytest.raises(DeliveryError) as caught:
        await notifier(session, url).send(outgoing())
    assert str(caught.value) == "cannot connect to Slack: connection refused"
    assert not caught.value.permanent


async def test_a_slow_slack_times_out_as_a_retryable_failure(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    slack.hold = asyncio.Event()
    with pytest.raises(DeliveryError, match=r"^timeout after 0.2s$") as caught:
        await notifier(session, slack.url, timeout=0.2).send(outgoing())
    assert not caught.value.permanent


async def test_failure_then_success_goes_through_the_dispatcher(
    tmp_path: Path, slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    slack.script = [Answer(503, "service_unavailable")]
    async with delivery_harness(tmp_path) as h:
        await h.enqueue(task_change(), "chat")
        failed = await h.retry_then_deliver(h.dispatcher(notifier(session, slack.url)))
        assert failed.last_error == "HTTP 503 from Slack: service_unavailable"
        assert len(slack.messages) == 2
        assert (h.count("chat", "retry"), h.count("chat", "delivered")) == (1, 1)


async def test_a_revoked_webhook_is_dead_lettered_at_once(
    tmp_path: Path, slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    slack.script = [Answer(404, "no_service")]
    async with delivery_harness(tmp_path) as h:
        await h.enqueue(task_change(), "chat")
        assert await h.dispatcher(notifier(session, slack.url)).run_once() == 1
        row = await h.only(DeliveryStatus.DEAD)
        assert row.last_error == "HTTP 404 from Slack: no_service"
        assert h.count("chat", "dead") == 1


async def test_registry_builds_it_from_a_webhook_url_file(tmp_path: Path, slack: FakeSlack) -> None:
    url_file = tmp_path / "slack-url"
    url_file.write_text(slack.url + "\n")
    kind = registry.get("slack")
    assert kind is not None
    config = kind.config_model.model_validate(
        {"name": "chat", "type": "slack", "webhook_url_file": str(url_file)}
    )
    assert "s3cr3t" not in repr(config)
    async with aiohttp.ClientSession() as session:
        hook = kind.build(config, NotifierContext(session=session, instance="test-1"))
        await hook.send(outgoing())
    assert len(slack.messages) == 1


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "webhook_url: field required (or webhook_url_file)"),
        ({"webhook_url": "ftp://hooks.example.com/s3cr3t"}, "must be an http:// or https:// URL"),
        ({"webhook_url": "https://x/s3cr3t", "webhook_url_file": "/x"}, "not both"),
        ({"webhook_url_file": "/nonexistent/slack-url"}, "webhook_url_file: cannot read"),
        ({"webhook_url": "https://x/s3cr3t", "text": "$nope"}, "unknown placeholder $nope"),
        ({"webhook_url": "https://x/s3cr3t", "title": "$"}, "invalid template"),
    ],
)
def test_config_problems_are_reported_without_the_url(
    fields: dict[str, object], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackNotifierConfig.model_validate({"name": "chat", **fields})
    message = str(caught.value)
    assert re.search(re.escape(expected), message)
    assert "s3cr3t" not in message
