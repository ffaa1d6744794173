"""The Apprise notifier through Apprise's own `json://` service to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from bulkwatch.model import TaskStatus
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.apprise import AppriseNotifier, AppriseNotifierConfig
from bulkwatch.notifiers.base import DeliveryError
from bulkwatch.store.base import DeliveryStatus
from helpers.notifier_support import delivery_harness, outgoing, store_change, task_change
from helpers.webhook_receiver import Receiver, Reply, running_receiver

# Loading Apprise's plugins imports `imghdr` (its e-mail plugin), which Python 3.11 flags as
# deprecated. That is Apprise's business and harmless here; every other warning stays an error.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated and slated for removal:DeprecationWarning"
)

TOKEN = "tok-5e1f-s3cr3t"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver(f"/{TOKEN}/notify") as r:
        yield r


def apprise_url(receiver: Receiver) -> str:
    """The receiver as an Apprise JSON-service URL; the token in its path plays the secret."""
    return "json://" + receiver.url.removeprefix("http://")


def notifier(*urls: str, **fields: object) -> AppriseNotifier:
    config = AppriseNotifierConfig.model_validate({"name": "push", "urls": list(urls), **fields})
    return AppriseNotifier(config)


async def test_title_and_body_reach_the_service(receiver: Receiver) -> None:
    await notifier(apprise_url(receiver)).send(outgoing(task_change()))

    (request,) = receiver.requests
    payload = json.loads(request.body)
    assert payload["title"] == "Task completed"
    assert payload["message"].startswith("lazza-main: task d6ca13c4 RUNNING → COMPLETED\n\n")
    assert "Rows: 1200" in payload["message"]


async def test_custom_templates_are_rendered(receiver: Receiver) -> None:
    hook = notifier(apprise_url(receiver), title="[$store] $title", body="$headline")
    await hook.send(outgoing(store_change()))
    payload = json.loads(receiver.requests[0].body)
    assert (payload["title"], payload["message"]) == (
        "[lazza-main] Store down",
        "lazza-main is down: HTTP 401: invalid token",
    )


async def test_a_failing_service_is_a_retryable_failure_named_without_its_url(
    receiver: Receiver,
) -> None:
    receiver.default = Reply(500)
    with pytest.raises(DeliveryError) as caught:
        await notifier(apprise_url(receiver)).send(outgoing())
    assert str(caught.value) == "Apprise: 1 of 1 service(s) failed: JSON FAILURE"
    assert not caught.value.permanent
    assert TOKEN not in str(caught.value)


async def test_failure_then_success_goes_through_the_dispatcher(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script = [Reply(502)]
    async with delivery_harness(tmp_path) as h:
        await h.enqueue(task_change(TaskStatus.EXPIRED), "push")
        failed = await h.retry_then_deliver(h.dispatcher(notifier(apprise_url(receiver))))
        assert failed.last_error == "Apprise: 1 of 1 service(s) failed: JSON FAILURE"
        assert len(receiver.requests) == 2
        assert (h.count("push", "retry"), h.count("push", "delivered")) == (1, 1)


async def test_a_service_that_keeps_failing_is_dead_after_max_attempts(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = Reply(503)
    async with delivery_harness(tmp_path) as h:
        await h.enqueue(task_change(), "push")
        dispatcher = h.dispatcher(notifier(apprise_url(receiver)))
        for _ in range(h.retry.max_attempts - 1):
            assert await dispatcher.run_once() == 1
            h.clock.now = (await h.only(DeliveryStatus.PENDING)).next_attempt_at
        assert await dispatcher.run_once() == 1
        row = await h.only(DeliveryStatus.DEAD)
        assert row.attempts == h.retry.max_attempts
        assert h.count("push", "dead") == 1


def test_urls_file_is_read_and_urls_stay_out_of_repr(tmp_path: Path) -> None:
    listing = tmp_path / "apprise-urls"
    listing.write_text(f"# ops\njson://127.0.0.1:9/{TOKEN}\n\nntfy://ntfy.example.com/{TOKEN}\n")
    kind = registry.get("apprise")
    assert kind is not None
    config = kind.config_model.model_validate(
        {"name": "push", "type": "apprise", "urls_file": str(listing)}
    )
    assert isinstance(config, AppriseNotifierConfig)
    assert len(config.urls) == 2
    assert TOKEN not in repr(config)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "urls: give at least one Apprise URL"),
        ({"urls": [f"nosuchservice://{TOKEN}"]}, "urls[0]: not a URL Apprise can use"),
        (
            {"urls": ["json://127.0.0.1/ok", f"http//{TOKEN}"]},
            "urls[1]: not a URL Apprise can use",
        ),
        ({"urls_file": "/nonexistent/urls"}, "urls_file: cannot read /nonexistent/urls"),
        ({"urls": ["json://127.0.0.1/ok"], "body": "$oops"}, "unknown placeholder $oops"),
    ],
)
def test_config_problems_never_show_a_url(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AppriseNotifierConfig.model_validate({"name": "push", **fields})
    message = str(caught.value)
    assert re.search(re.escape(expected), message)
    assert TOKEN not in message


def test_without_apprise_installed_the_config_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # makes `import apprise` fail
    with pytest.raises(ValidationError, match=re.escape("install bulkwatch[apprise]")):
        AppriseNotifierConfig.model_validate({"name": "push", "urls": ["json://127.0.0.1/x"]})
