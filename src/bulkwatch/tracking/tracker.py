"""The tracker: compare what a poll saw with what was stored, and decide the events.

Pure functions of (stored view, poll result or error, now): no I/O, no clock, no randomness,
so every rule is tested with plain values. The poller writes what they decide in one
transaction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING

from bulkwatch.model import (
    EndpointView,
    Event,
    EventType,
    FailureKind,
    Platform,
    PollError,
    PollOutcome,
    PollResult,
    TaskSnapshot,
    TaskStatus,
    TrackedTask,
    store_event,
    task_event,
)
from bulkwatch.tracking.timers import REFRESH_SEEN, stall_started, warnable_expiry

if TYPE_CHECKING:
    from bulkwatch.config import Defaults

__all__ = ["IMMEDIATE_DOWN", "Policy", "judge_failure", "judge_success"]

# Every snapshot field but `observed_at`: compared in C, since it runs for every task of
# every poll.
_DETAILS = attrgetter(
    *(f.name for f in dataclasses.fields(TaskSnapshot) if f.name != "observed_at")
)
# Failures that will not go away by themselves: a person has to renew a token, pay, or get a
# block lifted, so waiting for `down_after` failures (spread out by backoff) only delays them.
IMMEDIATE_DOWN = frozenset({FailureKind.AUTH, FailureKind.FROZEN, FailureKind.BLOCKED})


@dataclass(frozen=True, slots=True)
class Policy:
    stall_after: timedelta = timedelta(hours=6)
    expiry_warning: timedelta = timedelta(hours=1)
    down_after: int = 3
    immediate_down: frozenset[FailureKind] = IMMEDIATE_DOWN

    @classmethod
    def of(cls, defaults: Defaults) -> Policy:
        """The policy the config's `defaults` set."""
        return cls(
            stall_after=timedelta(seconds=defaults.stall_after),
            expiry_warning=timedelta(seconds=defaults.expiry_warning),
            down_after=defaults.down_after,
        )


def judge_success(
    view: EndpointView, result: PollResult, now: datetime, policy: Policy
) -> PollOutcome:
    """The outcome of a successful poll: task events, superseded tasks, and recovery."""
    endpoint = view.endpoint
    baseline = not endpoint.baselined
    events: list[Event] = []
    upserts: list[TrackedTask] = []

    # The old task leaving the view comes before the news about its successor. A task that
    # vanishes with no other id in its place is held, silently, until a successor shows
    # (then it is superseded) or it comes back: one odd answer never fires an event.
    current_id = result.tasks[0].task_id if result.exclusive and result.tasks else None
    held = None
    if result.exclusive and current_id is None and endpoint.current_task_id is not None:
        current_id = endpoint.current_task_id
        held = view.tasks.get(current_id)
    elif result.exclusive and endpoint.current_task_id not in (None, current_id):
        old = view.tasks.get(endpoint.current_task_id or "")
        if old is not None and not old.gone:
            upserts.append(dataclasses.replace(old, gone=True, changed_at=now))
            if not old.snapshot.status.terminal:
                events.append(
                    task_event(
                        EventType.TASK_SUPERSEDED,
                        old.snapshot,
                        seq=old.seq,
                        previous=None,
                        now=now,
                        extra={"superseded_by": current_id},
                    )
                )

    if held is not None and not held.gone:
        # Its timers keep running while it is away: a task that never comes back and is
        # never replaced is reported stalled once, `stall_after` after it started.
        tracked, late_events = _timers(held, now, policy, extra={"shown": False})
        events.extend(late_events)
        if tracked is not held:
            upserts.append(tracked)

    for snap in result.tasks:
        tracked, new_events = _observe(
            view.tasks.get(snap.task_id), snap, endpoint.key.endpoint, now, baseline
        )
        tracked, late_events = _timers(tracked, now, policy)
        new_events.extend(late_events)
        events.extend(new_events)
        if tracked is not view.tasks.get(snap.task_id):
            upserts.append(tracked)

    health = view.health
    failing = health.failing_endpoints - {endpoint.key.endpoint}
    if health.down and not failing:
        events.append(
            store_event(
                EventType.STORE_UP,
                store=health.store,
                platform=health.platform,
                outage=health.outage,
                now=now,
                reason="polls succeed again",
                extra={"endpoint": endpoint.key.endpoint},
            )
        )
        health = dataclasses.replace(health, down=False, failing_endpoints=failing)
    elif failing != health.failing_endpoints:
        health = dataclasses.replace(health, failing_endpoints=failing)

    endpoint = dataclasses.replace(
        endpoint,
        baselined=True,
        consecutive_failures=0,
        current_task_id=current_id if result.exclusive else None,
        last_success_at=now,
        last_failure=None,
    )
    return PollOutcome(health=health, endpoint=endpoint, upserts=upserts, events=events)


def judge_failure(
    view: EndpointView, error: PollError, now: datetime, policy: Policy
) -> PollOutcome:
    """The outcome of a failed poll: never a task change; `store.down` once per outage,
    after `down_after` consecutive failures, or at once for a kind in `immediate_down`."""
    endpoint = dataclasses.replace(
        view.endpoint,
        consecutive_failures=view.endpoint.consecutive_failures + 1,
        last_failure=str(error),
    )
    health = view.health
    failing = health.failing_endpoints | {endpoint.key.endpoint}
    events: list[Event] = []
    if not health.down and (
        endpoint.consecutive_failures >= policy.down_after or error.kind in policy.immediate_down
    ):
        outage = health.outage + 1
        events.append(
            store_event(
                EventType.STORE_DOWN,
                store=health.store,
                platform=health.platform,
                outage=outage,
                now=now,
                reason=error.message,
                extra={
                    "endpoint": endpoint.key.endpoint,
                    "kind": error.kind.value,
                    "http_status": error.http_status,
                    "request_id": error.request_id,
                    "consecutive_failures": endpoint.consecutive_failures,
                },
            )
        )
        health = dataclasses.replace(health, down=True, outage=outage, failing_endpoints=failing)
    elif failing != health.failing_endpoints:
        health = dataclasses.replace(health, failing_endpoints=failing)
    return PollOutcome(health=health, endpoint=endpoint, events=events)


def _observe(
    old: TrackedTask | None, snap: TaskSnapshot, endpoint: str, now: datetime, baseline: bool
) -> tuple[TrackedTask, list[Event]]:
    """Apply one snapshot to one task's stored state."""
    if old is None:
        if baseline and (snap.status.terminal or snap.status is TaskStatus.UNKNOWN):
            # Finished before we started watching, or in a status nobody documented (most
            # likely a finished one): remember it, say nothing.
            return TrackedTask(snap, endpoint, 0, now, now, silent_baseline=True), []
        event = task_event(
            EventType.for_status(snap.status),
            snap,
            seq=0,
            previous=None,
            now=now,
            extra=_unknown_hint(snap),
        )
        return TrackedTask(snap, endpoint, 0, now, now), [event]

    prev = old.snapshot
    if snap.status != prev.status or snap.raw_status != prev.raw_status:
        seq = old.seq + 1
        event = task_event(
            EventType.for_status(snap.status),
            snap,
            seq=seq,
            previous=prev.status,
            now=now,
            extra=_unknown_hint(snap),
        )
        return dataclasses.replace(old, snapshot=snap, seq=seq, changed_at=now, gone=False), [event]
    if old.gone or _details_changed(prev, snap) or now - prev.observed_at >= REFRESH_SEEN:
        # A periodic refresh of `observed_at` keeps a task that is still listed from being
        # pruned and later reported again as new.
        return dataclasses.replace(old, snapshot=snap, gone=False), []
    return old, []


def _unknown_hint(snap: TaskSnapshot) -> dict[str, str] | None:
    """For `task.unknown`: what the raw status was, and how to tell bulkwatch what it means."""
    if snap.status is not TaskStatus.UNKNOWN:
        return None
    raw = snap.raw_status
    if snap.platform is Platform.SHOPLAZZA:
        hint = (
            f"query_status {raw!r} is not documented; if you know what it means, map it in the "
            f"store's status_map (e.g. status_map: {{{raw}: FAILED}})"
        )
    else:
        hint = f"status {raw!r} is not one bulkwatch knows; please report it"
    return {"hint": hint}


def _details_changed(prev: TaskSnapshot, snap: TaskSnapshot) -> bool:
    """True when anything but the observation time differs (url, counts, dates...)."""
    return _DETAILS(prev) != _DETAILS(snap)


def _timers(
    task: TrackedTask, now: datetime, policy: Policy, extra: dict[str, bool] | None = None
) -> tuple[TrackedTask, list[Event]]:
    """`task.stalled` and `task.expiring`, each at most once per task."""
    snap = task.snapshot
    events: list[Event] = []
    started = stall_started(task)
    if started is not None and now - started >= policy.stall_after:
        events.append(
            task_event(
                EventType.TASK_STALLED,
                snap,
                seq=task.seq,
                previous=None,
                now=now,
                extra={"stalled_for_s": round((now - started).total_seconds()), **(extra or {})},
            )
        )
        task = dataclasses.replace(task, stalled_notified=True)
    expires = warnable_expiry(task)
    if expires is not None and now < expires <= now + policy.expiry_warning:
        events.append(
            task_event(
                EventType.TASK_EXPIRING, snap, seq=task.seq, previous=None, now=now, extra=extra
            )
        )
        task = dataclasses.replace(task, expiring_notified=True)
    return task, events
