"""Prometheus metrics, all on one injected `CollectorRegistry` (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bulkwatch import __version__

__all__ = ["Metrics"]

# API calls take tens of milliseconds to a few seconds; timeouts sit around 10-30 s.
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric of DESIGN.md. Label values come from config, never from task ids."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = "bulkwatch_"
        self.polls = Counter(
            p + "polls", "Polls by outcome", ["platform", "store", "outcome"], registry=r
        )
        self.poll_duration = Histogram(
            p + "poll_duration_seconds",
            "Duration of one endpoint poll, all pages included",
            ["platform"],
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.api_errors = Counter(
            p + "api_errors",
            "Platform API errors by kind",
            ["platform", "store", "kind"],
            registry=r,
        )
        self.last_success = Gauge(
            p + "last_success_timestamp_seconds",
            "Unix time of the last successful poll",
            ["platform", "store"],
            registry=r,
        )
        self.store_up = Gauge(
            p + "store_up",
            "1 when the store's last polls succeed, 0 while it is down",
            ["platform", "store"],
            registry=r,
        )
        self.tasks = Gauge(
            p + "tasks", "Tracked tasks by status", ["platform", "store", "status"], registry=r
        )
        self.transitions = Counter(
            p + "transitions", "Task status transitions", ["platform", "from", "to"], registry=r
        )
        self.events = Counter(p + "events", "Events emitted by type", ["type"], registry=r)
        self.deliveries = Counter(
            p + "deliveries",
            "Delivery attempts by outcome (delivered, retry, dead)",
            ["notifier", "outcome"],
            registry=r,
        )
        self.delivery_duration = Histogram(
            p + "delivery_duration_seconds",
            "Duration of one delivery attempt",
            ["notifier"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            p + "outbox_pending", "Deliveries waiting to be sent", ["notifier"], registry=r
        )
        self.outbox_dead = Gauge(
            p + "outbox_dead", "Deliveries that gave up (dead letters)", ["notifier"], registry=r
        )
        self.build_info = Gauge(p + "build_info", "Build information", ["version"], registry=r)
        self.build_info.labels(version=__version__).set(1)
