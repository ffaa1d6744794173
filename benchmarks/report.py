"""The benchmark's summary (`latest.json`) and the table `make bench` prints."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT

__all__ = ["machine", "render", "summarise"]


def _git(*args: str) -> str:
    try:
        out = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        mem_gib = int(meminfo.read_text().split("\n", 1)[0].split()[1]) / 1024 / 1024
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "apscheduler": metadata.version("apscheduler"),
        "bulkwatch_commit": _git("rev-parse", "--short", "HEAD")
        + (" + local changes" if changed else ""),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def summarise(
    settings: dict[str, Any],
    clients: dict[str, dict[str, Any]],
    latency: dict[str, dict[str, Any]],
    phases: dict[str, dict[str, float]],
    replicas: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of the run; the issue's keys first."""
    engine, limit, daemon = clients["engine"], clients["limit"], clients["daemon"]
    ratios = {
        "cpu_vs_limit": _ratio(engine["cpu_s_per_1000_polls"], limit["cpu_s_per_1000_polls"]),
        "daemon_cpu_vs_paced_limit": _ratio(
            daemon["cpu_s_per_1000_polls"], clients["limit_paced"]["cpu_s_per_1000_polls"]
        ),
        "polls_vs_requests": _ratio(engine["polls_per_s"], clients["requests"]["polls_per_s"]),
    }
    if "engine_pg" in clients:
        for phase in ("engine", "daemon"):
            ratios[f"postgres_vs_sqlite_{phase}_cpu"] = _ratio(
                clients[f"{phase}_pg"]["cpu_s_per_1000_polls"],
                clients[phase]["cpu_s_per_1000_polls"],
            )
    if replicas is not None:
        ratios |= _replica_ratios(replicas["total"], clients)
    p99 = latency.get("daemon", {}).get("p99_s")
    targets = {
        "cpu_vs_limit": _verdict(
            None if ratios["cpu_vs_limit"] is None else ratios["cpu_vs_limit"] <= 1.5
        ),
        "polls_vs_requests": _verdict(
            None if ratios["polls_vs_requests"] is None else ratios["polls_vs_requests"] >= 100
        ),
        "daemon_cpu": _verdict(daemon["cpu_percent"] < 30),
        "daemon_rss": _verdict(daemon["peak_rss_mib"] < 300),
        "latency_p99": _verdict(None if p99 is None else p99 < 1.0),
    }
    return {
        "stores": settings["stores"],
        "polls_per_s": engine["polls_per_s"],
        "cpu_s_per_1000_polls": engine["cpu_s_per_1000_polls"],
        "limit_cpu_s_per_1000_polls": limit["cpu_s_per_1000_polls"],
        "requests_polls_per_s": clients["requests"]["polls_per_s"],
        "peak_rss_mib": daemon["peak_rss_mib"],
        "latency_p50_s": latency.get("daemon", {}).get("p50_s"),
        "latency_p99_s": p99,
        "idle_cpu_percent": clients["idle"]["cpu_percent"],
        "daemon_cpu_percent": daemon["cpu_percent"],
        "daemon_cpu_s_per_1000_polls": daemon["cpu_s_per_1000_polls"],
        **settings,
        "ratios": ratios,
        "targets": targets,
        "clients": clients,
        "replicas": replicas,
        "latency": latency,
        "phases": phases,
        "machine": machine(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _replica_ratios(total: dict[str, Any], clients: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The replicas together against one daemon of the same run (PostgreSQL, then SQLite)."""
    one_pg, one = clients["daemon_pg"], clients["daemon"]
    return {
        "replicas_vs_daemon_pg_polls": _ratio(total["polls_per_s"], one_pg["polls_per_s"]),
        "replicas_vs_daemon_pg_cpu": _ratio(
            total["cpu_s_per_1000_polls"], one_pg["cpu_s_per_1000_polls"]
        ),
        "replicas_vs_daemon_pg_rss": _ratio(total["peak_rss_mib"], one_pg["peak_rss_mib"]),
        "replicas_vs_daemon_sqlite_cpu": _ratio(
            total["cpu_s_per_1000_polls"], one["cpu_s_per_1000_polls"]
        ),
    }


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(s: dict[str, Any]) -> str:
    """The table: one row per client, then the idle scheduler, the ratios and the targets."""
    c, lat, ph = s["clients"], s["latency"], s["phases"]
    every = f"every {s['interval_s']:g} s"
    rows = [
        ("limit: bare aiohttp, max rate", c["limit"], None),
        ("bulkwatch engine, max rate", c["engine"], lat.get("throughput")),
        ("requests script, sequential", c["requests"], None),
        (f"limit: bare aiohttp, {every}", c["limit_paced"], None),
        (f"bulkwatch daemon, {every}", c["daemon"], lat.get("daemon")),
    ]
    if "engine_pg" in c:
        rows += [
            ("bulkwatch engine, max rate, PostgreSQL", c["engine_pg"], lat.get("throughput_pg")),
            (f"bulkwatch daemon, {every}, PostgreSQL", c["daemon_pg"], lat.get("daemon_pg")),
        ]
    reps = s.get("replicas")
    if reps:
        n = len(reps["replicas"])
        rows += [
            (f"replica {i + 1}/{n}, {every}, PostgreSQL", r, None)
            for i, r in enumerate(reps["replicas"].values())
        ]
        rows.append(
            (f"{n} replicas in all, {every}, PostgreSQL", reps["total"], lat.get("replicas"))
        )
    head = (
        f"{'client':<42} {'polls/s':>8} {'CPU s/1k polls':>14} {'CPU % core':>10} "
        f"{'peak RSS MiB':>12} {'p50 s':>6} {'p99 s':>6}"
    )
    lines = [
        f"bulkwatch benchmark: {s['stores']:,} stores ({s['endpoints']:,} endpoints), simulated "
        f"API latency {1000 * s['latency_sim_s']:g} ms, {s['duration_s']:g} s measured per "
        f"client, max rate = {s['concurrency']} polls in flight",
        head,
        "-" * len(head),
    ]
    for label, r, seen in rows:
        got = seen or {}
        lines.append(
            f"{label:<42} {r['polls_per_s']:>8.1f} {r['cpu_s_per_1000_polls']:>14.3f} "
            f"{r['cpu_percent']:>10.1f} {r['peak_rss_mib']:>12.1f} "
            f"{_fmt(got.get('p50_s'), '6.3f'):>6} {_fmt(got.get('p99_s'), '6.3f'):>6}"
        )
    idle, daemon, engine = c["idle"], c["daemon"], c["engine"]
    r, t = s["ratios"], s["targets"]
    lines += [
        "",
        f"scheduler idle with {idle['jobs']:,} jobs: {idle['cpu_percent']:.2f} % CPU, RSS "
        f"{idle['rss_mib']:.0f} MiB ({idle['scheduler_kib_per_job']:.1f} KiB per job; "
        f"jobs added in {idle['scheduler_build_s']:.2f} s)",
        f"daemon: ready in {daemon['startup_s']:.1f} s, measured after {daemon['warmup_s']:g} s; "
        f"event-loop lag p99 {1000 * daemon['loop_lag_p99_s']:.0f} ms, max "
        f"{1000 * daemon['loop_lag_max_s']:.0f} ms; GC {sum(daemon['gc_s']):.2f} s "
        f"(full collections {daemon['gc_runs'][2]}); "
        f"{lat.get('daemon', {}).get('deliveries', 0):,} events delivered",
        f"engine at max rate: GC {sum(engine['gc_s']):.2f} s of {engine['cpu_s']:.1f} s CPU "
        f"(full collections {engine['gc_runs'][2]}); "
        f"{lat.get('throughput', {}).get('deliveries', 0):,} events delivered",
        "machine busy (all cores) / simulator CPU % per phase: "
        + ", ".join(
            f"{name} {p['machine_busy_percent']:.0f}/{p['simulator_cpu_percent']:.0f}"
            for name, p in ph.items()
        ),
        "",
        f"CPU per poll, bulkwatch / limit at max rate:      {_fmt(r['cpu_vs_limit'], '.2f')}x"
        f"  (target <= 1.5x: {t['cpu_vs_limit']})",
        f"CPU per poll, daemon / limit {every}:  {_fmt(r['daemon_cpu_vs_paced_limit'], '.2f')}x",
        f"polls/s, bulkwatch / requests script:           {_fmt(r['polls_vs_requests'], '.0f')}x"
        f"  (target >= 100x: {t['polls_vs_requests']})",
        f"daemon {every}: {daemon['cpu_percent']:.1f} % of one core (target < 30 %: "
        f"{t['daemon_cpu']}), peak RSS {daemon['peak_rss_mib']:.0f} MiB (target < 300 MiB: "
        f"{t['daemon_rss']})",
        f"detection to delivery p99: {_fmt(lat.get('daemon', {}).get('p99_s'), '.3f')} s "
        f"(target < 1 s: {t['latency_p99']})",
    ]
    if "engine_pg" in c:
        engine_pg, daemon_pg = c["engine_pg"], c["daemon_pg"]
        lines += [
            "",
            "PostgreSQL rows: CPU = the client's + the server's for it (its backends and "
            f"background processes): engine {engine_pg['client_cpu_s']:.1f} + "
            f"{engine_pg['server_cpu_s']:.1f} s, daemon {daemon_pg['client_cpu_s']:.1f} + "
            f"{daemon_pg['server_cpu_s']:.1f} s",
            "CPU per poll, PostgreSQL / SQLite: engine at max rate "
            f"{_fmt(r['postgres_vs_sqlite_engine_cpu'], '.2f')}x, daemon {every} "
            f"{_fmt(r['postgres_vs_sqlite_daemon_cpu'], '.2f')}x",
        ]
    if reps:
        lines += ["", *_replica_lines(reps, s["ratios"], every)]
    if "page" in c:
        lines.append(f"status page and API read beside the daemon ({c['page']['errors']} errors):")
        lines.extend(
            f"  {path}: {f['requests']:,} requests, p50 {_fmt(f['p50_ms'], '.1f')} ms, "
            f"max {_fmt(f['max_ms'], '.1f')} ms, {_fmt(f['bytes'], ',')} bytes"
            for path, f in c["page"]["paths"].items()
        )
    return "\n".join(lines)


def _replica_lines(reps: dict[str, Any], r: dict[str, Any], every: str) -> list[str]:
    rs = list(reps["replicas"].values())
    n = len(rs)

    def after(seconds: float | None) -> str:
        return "not within 600 s" if seconds is None else f"{seconds:.1f} s"

    return [
        f"{n} replicas, lease TTL {reps['lease_ttl_s']:g} s, each measured over "
        f"{reps['duration_s']:.0f} s (whole intervals): every store owned "
        f"{after(reps['all_owned_s'])}, fair shares {after(reps['fair_split_s'])} after the "
        f"{n} processes were started; stores owned at the end "
        + "/".join(str(x.get("stores_owned", "-")) for x in rs)
        + f"; takeovers in the window {sum(x.get('lease_takeovers', 0) for x in rs)}",
        f"lease renewal statements: {reps['total']['lease_renewals_per_s']:.2f}/s in all ("
        + "/".join(f"{x.get('lease_renewals_per_s', 0):.2f}" for x in rs)
        + "; each round also counts the live replicas: one statement more); replica 1's "
        "CPU includes the server's background processes, the others' only their backends",
        f"{n} replicas / one daemon {every}, PostgreSQL: polls/s "
        f"{_fmt(r['replicas_vs_daemon_pg_polls'], '.2f')}x, CPU per poll "
        f"{_fmt(r['replicas_vs_daemon_pg_cpu'], '.2f')}x, peak RSS "
        f"{_fmt(r['replicas_vs_daemon_pg_rss'], '.2f')}x; CPU per poll / one daemon, SQLite: "
        f"{_fmt(r['replicas_vs_daemon_sqlite_cpu'], '.2f')}x",
    ]
