"""What every poll leaves in the metrics and the log: one `PollStats` per engine.

This runs for every poll of every store, so each store's labelled metric children are looked
up once (`labels()` costs a dictionary walk per call) and gauges are set only when their value
changes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from bulkwatch.model import EndpointKey, FailureKind, PollError, PollOutcome, PollResult, TaskStatus
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["PollStats", "problem_kinds"]

# How many problems of one poll its log line quotes in full.
_EXAMPLES = 3
# Where an entry sat ("page 2 tasks[17]: ") and the values quoted in a problem: a problem's
# kind is what is left.
_WHERE = re.compile(r"^page \d+ [^:]*: ")
_VALUES = re.compile(r"'[^']*'|\b\d+\b")


def problem_kinds(problems: Sequence[str]) -> dict[str, int]:
    """Problems counted by kind: the text without where the entry sat or what it held."""
    return dict(Counter(_VALUES.sub("…", _WHERE.sub("", problem)) for problem in problems))


log = structlog.get_logger("bulkwatch")


@dataclass(slots=True)
class _StoreSeries:
    """One store's metric children, and what its task gauges show now."""

    platform: str
    store: str
    ok: Any
    error: Any
    skipped: Any
    last_success: Any
    store_up: Any
    duration: Any
    # Tasks shown per endpoint, their sum as the gauges show it, and the gauges' children.
    shown: dict[str, Counter[TaskStatus]] = field(default_factory=dict)
    gauged: dict[TaskStatus, int] = field(default_factory=dict)
    gauges: dict[TaskStatus, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, metrics: Metrics, platform: str, store: str) -> _StoreSeries:
        return cls(
            platform=platform,
            store=store,
            ok=metrics.polls.labels(platform, store, "ok"),
            error=metrics.polls.labels(platform, store, "error"),
            skipped=metrics.polls.labels(platform, store, "skipped"),
            last_success=metrics.last_success.labels(platform, store),
            store_up=metrics.store_up.labels(platform, store),
            duration=metrics.poll_duration.labels(platform),
        )


class PollStats:
    """Counts, gauges and log lines of polls. The engine decides; this only reports."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._series: dict[str, _StoreSeries] = {}
        # Bound once: each call through the module's lazy proxy binds a new logger.
        # Logging is configured before an engine is built.
        self._log = log.bind()

    def series(self, key: EndpointKey) -> _StoreSeries:
        series = self._series.get(key.store)
        if series is None:
            series = _StoreSeries.of(self.metrics, key.platform.value, key.store)
            self._series[key.store] = series
        return series

    def forget(self, platform: str, store: str) -> None:
        """Forget a store that is no longer configured, and drop its series."""
        self._series.pop(store, None)
        self.metrics.forget_store(platform, store)

    def skipped(self, key: EndpointKey) -> None:
        """The job ran and found the store backing off: no request."""
        self.series(key).skipped.inc()

    def unchanged(self, key: EndpointKey, now: datetime) -> None:
        """A successful poll whose responses were those already judged."""
        series = self.series(key)
        series.ok.inc()
        series.last_success.set(now.timestamp())
        self._log.debug("polled", unchanged=True)

    def recorded(
        self,
        key: EndpointKey,
        result: PollResult | PollError,
        outcome: PollOutcome,
        previous_failures: int,
        now: datetime,
        *,
        retry_in: float | None = None,
    ) -> None:
        """A judged poll: its outcome counted and logged, its events counted."""
        m, platform = self.metrics, key.platform.value
        series = self.series(key)
        if isinstance(result, PollError):
            series.error.inc()
            m.api_errors.labels(platform, key.store, result.kind.value).inc()
            fields = {
                "kind": result.kind.value,
                "http_status": result.http_status,
                "request_id": result.request_id,
                "failures": outcome.endpoint.consecutive_failures,
                "retry_in_s": None if retry_in is None else round(retry_in, 1),
            }
            if previous_failures == 0:
                log.warning("poll failing", error=result.message, **fields)
            else:
                self._log.debug("poll still failing", error=result.message, **fields)
        else:
            series.ok.inc()
            series.last_success.set(now.timestamp())
            if result.problems:
                m.api_errors.labels(platform, key.store, FailureKind.INVALID_RESPONSE.value).inc(
                    len(result.problems)
                )
                # One line per poll, however many entries were odd: a store listing 10,000
                # broken entries must not drown the log (or the other stores' lines).
                log.warning(
                    "response entries skipped or assumed",
                    count=len(result.problems),
                    kinds=problem_kinds(result.problems),
                    examples=list(result.problems[:_EXAMPLES]),
                    request_id=result.request_id,
                )
            self._log.debug("polled", tasks=len(result.tasks), events=len(outcome.events))
            if previous_failures:
                log.info("poll recovered", after_failures=previous_failures)
            self._count_shown(series, key.endpoint, result)
        series.store_up.set(0 if outcome.health.down else 1)
        for event in outcome.events:
            m.events.labels(event.type).inc()
            status = event.type.status  # only a status change counts as a transition
            if status is not None:
                prev = event.data.get("previous_status")
                m.transitions.labels(platform, prev or "none", status.value).inc()
            self._log.debug("event", type=event.type, id=event.id, subject=event.subject)

    def failed_to_record(self, key: EndpointKey) -> None:
        self.series(key).error.inc()

    def _count_shown(self, series: _StoreSeries, endpoint: str, result: PollResult) -> None:
        """`bulkwatch_tasks`: the tasks the store's endpoints show now, by status."""
        series.shown[endpoint] = Counter(snap.status for snap in result.tasks)
        total: Counter[TaskStatus] = Counter()
        for counts in series.shown.values():
            total.update(counts)
        # Every label set was declared at 0: only statuses shown now or before can differ.
        for status in total.keys() | series.gauged.keys():
            value = total[status]
            if series.gauged.get(status, 0) != value:
                series.gauged[status] = value
                gauge = series.gauges.get(status)
                if gauge is None:
                    gauge = self.metrics.tasks.labels(series.platform, series.store, status.value)
                    series.gauges[status] = gauge
                gauge.set(value)
