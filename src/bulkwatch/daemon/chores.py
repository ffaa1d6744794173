"""The daemon's background chores beside polling and delivery: the heartbeat that liveness
reads, and housekeeping (outbox gauges, pruning old state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from bulkwatch.daemon.status import DaemonStatus
from bulkwatch.delivery.dispatcher import Dispatcher
from bulkwatch.store.base import StateStore

__all__ = ["heartbeat", "housekeeping"]

log = structlog.get_logger("bulkwatch")


async def heartbeat(status: DaemonStatus, period: float = 1.0) -> None:
    """Beat every `period` seconds for liveness, noting how late each beat woke: a late beat
    means something held the event loop (and so every poll) for that long."""
    while True:
        status.heartbeat_at = time.monotonic()
        await asyncio.sleep(period)
        status.loop_lag = max(0.0, time.monotonic() - status.heartbeat_at - period)


async def housekeeping(
    dispatcher: Dispatcher,
    store: StateStore,
    clock: Callable[[], datetime],
    retention: Callable[[], float],
) -> None:
    """Outbox gauges every few seconds; pruning of state older than `retention()` seconds
    every hour."""
    next_prune = 0.0
    while True:
        try:
            await dispatcher.refresh_gauges()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 3600
                before = clock() - timedelta(seconds=retention())
                if pruned := await store.prune(before):
                    log.info("pruned old state", rows=pruned)
        except Exception as exc:  # noqa: BLE001 - a failing store must not stop the daemon
            # Readiness reports the store; pruning waits for its next hour.
            log.warning("housekeeping failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(5)
