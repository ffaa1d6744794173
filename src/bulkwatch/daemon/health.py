"""Liveness and readiness of a running engine, as plain reports (web.py serves them).

Liveness asks "should this process be restarted?": the event loop answers (a request got
here), its heartbeat task still beats, and the scheduler runs. Readiness asks "is it doing its
job?": the config is loaded, the state store answers, and every endpoint was polled recently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED

from bulkwatch.store.base import StoreUnavailableError

if TYPE_CHECKING:
    from bulkwatch.daemon.engine import Engine

__all__ = [
    "HEARTBEAT_STALE_S",
    "PING_TIMEOUT_S",
    "Report",
    "liveness",
    "readiness",
]

# The heartbeat beats every second; a beat this old means its task died or the loop was
# blocked for that long (a request answering now proves only that it is not blocked now).
HEARTBEAT_STALE_S = 10.0
PING_TIMEOUT_S = 2.0
# Endpoint lists in a report are cut here: 10,000 stale stores need not be spelled out.
MAX_LISTED = 50


_STATES = {STATE_RUNNING: "running", STATE_PAUSED: "paused", STATE_STOPPED: "stopped"}


@dataclass(frozen=True, slots=True)
class Report:
    """One health answer: `ok` picks the HTTP status; `problems` says what is wrong in a
    line each, and `body` (which lists them too) carries the details."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)


def liveness(engine: Engine, now: float | None = None) -> Report:
    """Alive: the heartbeat is fresh and the scheduler runs (paused while stopping counts)."""
    now = time.monotonic() if now is None else now
    problems: list[str] = []
    sched = engine.scheduler
    scheduler = "not started" if sched is None else _STATES.get(sched.state, str(sched.state))
    if scheduler not in ("running", "paused"):
        problems.append(f"scheduler is {scheduler}")
    beat = engine.heartbeat_at
    age = None if beat is None else round(now - beat, 3)
    if age is None:
        problems.append("event loop heartbeat has not started")
    elif age > HEARTBEAT_STALE_S:
        problems.append(f"event loop heartbeat is {age:.0f}s old")
    body: dict[str, Any] = {
        "status": "ok" if not problems else "failing",
        "problems": problems,
        "scheduler": scheduler,
        "heartbeat_age_s": age,
        "loop_lag_s": round(engine.loop_lag, 3),
    }
    return Report(not problems, problems, body)


def _deadlines(engine: Engine) -> Mapping[str, float]:
    """Per store: seconds after which an endpoint's last poll counts as stale.

    Two intervals, plus the jitter one run may add and the time a slow poll may take before
    it records (a poll records the time it started).
    """
    s = engine.settings
    return {
        store.name: 2 * s.interval(store) + s.jitter(store) + s.timeout(store) + 5
        for store in s.stores
    }


async def _ping(engine: Engine) -> dict[str, Any]:
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await engine.store.ping()
    except StoreUnavailableError as exc:
        return {"ok": False, "error": str(exc)}
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {PING_TIMEOUT_S:g}s"}
    return {"ok": True}


async def readiness(engine: Engine, since: datetime) -> Report:
    """Ready: the store answers, and each endpoint was polled within its deadline (or, never
    polled yet, the daemon has run for less than that deadline since `since`)."""
    now = engine.clock()
    uptime = (now - since).total_seconds()
    deadlines = _deadlines(engine)
    stale: list[str] = []
    never: list[str] = []
    polled = 0
    for _source, key in engine.endpoints:
        deadline = deadlines.get(key.store, 0.0)
        last = engine.last_poll.get(key)
        if last is None:
            if uptime > deadline:
                never.append(str(key))
        else:
            polled += 1
            if (now - last).total_seconds() > deadline:
                stale.append(str(key))
    polls = {
        "ok": not stale and not never,
        "endpoints": len(engine.endpoints),
        "polled": polled,
        "stale": stale[:MAX_LISTED],
        "never_polled": never[:MAX_LISTED],
    }
    store = await _ping(engine)
    config = {
        "ok": True,
        "instance": engine.settings.instance,
        "stores": len(engine.sources),
    }
    problems: list[str] = []
    if not store["ok"]:
        problems.append(f"state store unreachable: {store['error']}")
    if stale:
        problems.append(f"{len(stale)} endpoint(s) not polled within 2 intervals")
    if never:
        problems.append(f"{len(never)} endpoint(s) never polled")
    body = {
        "status": "not ready" if problems else "ready",
        "problems": problems,
        "checks": {"config": config, "state_store": store, "polls": polls},
    }
    return Report(not problems, problems, body)
