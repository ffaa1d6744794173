"""Message templates: placeholders of every kind of event, validation, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bulkwatch.model import EventType, TaskStatus
from bulkwatch.notifiers.base import OutgoingEvent
from bulkwatch.notifiers.templates import PLACEHOLDERS, check_template, placeholders, render
from helpers.notifier_support import NOW, RESULT_URL, outgoing, store_change, task_change

DOCS = Path(__file__).parents[2] / "docs" / "plugins.md"


def test_a_completed_task_fills_every_field_it_has() -> None:
    event = outgoing(task_change(), attempt=3)
    values = placeholders(event)
    assert set(values) == set(PLACEHOLDERS)
    assert {k: values[k] for k in ("store", "task_id", "status", "previous_status", "url")} == {
        "store": "lazza-main",
        "task_id": "d6ca13c4",
        "status": "COMPLETED",
        "previous_status": "RUNNING",
        "url": RESULT_URL,
    }
    assert values["type"] == "bulkwatch.task.completed"
    assert values["event"] == "task.completed"
    assert values["event_id"] == event.id
    assert values["source"] == "bulkwatch/test-1"
    assert values["time"] == "2026-11-23T10:00:00Z"
    assert values["attempt"] == "3"
    assert values["completed_count"] == "1200"
    assert values["error"] == values["partial_data_url"] == values["superseded_by"] == ""
    assert values["details"] == (
        "Store: lazza-main\nPlatform: shoplazza\nTask: d6ca13c4\nOperation: DATA_QUERY\n"
        f"Status: RUNNING → COMPLETED\nRows: 1200\nResult file: {RESULT_URL}\n"
        "Observed at: 2026-11-23T10:00:00Z"
    )


@pytest.mark.parametrize(
    ("event", "title", "headline"),
    [
        (
            outgoing(task_change(TaskStatus.RUNNING, None)),
            "Task running",
            "lazza-main: task d6ca13c4 is RUNNING",
        ),
        (
            outgoing(task_change(TaskStatus.FAILED, error_code="E42", reason="bad filter")),
            "Task failed",
            "lazza-main: task d6ca13c4 RUNNING → FAILED",
        ),
        (
            outgoing(
                task_change(
                    TaskStatus.RUNNING,
                    None,
                    event_type=EventType.TASK_SUPERSEDED,
                    extra={"superseded_by": "t2"},
                )
            ),
            "Task superseded",
            "lazza-main: task d6ca13c4 (RUNNING) was replaced by task t2",
        ),
        (
            outgoing(task_change(TaskStatus.RUNNING, None, event_type=EventType.TASK_SUPERSEDED)),
            "Task superseded",
            "lazza-main: task d6ca13c4 (RUNNING) was replaced",
        ),
        (
            outgoing(task_change(TaskStatus.CREATED, None, event_type=EventType.TASK_STALLED)),
            "Task stalled",
            "lazza-main: task d6ca13c4 stalled in CREATED",
        ),
        (
            outgoing(task_change(event_type=EventType.TASK_EXPIRING, expires_at=NOW)),
            "Result expiring",
            "lazza-main: the result of task d6ca13c4 expires at 2026-11-23T10:00:00Z",
        ),
        (
            outgoing(task_change(event_type=EventType.TASK_EXPIRING)),
            "Result expiring",
            "lazza-main: the result of task d6ca13c4 expires soon",
        ),
        (outgoing(store_change()), "Store down", "lazza-main is down: HTTP 401: invalid token"),
        (outgoing(store_change(reason="")), "Store down", "lazza-main is down"),
        (outgoing(store_change(down=False)), "Store up", "lazza-main is up again"),
        (
            outgoing(task_change(TaskStatus.COMPLETED, extra={"test": True})),
            "Task completed",
            "[test] lazza-main: task d6ca13c4 RUNNING → COMPLETED",
        ),
    ],
)
def test_title_and_headline_read_well_for_every_kind_of_event(
    event: OutgoingEvent, title: str, headline: str
) -> None:
    values = placeholders(event)
    assert (values["title"], values["headline"]) == (title, headline)


def test_an_unknown_event_type_or_a_strange_body_still_renders() -> None:
    odd = OutgoingEvent(
        id="x1", type="com.example.other", store="s1", body=b"{}", cloudevent={}, attempt=1
    )
    values = placeholders(odd)
    assert values["title"] == "com.example.other"
    assert values["headline"] == "com.example.other s1"
    assert values["details"] == "Store: s1"
    assert render("$title: $task_id.", odd) == "com.example.other: ."


def test_store_events_list_their_reason() -> None:
    assert placeholders(outgoing(store_change()))["details"] == (
        "Store: lazza-main\nPlatform: shoplazza\nReason: HTTP 401: invalid token"
    )


def test_render_escapes_values_but_not_the_template() -> None:
    event = outgoing(task_change(TaskStatus.FAILED, reason="<b>"))
    assert render("*$reason* costs $$5 ${store}x", event, escape=str.upper) == (
        "*<B>* costs $5 LAZZA-MAINx"
    )


@pytest.mark.parametrize("good", ["", "plain", "$store", "${store}/$task_id", "$$100"])
def test_valid_templates_pass(good: str) -> None:
    assert check_template(good) == good


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("$", "invalid template: use $name or ${name}, and $$ for a literal $"),
        ("${store", "invalid template"),
        ("$stor and $tsk", "unknown placeholder $stor, $tsk"),
    ],
)
def test_invalid_templates_are_refused_with_a_reason(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_template(bad)


def test_every_placeholder_is_documented() -> None:
    documented = set(re.findall(r"`\$([a-z_]+)`", DOCS.read_text(encoding="utf-8")))
    assert set(PLACEHOLDERS) <= documented
