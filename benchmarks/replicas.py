"""The replicas phase of `make bench`: N daemons (3 by default) share the stores through leases
in PostgreSQL, on the state the single PostgreSQL daemon left (same schema, same steady state).

Each replica is a `benchmarks.engine --mode daemon` client of its own with `state.replicas`
on: it measures its own process over its window, as the single daemon does, plus the
server's CPU for its own connections (found by `application_name`). The server's background
processes (WAL writer, checkpointer...) serve all replicas at once, so only replica 0 counts
them: the total then counts them once, as the single daemon's row does.

Meanwhile this process asks PostgreSQL who holds how many live leases, every 0.1 s from the
moment the replicas are started: the time until every store is owned, and until the stores
are split in fair shares (Python start-up, config, schema check and the claims and releases
of all replicas included).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.pgserver import with_params
from benchmarks.procs import collect, start_client

__all__ = ["LEASE_TTL", "lease_counts", "lease_figures", "run_replicas", "total"]

LEASE_TTL = 30.0  # the default: what a deployment gets without choosing
_HELD = "SELECT count(*) FROM leases WHERE expires_at > now() GROUP BY owner"


async def _until_owned(url: str, stores: int, replicas: int, within: float) -> dict[str, Any]:
    """Seconds until every store has a live lease, and until they are split in fair shares
    (each of the `replicas` holding at most ceil(stores / replicas)); None when not within
    `within` seconds."""
    share = math.ceil(stores / replicas)
    started = time.monotonic()
    found: dict[str, Any] = {"all_owned_s": None, "fair_split_s": None}
    conn = await asyncpg.connect(url, timeout=10)
    try:
        while time.monotonic() - started < within and found["fair_split_s"] is None:
            try:
                held = [r[0] for r in await conn.fetch(_HELD)]
            except asyncpg.UndefinedTableError:
                held = []  # not created yet
            at = round(time.monotonic() - started, 2)
            if sum(held) >= stores:
                found["all_owned_s"] = found["all_owned_s"] or at
                if len(held) == replicas and max(held) <= share:
                    found["fair_split_s"] = at
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return found


def run_replicas(
    url: str,
    *,
    count: int,
    write: Callable[[Path, dict[str, Any]], Path],
    stores: int,
    logs: Path,
    daemon_args: list[str],
) -> dict[str, Any]:
    """Start `count` replica daemons on the schema at `url` at once; return each one's
    figures and the time until all `stores` were owned. `write(path, state)` writes a
    config with that `state:`; `daemon_args` are the single daemon's measurement options."""
    procs = {}
    started = time.monotonic()
    for i in range(count):
        state = {
            "url": with_params(url, application_name=f"bulkwatch-bench-replica-{i}"),
            "replicas": True,
            "lease_ttl": LEASE_TTL,
            "replica_id": f"bench-replica-{i}",
        }
        config = write(Path(f"replica_{i}.yaml"), state)
        background = [] if i == 0 else ["--server-cpu=own"]
        argv = ["-m", "benchmarks.engine", f"--config={config}", "--mode=daemon", *background]
        procs[f"replica_{i}"] = start_client(f"replica_{i}", [*argv, *daemon_args], logs)
    owned = asyncio.run(_until_owned(url, stores, count, within=600.0))
    spawn_s = time.monotonic() - started
    figures = {name: collect(name, proc, logs) for name, proc in procs.items()}
    return {
        "replicas": figures,
        "duration_s": min(r["wall_s"] for r in figures.values()),
        **owned,
        "spawn_s": round(spawn_s, 2),
        "lease_ttl_s": LEASE_TTL,
        "total": total(figures),
    }


def total(replicas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The replicas as one: polls and CPU summed, CPU per poll over the sum, RSS summed."""
    rs = list(replicas.values())
    polls = sum(r["polls"] for r in rs)
    cpu = sum(r["cpu_s"] for r in rs)
    wall = max(r["wall_s"] for r in rs)
    return {
        "polls": polls,
        "wall_s": wall,
        "cpu_s": round(cpu, 3),
        "polls_per_s": round(sum(r["polls_per_s"] for r in rs), 2),
        "cpu_s_per_1000_polls": round(1000 * cpu / polls, 4) if polls else 0.0,
        "cpu_percent": round(sum(r["cpu_percent"] for r in rs), 2),
        "peak_rss_mib": round(sum(r["peak_rss_mib"] for r in rs), 1),
        "lease_renewals_per_s": round(sum(r.get("lease_renewals_per_s", 0.0) for r in rs), 3),
        "errors": sum(r["errors"] for r in rs),
    }


def lease_counts(registry: Any) -> dict[str, float] | None:
    """A replica's lease counters from its own metrics registry (None when it keeps none):
    renewal statements sent (answered or failed), takeovers, and stores owned now."""
    get = registry.get_sample_value
    owned = get("bulkwatch_lease_stores_owned")
    if owned is None:
        return None
    renewals = sum(
        get("bulkwatch_lease_renewals_total", {"result": r}) or 0.0 for r in ("ok", "failed")
    )
    return {
        "renewals": renewals,
        "takeovers": get("bulkwatch_lease_takeovers_total") or 0.0,
        "owned": owned,
    }


def lease_figures(
    before: dict[str, float] | None, after: dict[str, float] | None, wall: float
) -> dict[str, Any]:
    """What a replica's leases cost over its measured window."""
    if before is None or after is None:
        return {}
    renewals = after["renewals"] - before["renewals"]
    return {
        "lease_renewals": int(renewals),
        "lease_renewals_per_s": round(renewals / wall, 3) if wall else 0.0,
        "lease_takeovers": int(after["takeovers"] - before["takeovers"]),
        "stores_owned": int(after["owned"]),
    }
