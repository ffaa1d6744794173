"""The log notifier: readable lines for the console, the full CloudEvent for pipelines."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from bulkwatch.model import (
    Event,
    EventType,
    Platform,
    TaskSnapshot,
    TaskStatus,
    encode_cloudevent,
    store_event,
    task_event,
)
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import NotifierContext, OutgoingEvent
from bulkwatch.notifiers.log import LogNotifier, LogNotifierConfig

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
URL = "https://files.example.com/export.csv"


def snapshot(status: TaskStatus, **fields: Any) -> TaskSnapshot:
    return TaskSnapshot(
        platform=Platform.SHOPLAZZA,
        store="lazza-main",
        task_id="d6ca13c4",
        operation_type="DATA_QUERY",
        status=status,
        raw_status=2,
        observed_at=NOW,
        **fields,
    )


def outgoing(event: Event) -> OutgoingEvent:
    body = encode_cloudevent(event, "test-1")
    return OutgoingEvent(
        id=event.id,
        type=event.type,
        store=event.store,
        body=body,
        cloudevent=json.loads(body),
        attempt=1,
    )


def status_event(status: TaskStatus, previous: TaskStatus | None, **fields: Any) -> OutgoingEvent:
    return outgoing(
        task_event(
            EventType.for_status(status),
            snapshot(status, **fields),
            seq=1,
            previous=previous,
            now=NOW,
        )
    )


async def log_one(event: OutgoingEvent, **config: Any) -> list[MutableMapping[str, Any]]:
    notifier = LogNotifier(LogNotifierConfig.model_validate({"name": "console", **config}))
    with capture_logs() as logs:
        await notifier.send(event)
    await notifier.aclose()
    return logs


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            status_event(TaskStatus.COMPLETED, TaskStatus.RUNNING, url=URL),
            f"lazza-main/d6ca13c4 RUNNING → COMPLETED  url={URL}",
        ),
        (status_event(TaskStatus.RUNNING, None), "lazza-main/d6ca13c4 → RUNNING"),
        (
            status_event(TaskStatus.FAILED, TaskStatus.RUNNING, error_code="E42", reason="boom"),
            "lazza-main/d6ca13c4 RUNNING → FAILED  error=E42: boom",
        ),
        (
            outgoing(
                task_event(
                    EventType.TASK_SUPERSEDED,
                    snapshot(TaskStatus.RUNNING),
                    seq=1,
                    previous=None,
                    now=NOW,
                    extra={"superseded_by": "e7f8"},
                )
            ),
            "lazza-main/d6ca13c4 RUNNING superseded by e7f8",
        ),
        (
            outgoing(
                task_event(
                    EventType.TASK_STALLED,
                    snapshot(TaskStatus.RUNNING),
                    seq=1,
                    previous=None,
                    now=NOW,
                )
            ),
            "lazza-main/d6ca13c4 RUNNING stalled",
        ),
        (
            outgoing(
                task_event(
                    EventType.TASK_EXPIRING,
                    snapshot(TaskStatus.COMPLETED, url=URL, expires_at=NOW),
                    seq=1,
                    previous=None,
                    now=NOW,
                )
            ),
            f"lazza-main/d6ca13c4 COMPLETED expiring at 2026-11-23T10:00:00Z  url={URL}",
        ),
        (
            outgoing(
                store_event(
                    EventType.STORE_DOWN,
                    store="lazza-main",
                    platform=Platform.SHOPLAZZA,
                    outage=1,
                    now=NOW,
                    reason="HTTP 503 three times",
                )
            ),
            "store lazza-main DOWN: HTTP 503 three times",
        ),
        (
            outgoing(
                store_event(
                    EventType.STORE_UP,
                    store="lazza-main",
                    platform=Platform.SHOPLAZZA,
                    outage=1,
                    now=NOW,
                    reason="",
                )
            ),
            "store lazza-main UP",
        ),
    ],
)
async def test_line_format_prints_one_readable_line(event: OutgoingEvent, line: str) -> None:
    (entry,) = await log_one(event)
    assert entry["event"] == line
    assert entry["log_level"] == "info"


async def test_line_format_binds_only_the_event_id() -> None:
    event = status_event(TaskStatus.COMPLETED, TaskStatus.RUNNING)
    (entry,) = await log_one(event)
    assert set(entry) == {"event", "log_level", "event_id"}
    assert entry["event_id"] == event.id


async def test_json_format_binds_the_event_fields() -> None:
    event = status_event(TaskStatus.COMPLETED, TaskStatus.RUNNING)
    (entry,) = await log_one(event, format="json")
    assert entry["notifier"] == "console"
    assert entry["event_id"] == event.id
    assert entry["event_type"] == "bulkwatch.task.completed"
    assert entry["store"] == "lazza-main"
    assert entry["subject"] == "lazza-main/d6ca13c4"
    assert entry["attempt"] == 1


async def test_json_format_logs_the_whole_cloudevent() -> None:
    event = status_event(TaskStatus.COMPLETED, TaskStatus.RUNNING, url=URL)
    (entry,) = await log_one(event, format="json")
    assert entry["event"] == "bulkwatch.task.completed"
    assert entry["cloudevent"] == json.loads(event.body)
    assert entry["cloudevent"]["data"]["url"] == URL


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
async def test_configured_level_is_used(level: str) -> None:
    (entry,) = await log_one(status_event(TaskStatus.RUNNING, None), level=level)
    assert entry["log_level"] == level


@pytest.mark.parametrize(
    "cloudevent",
    [{}, {"data": None}, {"data": ["not", "a", "mapping"]}, {"subject": 7, "data": {"status": 3}}],
)
async def test_malformed_event_still_gets_a_line(cloudevent: Mapping[str, Any]) -> None:
    event = OutgoingEvent(
        id="x1",
        type="bulkwatch.task.completed",
        store="lazza-main",
        body=b"{}",
        cloudevent=cloudevent,
        attempt=2,
    )
    (entry,) = await log_one(event)
    assert entry["event"].startswith(("lazza-main", "7"))


async def test_unknown_event_type_is_logged_with_its_subject() -> None:
    event = OutgoingEvent(
        id="x1",
        type="com.example.other",
        store="lazza-main",
        body=b"{}",
        cloudevent={"subject": "lazza-main/abc"},
        attempt=1,
    )
    (entry,) = await log_one(event)
    assert entry["event"] == "com.example.other lazza-main/abc"


def test_config_defaults_and_validation() -> None:
    kind = registry.get("log")
    assert kind is not None
    config = kind.config_model.model_validate({"name": "console", "type": "log"})
    assert isinstance(config, LogNotifierConfig)
    assert (config.level, config.format) == ("info", "line")
    with pytest.raises(ValidationError, match="format"):
        LogNotifierConfig.model_validate({"name": "console", "format": "xml"})
    with pytest.raises(ValidationError, match="level"):
        LogNotifierConfig.model_validate({"name": "console", "level": "loud"})


async def test_registry_factory_builds_a_working_log_notifier() -> None:
    kind = registry.get("log")
    assert kind is not None
    config = kind.config_model.model_validate({"name": "console", "type": "log"})
    async with aiohttp.ClientSession() as session:
        notifier = kind.build(config, NotifierContext(session=session, instance="test-1"))
        with capture_logs() as logs:
            await notifier.send(status_event(TaskStatus.RUNNING, None))
    assert notifier.name == "console"
    assert [entry["event"] for entry in logs] == ["lazza-main/d6ca13c4 → RUNNING"]
