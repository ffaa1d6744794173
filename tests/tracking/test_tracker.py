"""The tracker's rules, on plain values with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    FailureKind,
    Platform,
    PollError,
    PollOutcome,
    PollResult,
    StoreHealth,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
)
from bulkwatch.tracking.quiet import quiet_until
from bulkwatch.tracking.tracker import Policy, judge_failure, judge_success

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LAZZA = EndpointKey("lazza-main", Platform.SHOPLAZZA, "tasks")
LINE = EndpointKey("line-main", Platform.SHOPLINE, "QUERY")
POLICY = Policy()


def snap(
    key: EndpointKey, task_id: str, status: TaskStatus, at: datetime = T0, **kw: object
) -> TaskSnapshot:
    raw: object = kw.pop("raw_status", status.value)
    return TaskSnapshot(
        platform=key.platform,
        store=key.store,
        task_id=task_id,
        operation_type="QUERY",
        status=status,
        raw_status=raw,  # type: ignore[arg-type]
        observed_at=at,
        **kw,  # type: ignore[arg-type]
    )


class Endpoint:
    """Replays polls through the tracker the way the store does, keeping state in memory."""

    def __init__(self, key: EndpointKey, policy: Policy = POLICY) -> None:
        self.key = key
        self.policy = policy
        self.health = StoreHealth(key.store, key.platform)
        self.state = EndpointState(key)
        self.tasks: dict[str, TrackedTask] = {}

    def _apply(self, outcome: PollOutcome) -> list[tuple[str, str | None, str | None]]:
        self.health, self.state = outcome.health, outcome.endpoint
        for task in outcome.upserts:
            self.tasks[task.task_id] = task
        return [
            (e.type, e.data.get("task_id"), e.data.get("previous_status")) for e in outcome.events
        ]

    def view(self) -> EndpointView:
        return EndpointView(self.health, self.state, dict(self.tasks))

    def ok(
        self, *snaps: TaskSnapshot, at: datetime = T0
    ) -> list[tuple[str, str | None, str | None]]:
        result = PollResult(self.key, snaps, exclusive=self.key.platform is Platform.SHOPLINE)
        self.last = judge_success(self.view(), result, at, self.policy)
        return self._apply(self.last)

    def fail(
        self, at: datetime = T0, kind: FailureKind = FailureKind.SERVER
    ) -> list[tuple[str, str | None, str | None]]:
        error = PollError(kind, "HTTP 503 from platform", key=self.key, http_status=503)
        self.last = judge_failure(self.view(), error, at, self.policy)
        return self._apply(self.last)


def test_baseline_records_terminal_tasks_silently_and_reports_live_ones() -> None:
    ep = Endpoint(LAZZA)
    events = ep.ok(
        snap(LAZZA, "done", TaskStatus.COMPLETED),
        snap(LAZZA, "live", TaskStatus.RUNNING),
    )
    assert events == [("bulkwatch.task.running", "live", None)]
    assert ep.tasks["done"].silent_baseline
    assert ep.state.baselined


def test_task_first_seen_after_baseline_emits_its_current_status_only() -> None:
    ep = Endpoint(LAZZA)
    ep.ok()
    assert ep.ok(snap(LAZZA, "fast", TaskStatus.COMPLETED)) == [
        ("bulkwatch.task.completed", "fast", None)
    ]


def test_each_status_change_emits_one_event_with_previous_status() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.CREATED))
    assert ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING)) == [
        ("bulkwatch.task.running", "a", "CREATED")
    ]
    assert ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING)) == []
    assert ep.ok(snap(LAZZA, "a", TaskStatus.COMPLETED)) == [
        ("bulkwatch.task.completed", "a", "RUNNING")
    ]
    assert ep.tasks["a"].seq == 2


def test_skipped_states_are_not_invented() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.CREATED))
    assert ep.ok(snap(LAZZA, "a", TaskStatus.COMPLETED)) == [
        ("bulkwatch.task.completed", "a", "CREATED")
    ]


def test_raw_status_change_within_unknown_counts_as_a_change() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.UNKNOWN, raw_status=7))
    assert ep.ok(snap(LAZZA, "a", TaskStatus.UNKNOWN, raw_status=8)) == [
        ("bulkwatch.task.unknown", "a", "UNKNOWN")
    ]


def test_task_dropping_out_of_the_shoplazza_list_is_not_an_event() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING))
    assert ep.ok() == []
    assert not ep.tasks["a"].gone


def test_detail_change_without_status_change_updates_state_without_event() -> None:
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING, completed_count=1))
    assert ep.ok(snap(LINE, "a", TaskStatus.RUNNING, completed_count=50)) == []
    assert ep.tasks["a"].snapshot.completed_count == 50


def test_unchanged_task_is_not_rewritten() -> None:
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING))
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING, at=T0 + timedelta(minutes=1)))
    assert list(ep.last.upserts) == []


@pytest.mark.parametrize(
    ("old_status", "events"),
    [
        (
            TaskStatus.RUNNING,
            [("bulkwatch.task.superseded", "old", None), ("bulkwatch.task.created", "new", None)],
        ),
        (TaskStatus.COMPLETED, [("bulkwatch.task.created", "new", None)]),
    ],
)
def test_shopline_task_replaced_while_live_is_superseded(
    old_status: TaskStatus, events: list[tuple[str, str | None, str | None]]
) -> None:
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "old", old_status))
    got = ep.ok(snap(LINE, "new", TaskStatus.CREATED))
    assert sorted(got) == sorted(events)
    assert ep.tasks["old"].gone
    superseded = [e for e in ep.last.events if e.type == "bulkwatch.task.superseded"]
    if superseded:
        assert superseded[0].data["status"] == "RUNNING"
        assert superseded[0].data["superseded_by"] == "new"


def test_a_task_that_vanishes_is_held_silently_until_a_successor_shows() -> None:
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "old", TaskStatus.RUNNING))
    assert ep.ok() == []  # one odd answer: no event
    assert ep.ok() == []
    assert ep.state.current_task_id == "old"
    assert not ep.tasks["old"].gone
    got = ep.ok(snap(LINE, "new", TaskStatus.CREATED))
    assert sorted(got) == [
        ("bulkwatch.task.created", "new", None),
        ("bulkwatch.task.superseded", "old", None),
    ]
    superseded = next(e for e in ep.last.events if e.type == "bulkwatch.task.superseded")
    assert superseded.data["superseded_by"] == "new"


def test_a_held_task_that_comes_back_fires_only_its_own_changes() -> None:
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING))
    assert ep.ok() == []
    assert ep.ok(snap(LINE, "a", TaskStatus.RUNNING)) == []
    assert ep.ok() == []
    assert ep.ok(snap(LINE, "a", TaskStatus.COMPLETED)) == [
        ("bulkwatch.task.completed", "a", "RUNNING")
    ]


def test_a_held_task_that_stays_away_is_reported_stalled_once() -> None:
    ep = Endpoint(LINE, Policy(stall_after=timedelta(hours=1)))
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING, created_at=T0))
    assert ep.ok(at=T0 + timedelta(minutes=59)) == []
    assert ep.ok(at=T0 + timedelta(minutes=61)) == [("bulkwatch.task.stalled", "a", None)]
    assert ep.last.events[0].data["shown"] is False
    assert ep.ok(at=T0 + timedelta(hours=5)) == []


def test_an_unknown_status_at_baseline_is_recorded_silently_and_later_named() -> None:
    ep = Endpoint(LAZZA)
    assert ep.ok(snap(LAZZA, "odd", TaskStatus.UNKNOWN, raw_status=7)) == []
    assert ep.tasks["odd"].silent_baseline
    assert ep.ok(snap(LAZZA, "new", TaskStatus.UNKNOWN, raw_status=3)) == [
        ("bulkwatch.task.unknown", "new", None)
    ]
    hint = ep.last.events[0].data["hint"]
    assert "query_status 3" in hint
    assert "status_map" in hint


def test_stalled_once_after_stall_after_from_created_at() -> None:
    ep = Endpoint(LINE, Policy(stall_after=timedelta(hours=1)))
    created = T0 - timedelta(minutes=30)
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING, created_at=created))
    later = T0 + timedelta(minutes=31)
    assert ep.ok(snap(LINE, "a", TaskStatus.RUNNING, at=later, created_at=created), at=later) == [
        ("bulkwatch.task.stalled", "a", None)
    ]
    even_later = later + timedelta(hours=2)
    assert ep.ok(snap(LINE, "a", TaskStatus.RUNNING, created_at=created), at=even_later) == []


def test_stall_without_created_at_counts_from_first_observation() -> None:
    ep = Endpoint(LAZZA, Policy(stall_after=timedelta(hours=1)))
    ep.ok(snap(LAZZA, "a", TaskStatus.CREATED))
    assert ep.ok(snap(LAZZA, "a", TaskStatus.CREATED), at=T0 + timedelta(minutes=59)) == []
    assert ep.ok(snap(LAZZA, "a", TaskStatus.CREATED), at=T0 + timedelta(hours=1)) == [
        ("bulkwatch.task.stalled", "a", None)
    ]


def test_expiring_once_for_completed_task_within_warning() -> None:
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING))
    expires = T0 + timedelta(hours=12)
    done = snap(LINE, "a", TaskStatus.COMPLETED, expires_at=expires)
    assert ep.ok(done) == [("bulkwatch.task.completed", "a", "RUNNING")]
    near = expires - timedelta(minutes=30)
    assert ep.ok(done, at=near) == [("bulkwatch.task.expiring", "a", None)]
    assert ep.ok(done, at=near + timedelta(minutes=1)) == []


def test_expiring_never_for_baseline_or_already_expired_results() -> None:
    ep = Endpoint(LINE)
    expires = T0 + timedelta(minutes=10)
    ep.ok(snap(LINE, "a", TaskStatus.COMPLETED, expires_at=expires))
    assert ep.ok(snap(LINE, "a", TaskStatus.COMPLETED, expires_at=expires)) == []
    ep2 = Endpoint(LINE)
    ep2.ok()
    past = T0 - timedelta(minutes=1)
    assert ep2.ok(snap(LINE, "b", TaskStatus.COMPLETED, expires_at=past)) == [
        ("bulkwatch.task.completed", "b", None)
    ]


def test_store_down_once_after_down_after_failures_and_up_once_on_recovery() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING))
    assert ep.fail() == []
    assert ep.fail() == []
    assert ep.fail() == [("bulkwatch.store.down", None, None)]
    down = ep.last.events[0]
    assert down.data["reason"] == "HTTP 503 from platform"
    assert down.data["kind"] == "server"
    assert ep.fail() == []
    assert ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING)) == [("bulkwatch.store.up", None, None)]
    assert ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING)) == []
    assert ep.health.outage == 1


def test_failed_poll_changes_no_task_state() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.RUNNING))
    before = dict(ep.tasks)
    ep.fail()
    assert list(ep.last.upserts) == []
    assert ep.tasks == before
    # and the task is not read as vanished: the next success compares with RUNNING
    assert ep.ok(snap(LAZZA, "a", TaskStatus.COMPLETED)) == [
        ("bulkwatch.task.completed", "a", "RUNNING")
    ]


def test_failure_before_baseline_keeps_baseline_pending() -> None:
    ep = Endpoint(LAZZA)
    ep.fail()
    assert not ep.state.baselined
    assert ep.ok(snap(LAZZA, "old", TaskStatus.COMPLETED)) == []


def test_event_ids_are_stable_and_distinct() -> None:
    def run() -> list[str]:
        ep = Endpoint(LINE)
        ep.ok(snap(LINE, "a", TaskStatus.CREATED))
        ids = [e.id for e in ep.last.events]
        ep.ok(snap(LINE, "a", TaskStatus.RUNNING))
        ids += [e.id for e in ep.last.events]
        for _ in range(3):
            ep.fail()
        ids += [e.id for e in ep.last.events]
        ep.ok(snap(LINE, "a", TaskStatus.RUNNING))
        return ids + [e.id for e in ep.last.events]

    first, second = run(), run()
    assert first == second
    assert len(set(first)) == len(first) == 4


def test_second_outage_gets_new_store_event_ids() -> None:
    ep = Endpoint(LAZZA, Policy(down_after=1))
    ep.fail()
    first_down = ep.last.events[0].id
    ep.ok()
    ep.fail()
    assert ep.last.events[0].id != first_down
    assert ep.health.outage == 2


def test_still_listed_task_is_refreshed_daily_so_pruning_keeps_it() -> None:
    ep = Endpoint(LAZZA)
    ep.ok(snap(LAZZA, "a", TaskStatus.COMPLETED))
    hour = T0 + timedelta(hours=1)
    ep.ok(snap(LAZZA, "a", TaskStatus.COMPLETED, at=hour), at=hour)
    assert list(ep.last.upserts) == []
    day = T0 + timedelta(days=1)
    ep.ok(snap(LAZZA, "a", TaskStatus.COMPLETED, at=day), at=day)
    assert [t.snapshot.observed_at for t in ep.last.upserts] == [day]
    assert ep.last.events == []


# --- quiet_until: until when an identical poll decides nothing -------------------------

H = timedelta(hours=1)


def tracked_task(snapshot: TaskSnapshot, **kw: bool) -> TrackedTask:
    return TrackedTask(snapshot, "QUERY", 0, T0 - H, T0, **kw)


@pytest.mark.parametrize(
    ("task", "until"),
    [
        # Nothing due: the daily refresh of observed_at.
        (tracked_task(snap(LINE, "a", TaskStatus.FAILED)), T0 + 24 * H),
        (tracked_task(snap(LINE, "a", TaskStatus.FAILED, at=T0 - 5 * H)), T0 + 19 * H),
        # A running task stalls `stall_after` (6 h) after its creation, else its first sight.
        (tracked_task(snap(LINE, "a", TaskStatus.RUNNING, created_at=T0 - 2 * H)), T0 + 4 * H),
        (tracked_task(snap(LINE, "a", TaskStatus.CREATED)), T0 + 5 * H),
        (tracked_task(snap(LINE, "a", TaskStatus.RUNNING), stalled_notified=True), T0 + 24 * H),
        # A completed result warns `expiry_warning` (1 h) before it expires, once...
        (tracked_task(snap(LINE, "a", TaskStatus.COMPLETED, expires_at=T0 + 3 * H)), T0 + 2 * H),
        # ...even when that is already past: a deadline now means "judge every poll".
        (tracked_task(snap(LINE, "a", TaskStatus.COMPLETED, expires_at=T0 + H / 2)), T0 - H / 2),
        # Once the result has expired, no warning can be due any more.
        (tracked_task(snap(LINE, "a", TaskStatus.COMPLETED, expires_at=T0 - H)), T0 + 24 * H),
        (
            tracked_task(
                snap(LINE, "a", TaskStatus.COMPLETED, expires_at=T0 + 3 * H),
                expiring_notified=True,
            ),
            T0 + 24 * H,
        ),
        (
            tracked_task(
                snap(LINE, "a", TaskStatus.COMPLETED, expires_at=T0 + 3 * H), silent_baseline=True
            ),
            T0 + 24 * H,
        ),
    ],
)
def test_quiet_until_is_the_first_timer_due(task: TrackedTask, until: datetime) -> None:
    assert quiet_until([task], T0, POLICY) == until


def test_quiet_until_takes_the_earliest_of_all_tasks() -> None:
    tasks = [
        tracked_task(snap(LAZZA, "a", TaskStatus.COMPLETED, expires_at=T0 + 10 * H)),
        tracked_task(snap(LAZZA, "b", TaskStatus.RUNNING, created_at=T0 - H)),
        tracked_task(snap(LAZZA, "c", TaskStatus.FAILED)),
    ]
    assert quiet_until(tasks, T0, POLICY) == T0 + 5 * H
    assert quiet_until([], T0, POLICY) == T0 + 24 * H


def test_an_identical_poll_before_quiet_until_decides_nothing() -> None:
    """The property the engine relies on to skip a poll: judging the same tasks again at any
    time before quiet_until changes nothing and emits nothing."""
    ep = Endpoint(LINE)
    ep.ok(snap(LINE, "a", TaskStatus.RUNNING, created_at=T0))
    view = ep.view()
    until = quiet_until(view.tasks.values(), T0, POLICY)
    assert until == T0 + POLICY.stall_after
    for later in (T0 + H, until - timedelta(seconds=1)):
        again = PollResult(LINE, (snap(LINE, "a", TaskStatus.RUNNING, later, created_at=T0),), True)
        outcome = judge_success(view, again, later, POLICY)
        assert (outcome.upserts, outcome.events) == ([], [])
    again = PollResult(LINE, (snap(LINE, "a", TaskStatus.RUNNING, until, created_at=T0),), True)
    assert [e.type for e in judge_success(view, again, until, POLICY).events] == [
        "bulkwatch.task.stalled"
    ]
