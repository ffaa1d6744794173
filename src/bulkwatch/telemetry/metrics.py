"""Prometheus metrics, all on one injected `CollectorRegistry` (never the global one)."""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bulkwatch import __version__
from bulkwatch.model import EventType, FailureKind, TaskStatus

__all__ = ["DELIVERY_BUCKETS", "EVENT_TYPES", "POLL_BUCKETS", "Metrics", "StoreLabels"]

# API calls take tens of milliseconds to a few seconds; timeouts sit around 10-30 s, and a
# paged Shoplazza poll adds a few calls together.
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Every event type there is: counters start at 0, so `increase()` sees the first event too.
EVENT_TYPES = (
    *(EventType.for_status(status) for status in TaskStatus),
    EventType.TASK_SUPERSEDED,
    EventType.TASK_STALLED,
    EventType.TASK_EXPIRING,
    EventType.STORE_DOWN,
    EventType.STORE_UP,
)
# "skipped": a scheduled poll not sent because the store is backing off after failures.
POLL_OUTCOMES = ("ok", "error", "skipped")
DELIVERY_OUTCOMES = ("delivered", "retry", "dead")
RENEWAL_RESULTS = ("ok", "failed")
# Why a replica stopped polling a store it held: no renewal succeeded within TTL/2
# ("unrenewed"), a renewal no longer returned it ("gone"), a poll write was refused ("fenced").
LEASE_LOSSES = ("unrenewed", "gone", "fenced")
API_REJECTIONS = ("400", "401", "403", "404", "405")

# (platform, store, poll interval in seconds) of one configured store.
StoreLabels = tuple[str, str, float]


class _WithoutCreated(Collector):
    """The registry as Prometheus's text format shows it, minus the `_created` samples.

    The text format turns each counter's and histogram's creation time into an extra gauge
    series per label set (`bulkwatch_polls_created`); with 10,000 stores that doubles the
    biggest families for a value no rule reads. `disable_created_metrics()` would do the same
    for every registry in the process, so the filter lives here, on our registry only.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            kept = [s for s in family.samples if not s.name.endswith("_created")]
            if len(kept) == len(family.samples):
                yield family
                continue
            trimmed = copy.copy(family)
            trimmed.samples = kept
            yield trimmed


class Metrics:
    """Every metric bulkwatch exports (docs/operations.md lists them). Label values come from
    config, never from task ids."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        # process_* (memory, CPU, open files, start time) and python_info, on this registry.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # `namespace` puts the `bulkwatch_` in front of every name below.
        counter = functools.partial(Counter, namespace="bulkwatch", registry=r)
        gauge = functools.partial(Gauge, namespace="bulkwatch", registry=r)
        histogram = functools.partial(Histogram, namespace="bulkwatch", registry=r)
        per_store = ("platform", "store")

        self.polls = counter(
            "polls",
            "Polls by outcome (ok, error, skipped while backing off)",
            (*per_store, "outcome"),
        )
        self.poll_duration = histogram(
            "poll_duration_seconds",
            "Duration of one endpoint poll, all pages included",
            ("platform",),
            buckets=POLL_BUCKETS,
        )
        self.poll_interval = gauge(
            "poll_interval_seconds",
            "Configured seconds between two polls of one endpoint of the store",
            per_store,
        )
        # Every replica reports every configured store here, whichever polls it: the count the
        # stores the replicas own add up to (deploy/prometheus/alerts.yml).
        self.stores_configured = gauge(
            "stores_configured", "Stores in the config, whichever replica polls them"
        )
        self.api_errors = counter("api_errors", "Platform API errors by kind", (*per_store, "kind"))
        self.last_success = gauge(
            "last_success_timestamp_seconds", "Unix time of the last successful poll", per_store
        )
        self.store_up = gauge(
            "store_up", "1 when the store's last polls succeed, 0 while it is down", per_store
        )
        self.tasks = gauge(
            "tasks", "Tasks the platform shows now, by status", (*per_store, "status")
        )
        self.transitions = counter(
            "transitions", "Task status transitions", ("platform", "from", "to")
        )
        self.events = counter("events", "Events emitted by type", ("type",))
        self.deliveries = counter(
            "deliveries",
            "Delivery attempts by outcome (delivered, retry, dead)",
            ("notifier", "outcome"),
        )
        self.delivery_duration = histogram(
            "delivery_duration_seconds",
            "Duration of one delivery attempt",
            ("notifier",),
            buckets=DELIVERY_BUCKETS,
        )
        self.outbox_pending = gauge(
            "outbox_pending", "Deliveries waiting to be sent", ("notifier",)
        )
        self.outbox_dead = gauge(
            "outbox_dead", "Deliveries that gave up (dead letters)", ("notifier",)
        )
        self.delivery_store_failing = gauge(
            "delivery_store_failing",
            "1 while delivery is paused because the state store cannot record outcomes",
        )
        self.delivery_store_errors = counter(
            "delivery_store_errors",
            "State store errors met by the dispatcher (each pauses delivery a while)",
        )
        self.delivery_claims_lost = counter(
            "delivery_claims_lost",
            "Delivery outcomes dropped because another replica took the row after this one's "
            "claim on it timed out (delivery.claim_timeout); that replica's outcome stands",
        )
        self.scheduler_missed = counter(
            "scheduler_jobs_missed",
            "Poll jobs the scheduler skipped because they ran past their misfire grace time",
        )
        self.scheduler_failed = counter(
            "scheduler_jobs_failed",
            "Poll jobs that raised out of the scheduler (a bug: polls catch their own errors)",
        )
        self.list_truncated = gauge(
            "list_truncated",
            "1 while the store's task list is longer than a poll reads (page_limit x max_pages)",
            per_store,
        )
        self.endpoint_unverified = gauge(
            "endpoint_unverified",
            "1 while the endpoint answers 404 and has never shown a task (a wrong path looks "
            "the same)",
            (*per_store, "endpoint"),
        )
        self.api_rejected = counter(
            "api_rejected_requests",
            "Status page and API requests refused, by HTTP status (400, 401, 403, 404, 405)",
            ("status",),
        )
        # Named as Prometheus and Alertmanager name theirs, so the same alert rules fit.
        self.config_reload_ok = gauge(
            "config_last_reload_successful",
            "1 when the last config load (start or SIGHUP) succeeded, 0 when it was refused",
        )
        self.config_reload_time = gauge(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (start or SIGHUP)",
        )
        # Replicas (state.replicas): always exported; without replicas the one daemon owns
        # every store (lease_stores_owned = stores_configured), the others stay at 0.
        self.replica_info = gauge(
            "replica_info", "1, labelled with this replica's id (state.replicas only)", ("replica",)
        )
        self.lease_stores_owned = gauge(
            "lease_stores_owned", "Stores this replica holds a lease for and polls"
        )
        self.lease_renewals = counter(
            "lease_renewals", "Lease renewals by result (ok, failed)", ("result",)
        )
        self.lease_takeovers = counter(
            "lease_takeovers", "Stores claimed after another replica's lease on them expired"
        )
        self.lease_releases = counter(
            "lease_releases",
            "Leases this replica gave up: its share shrank, the store was removed, or it stopped",
        )
        self.lease_lost = counter(
            "lease_lost",
            "Stores this replica stopped polling because it lost their lease, by reason "
            "(unrenewed, gone, fenced)",
            ("reason",),
        )
        self.build_info = gauge("build_info", "Build information", ("version",))
        self.build_info.labels(version=__version__).set(1)

    def declare(self, stores: Iterable[StoreLabels], notifiers: Iterable[str]) -> None:
        """Create every configured label set up front, so each series exists (at 0) from the
        first scrape: dashboards show idle stores, and `increase()` counts the first event."""
        for platform, store, interval in stores:
            self.poll_interval.labels(platform, store).set(interval)
            self.store_up.labels(platform, store).set(1)
            for outcome in POLL_OUTCOMES:
                self.polls.labels(platform, store, outcome)
        for event_type in EVENT_TYPES:
            self.events.labels(event_type)
        for status in API_REJECTIONS:
            self.api_rejected.labels(status)
        for name in notifiers:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(name, outcome)
            self.outbox_pending.labels(name).set(0)
            self.outbox_dead.labels(name).set(0)

    def count_stores(self, configured: int, *, replicas: bool) -> None:
        """The stores gauges; a daemon without replicas owns every store (the unowned-stores
        alert compares the two)."""
        self.stores_configured.set(configured)
        if not replicas:
            self.lease_stores_owned.set(configured)

    def declare_replica(self, replica: str) -> None:
        """This process is replica `replica`: its info series, and its lease counters at 0."""
        self.replica_info.labels(replica).set(1)
        for result in RENEWAL_RESULTS:
            self.lease_renewals.labels(result)
        for reason in LEASE_LOSSES:
            self.lease_lost.labels(reason)

    def forget_store(self, platform: str, store: str) -> None:
        """Drop every series of a store no longer configured (a reload removed it), so no
        dashboard or alert goes on reading its last values."""
        kinds = [k.value for k in FailureKind]
        labelled: list[tuple[Any, Iterable[tuple[str, ...]]]] = [
            (self.polls, [(o,) for o in POLL_OUTCOMES]),
            (self.api_errors, [(k,) for k in kinds]),
            (self.tasks, [(s.value,) for s in TaskStatus]),
            (self.poll_interval, [()]),
            (self.last_success, [()]),
            (self.store_up, [()]),
        ]
        for metric, rest in labelled:
            for labels in rest:
                with contextlib.suppress(KeyError):
                    metric.remove(platform, store, *labels)

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format 0.0.4, without `_created` series."""
        return generate_latest(_WithoutCreated(self.registry))
