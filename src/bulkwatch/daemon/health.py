"""Liveness and readiness of a running engine, as plain reports (web.py serves them).

Liveness asks "should this process be restarted?": the event loop answers (a request got
here), its heartbeat task still beats, and the scheduler runs. Readiness asks "is it doing its
job?": the config is loaded, the state store answers and its last write succeeded, and every
endpoint it polls was polled recently. A replica (`state.replicas`) polls only the stores it
holds leases for, so only those count; and it is ready while it holds its fair share or
waits for one (no lease free), not while its renewals fail (it stops polling then).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bulkwatch.daemon.status import DaemonStatus
from bulkwatch.store.base import StoreUnavailableError, StoreWriteError

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


@dataclass(frozen=True, slots=True)
class Report:
    """One health answer: `ok` picks the HTTP status; `problems` says what is wrong in a
    line each, and `body` (which lists them too) carries the details."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)


def liveness(status: DaemonStatus, now: float | None = None) -> Report:
    """Alive: the heartbeat is fresh and the scheduler runs (paused while stopping counts)."""
    now = time.monotonic() if now is None else now
    problems: list[str] = []
    scheduler = status.scheduler()
    if scheduler not in ("running", "paused"):
        problems.append(f"scheduler is {scheduler}")
    beat = status.heartbeat_at
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
        "loop_lag_s": round(status.loop_lag, 3),
    }
    return Report(not problems, problems, body)


async def _ping(status: DaemonStatus) -> dict[str, Any]:
    if status.ping is None:
        return {"ok": False, "error": "the state store is not open"}
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await status.ping()
    except StoreWriteError as exc:
        return {"ok": False, "error": str(exc), "writes_failing": True}
    except StoreUnavailableError as exc:
        return {"ok": False, "error": str(exc)}
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {PING_TIMEOUT_S:g}s"}
    return {"ok": True}


def _replica(status: DaemonStatus, mono: float) -> dict[str, Any] | None:
    """The replica's leases: renewed within TTL/2, and its share held or none free."""
    r = status.replica
    if r is None:
        return None
    held = len(status.owned or ())
    age = None if r.renewed_at is None else round(mono - r.renewed_at, 3)
    renewing = age is not None and age <= r.ttl / 2
    return {
        "ok": renewing and (held >= r.share or r.waiting),
        "replica": r.replica,
        "renewal_age_s": age,
        "renewing": renewing,
        "stores_owned": held,
        "share": r.share,
        "live_replicas": r.live,
        "waiting_for_share": r.waiting,
    }


def _replica_problem(check: dict[str, Any], ttl: float) -> str:
    if not check["renewing"]:
        age = check["renewal_age_s"]
        since = "yet" if age is None else f"for {age:.0f}s"
        return f"replica: no lease renewal succeeded {since} (stops polling after {ttl / 2:g}s)"
    return f"replica: holds {check['stores_owned']} of its share of {check['share']} stores"


async def readiness(
    status: DaemonStatus, since: datetime, now: datetime, mono: float | None = None
) -> Report:
    """Ready: the store answers, and each endpoint polled here was polled within its deadline
    (or, never polled yet, the daemon has run for less than that deadline since `since`); a
    replica also renews its leases and holds its share (`mono`: the monotonic time now)."""
    uptime = (now - since).total_seconds()
    stale: list[str] = []
    never: list[str] = []
    polled = counted = 0
    owned = status.owned
    for key, deadline in status.staleness.items():
        if owned is not None and key.store not in owned:
            continue  # another replica's to poll
        counted += 1
        last = status.last_poll.get(key)
        grace = uptime
        taken = status.owned_at.get(key.store)
        if owned is not None and taken is not None and taken > since:
            # Taken over while running: the same grace as at start, from when it was taken;
            # a poll from before this replica last gave it up does not count.
            grace = (now - taken).total_seconds()
            if last is not None and last < taken:
                last = None
        if last is None:
            if grace > deadline:
                never.append(str(key))
        else:
            polled += 1
            if (now - last).total_seconds() > deadline:
                stale.append(str(key))
    polls = {
        "ok": not stale and not never,
        "endpoints": counted,
        "polled": polled,
        "stale": stale[:MAX_LISTED],
        "never_polled": never[:MAX_LISTED],
    }
    store = await _ping(status)
    config = {
        "ok": True,
        "instance": status.instance,
        "stores": status.stores,
    }
    problems: list[str] = []
    if not store["ok"]:
        what = "writes failing" if store.get("writes_failing") else "unreachable"
        problems.append(f"state store {what}: {store['error']}")
    if stale:
        problems.append(f"{len(stale)} endpoint(s) not polled within 2 intervals")
    if never:
        problems.append(f"{len(never)} endpoint(s) never polled")
    checks: dict[str, Any] = {"config": config, "state_store": store, "polls": polls}
    replica = _replica(status, time.monotonic() if mono is None else mono)
    if replica is not None and status.replica is not None:
        checks["replica"] = replica
        if not replica["ok"]:
            problems.append(_replica_problem(replica, status.replica.ttl))
    body = {
        "status": "not ready" if problems else "ready",
        "problems": problems,
        "checks": checks,
    }
    return Report(not problems, problems, body)
