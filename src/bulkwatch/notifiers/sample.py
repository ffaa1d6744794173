"""A sample event sent through one notifier, for `bulkwatch notify-test`.

The event is an ordinary `bulkwatch.task.completed` CloudEvent, marked as a test: its `data`
has `"test": true`, its task id is `bulkwatch-test`, its result URL points at example.com, and
its id is fresh each time so that receivers which de-duplicate still show every test.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import aiohttp

from bulkwatch.common.useragent import USER_AGENT
from bulkwatch.model import (
    EventType,
    Platform,
    TaskSnapshot,
    TaskStatus,
    encode_cloudevent,
    task_event,
    utcnow,
)
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import DeliveryError, NotifierConfig, NotifierContext, OutgoingEvent

__all__ = ["SAMPLE_TASK_ID", "sample_event", "send_sample"]

SAMPLE_TASK_ID = "bulkwatch-test"


def sample_event(
    instance: str, store: str, platform: Platform, *, now: datetime | None = None
) -> OutgoingEvent:
    """A completed-task event for `store`, clearly marked as a test."""
    at = now or utcnow()
    snapshot = TaskSnapshot(
        platform=platform,
        store=store,
        task_id=SAMPLE_TASK_ID,
        operation_type="DATA_QUERY" if platform is Platform.SHOPLAZZA else "QUERY",
        status=TaskStatus.COMPLETED,
        raw_status=2 if platform is Platform.SHOPLAZZA else "COMPLETED",
        observed_at=at,
        url="https://example.com/bulkwatch-test/result.jsonl",
        completed_count=42,
        created_at=at - timedelta(minutes=3),
        completed_at=at,
        expires_at=at + timedelta(days=7),
    )
    event = task_event(
        EventType.TASK_COMPLETED,
        snapshot,
        seq=1,
        previous=TaskStatus.RUNNING,
        now=at,
        extra={"test": True},
    )
    event = replace(event, id=uuid.uuid4().hex)
    body = encode_cloudevent(event, instance)
    return OutgoingEvent(
        id=event.id,
        type=event.type,
        store=event.store,
        body=body,
        cloudevent=json.loads(body),
        attempt=1,
    )


async def send_sample(
    config: NotifierConfig, event: OutgoingEvent, instance: str
) -> DeliveryError | None:
    """Build the notifier of `config`, send `event` once, close it; None when delivered.

    An unexpected exception from the notifier is returned as a (retryable) `DeliveryError`,
    as the dispatcher would treat it; errors while building the notifier propagate.
    """
    kind = registry.get(config.type)
    if kind is None:
        raise LookupError(f"notifier type {config.type!r} is not registered")
    # The User-Agent the daemon's sessions send, so a receiver sees the test as it will see events.
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        notifier = kind.build(config, NotifierContext(session=session, instance=instance))
        try:
            await notifier.send(event)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a notifier's bug is an outcome to report
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        finally:
            await notifier.aclose()
    return None
