"""The unchanged-poll rule: when a poll may skip parsing, judging and writing what it read.

A source fingerprints the bytes every poll reads (status and body of each page). When a poll
reads exactly the bytes of the endpoint's last judged poll, and no timer of the tasks it
showed is due yet (a stall, an expiry warning, the daily refresh of `observed_at`), judging
them again would decide nothing: the source answers `Unchanged` without parsing, and the
poller writes nothing. Failures, polls with skipped entries, a store that is down and a
restart always lead to a full judgement, since nothing is remembered for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bulkwatch.model import EndpointKey, EndpointView, PollOutcome, PollResult, TrackedTask
from bulkwatch.tracking.timers import REFRESH_SEEN, stall_started, warnable_expiry
from bulkwatch.tracking.tracker import Policy

__all__ = ["Memo", "QuietPolls", "quiet_until"]


def quiet_until(tasks: Iterable[TrackedTask], now: datetime, policy: Policy) -> datetime:
    """Until when a poll that shows exactly these tasks again decides nothing: the first
    stall or expiry warning due, or the daily refresh of `observed_at`, whichever is first."""
    until = now + REFRESH_SEEN
    for task in tasks:
        until = min(until, task.snapshot.observed_at + REFRESH_SEEN)
        started = stall_started(task)
        if started is not None:
            until = min(until, started + policy.stall_after)
        expires = warnable_expiry(task)
        if expires is not None and now < expires:  # once expired, no warning is ever due
            until = min(until, expires - policy.expiry_warning)
    return until


@dataclass(frozen=True, slots=True)
class Memo:
    """What an endpoint's last judged poll read, and until when reading it again is quiet."""

    fingerprint: bytes
    until: datetime

    def known(self, now: datetime) -> bytes | None:
        """The fingerprint a source may answer `Unchanged` to now; None once a timer is due."""
        return self.fingerprint if now < self.until else None


class QuietPolls:
    """One `Memo` per endpoint whose last poll was judged, recorded and clean."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._memos: dict[EndpointKey, Memo] = {}

    def take(self, key: EndpointKey) -> Memo | None:
        """Remove and return the endpoint's memo: it comes back only after a success (`keep`
        when the poll was unchanged, `remember` when it was judged and recorded)."""
        return self._memos.pop(key, None)

    def forget(self, store: str) -> None:
        """Drop the memos of a store's endpoints (its settings changed: judge it afresh)."""
        for key in [k for k in self._memos if k.store == store]:
            del self._memos[key]

    def keep(self, key: EndpointKey, memo: Memo) -> None:
        """Put back the memo of an unchanged poll."""
        self._memos[key] = memo

    def remember(
        self,
        key: EndpointKey,
        result: PollResult,
        view: EndpointView,
        outcome: PollOutcome,
        now: datetime,
    ) -> None:
        """After a judged and recorded poll: remember its fingerprint, unless the same bytes
        must be judged (or counted) again next time: entries skipped, or the store down."""
        if result.fingerprint is None or result.problems or outcome.health.down:
            return
        upserted = {t.task_id: t for t in outcome.upserts}
        shown = [upserted.get(s.task_id) or view.tasks[s.task_id] for s in result.tasks]
        held_id = outcome.endpoint.current_task_id
        if result.exclusive and not result.tasks and held_id is not None:
            # A task held while the endpoint shows none: its timers still fall due.
            held = upserted.get(held_id) or view.tasks.get(held_id)
            shown += [held] if held is not None else []
        self._memos[key] = Memo(result.fingerprint, quiet_until(shown, now, self._policy))
