"""`make bench`: start the simulator and the receiver, run every client, print the table.

Processes (the machine may have only 2 cores, so each part runs alone in its own process and
CPU is always read from the client's own process):

- the simulator (`python -m bulkwatch.simulator`, automatic lifecycles, `--latency` added to
  every API answer), with N stores: half Shoplazza, half Shopline polling QUERY + MUTATION;
- the webhook receiver, in a third process so the simulator's load cannot delay its clock;
- one client at a time, except in the last phase (see below).

Phases, in order:

1. limit, throughput: a bare aiohttp loop, `--concurrency` GETs in flight, whole rounds.
2. bulkwatch, throughput: `Engine.poll_all_once(concurrency)` rounds with the dispatcher
   delivering to the receiver; one warm-up round records the baseline first.
3. bulkwatch daemon: `Engine.serve()` at `--interval` (60 s), on the state phase 2 left, so
   it runs in steady state from its first poll; detection-to-delivery latency is read here.
4. side by side (they do not compete: each is mostly asleep): the limit paced at the same
   60 s interval, the sequential `requests` script, and the engine's idle scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bulkwatch.config import Settings, ShoplazzaStore, load_settings

from benchmarks.common import RESULT_PREFIX, raise_fd_limit

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# Lifecycles: a new task per store about every 5 minutes, one step every 20 s; results
# expire after 10 minutes. 10,000 stores then make about 33 new tasks a second.
SIM_STEP = 20.0
SIM_CREATE_EVERY = 300.0


class Proc:
    """A background process whose output goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._out = self.log.open("w")
        self.popen = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            [sys.executable, *argv], stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def wait_for_url(self, marker: str, within: float = 120.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if marker in line:
                    return line.split(marker, 1)[1].strip().split()[0]
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within {within:g} s")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


def _client(name: str, argv: Sequence[str], logs: Path) -> subprocess.Popen[str]:
    log = (logs / f"{name}.log").open("w")
    return subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=log, cwd=ROOT, text=True
    )


def _result(name: str, proc: subprocess.Popen[str], logs: Path) -> dict[str, Any]:
    out, _ = proc.communicate()
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return result
    tail = (logs / f"{name}.log").read_text()[-3000:]
    raise RuntimeError(f"client {name} failed (exit {proc.returncode}):\n{out[-2000:]}\n{tail}")


def run_clients(clients: dict[str, Sequence[str]], logs: Path) -> dict[str, dict[str, Any]]:
    """Start the clients together, wait for all, return each one's figures."""
    for name in clients:
        print(f"  running {name} ...", flush=True)
    procs = {name: _client(name, argv, logs) for name, argv in clients.items()}
    return {name: _result(name, proc, logs) for name, proc in procs.items()}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - our loopback URL
        return json.loads(resp.read())


def write_config(
    path: Path, stores: list[dict[str, Any]], state: Path, hook: str, interval: float
) -> Path:
    """A bulkwatch config (YAML accepts JSON) for the simulated stores."""
    doc = {
        "instance": "bench",
        "state": {"url": f"sqlite:///{state}"},
        "server": {"enabled": False},
        "defaults": {"interval": interval},
        "notifiers": [{"name": "bench", "type": "webhook", "url": hook}],
        "stores": stores,
    }
    path.write_text(json.dumps(doc))
    return path


def write_endpoints(path: Path, settings: Settings) -> int:
    """Every GET the engine makes, in the form the bare clients replay."""
    out: list[dict[str, Any]] = []
    for store in settings.stores:
        token = store.token() or ""
        common = {"Accept": "application/json", "User-Agent": "bench"}
        if isinstance(store, ShoplazzaStore):
            out.append(
                {
                    "url": f"{store.url_base()}/openapi/{store.api_version}/data/tasks",
                    "params": {"page": "1", "limit": str(store.page_limit)},
                    "headers": {
                        **common,
                        "Access-Token": token,
                        "Content-Type": "application/json",
                    },
                }
            )
            continue
        url = f"{store.url_base()}/admin/openapi/{store.api_version}/current_bulk_operation.json"
        out.extend(
            {
                "url": url,
                "params": {"type": kind},
                "headers": {
                    **common,
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json; charset=utf-8",
                },
            }
            for kind in store.operation_types
        )
    path.write_text(json.dumps(out))
    return len(out)


def machine() -> dict[str, Any]:
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
        first = meminfo.read_text().splitlines()[0]
        mem_gib = int(first.split()[1]) / 1024 / 1024
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "apscheduler": metadata.version("apscheduler"),
        "bulkwatch": metadata.version("bulkwatch"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(summary: dict[str, Any]) -> str:
    """The table `make bench` prints and docs/performance.md keeps."""
    c = summary["clients"]
    lat = summary["latency"]
    rows = [
        ("limit: bare aiohttp, max rate", c["limit"], None),
        ("bulkwatch engine, max rate", c["engine"], lat.get("throughput")),
        ("requests, sequential", c["requests"], None),
        (f"limit: bare aiohttp, every {summary['interval_s']:g} s", c["limit_paced"], None),
        (f"bulkwatch daemon, every {summary['interval_s']:g} s", c["daemon"], lat.get("daemon")),
    ]
    head = (
        f"{'client':<34} {'polls/s':>8} {'CPU s/1k polls':>14} {'CPU % core':>10} "
        f"{'peak RSS MiB':>12} {'p50 s':>6} {'p99 s':>6}"
    )
    lines = [
        f"bulkwatch benchmark: {summary['stores']:,} stores, {summary['endpoints']:,} endpoints, "
        f"simulated latency {1000 * summary['latency_sim_s']:g} ms, "
        f"{summary['duration_s']:g} s per phase, {summary['concurrency']} in flight at max rate",
        head,
        "-" * len(head),
    ]
    for label, r, latency in rows:
        latency = latency or {}
        lines.append(
            f"{label:<34} {r['polls_per_s']:>8.1f} {r['cpu_s_per_1000_polls']:>14.3f} "
            f"{r['cpu_percent']:>10.1f} {r['peak_rss_mib']:>12.1f} "
            f"{_fmt(latency.get('p50_s'), '6.3f'):>6} {_fmt(latency.get('p99_s'), '6.3f'):>6}"
        )
    idle = c["idle"]
    lines += [
        "",
        f"scheduler idle, {idle['jobs']:,} jobs: {idle['cpu_percent']:.2f} % CPU, "
        f"RSS {idle['rss_mib']:.1f} MiB ({idle['scheduler_kib_per_job']:.2f} KiB per job), "
        f"jobs added in {idle['scheduler_build_s']:.2f} s",
        f"daemon: started in {c['daemon']['startup_s']:.1f} s, event-loop lag p99 "
        f"{c['daemon']['loop_lag_p99_s'] * 1000:.1f} ms, max "
        f"{c['daemon']['loop_lag_max_s'] * 1000:.1f} ms; "
        f"events delivered {lat.get('daemon', {}).get('deliveries', 0):,}",
        "",
    ]
    r = summary["ratios"]
    t = summary["targets"]
    lines += [
        f"CPU per poll, bulkwatch / limit at max rate:     {_fmt(r['cpu_vs_limit'], '.2f')}x"
        f"   (target <= 1.5x: {t['cpu_vs_limit']})",
        f"CPU per poll, daemon / limit paced at interval: {_fmt(r['daemon_cpu_vs_paced'], '.2f')}x",
        f"polls/s, bulkwatch / requests:                  {_fmt(r['polls_vs_requests'], '.0f')}x"
        f"   (target >= 100x: {t['polls_vs_requests']})",
        f"daemon at {summary['interval_s']:g} s: {c['daemon']['cpu_percent']:.1f} % of one core, "
        f"peak RSS {c['daemon']['peak_rss_mib']:.0f} MiB   "
        f"(targets < 30 %: {t['daemon_cpu']}, < 300 MiB: {t['daemon_rss']})",
        f"detection to delivery p99: {_fmt(lat.get('daemon', {}).get('p99_s'), '.3f')} s   "
        f"(target < 1 s: {t['latency']})",
    ]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def summarise(
    args: argparse.Namespace,
    endpoints: int,
    clients: dict[str, dict[str, Any]],
    latency: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    engine, limit, daemon = clients["engine"], clients["limit"], clients["daemon"]
    ratios = {
        "cpu_vs_limit": _ratio(engine["cpu_s_per_1000_polls"], limit["cpu_s_per_1000_polls"]),
        "daemon_cpu_vs_paced": _ratio(
            daemon["cpu_s_per_1000_polls"], clients["limit_paced"]["cpu_s_per_1000_polls"]
        ),
        "polls_vs_requests": _ratio(engine["polls_per_s"], clients["requests"]["polls_per_s"]),
    }
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
        "latency": _verdict(None if p99 is None else p99 < 1.0),
    }
    return {
        # The keys the issue names, first.
        "stores": args.stores,
        "polls_per_s": engine["polls_per_s"],
        "cpu_s_per_1000_polls": engine["cpu_s_per_1000_polls"],
        "limit_cpu_s_per_1000_polls": limit["cpu_s_per_1000_polls"],
        "requests_polls_per_s": clients["requests"]["polls_per_s"],
        "peak_rss_mib": daemon["peak_rss_mib"],
        "latency_p50_s": latency.get("daemon", {}).get("p50_s"),
        "latency_p99_s": p99,
        "idle_cpu_percent": clients["idle"]["cpu_percent"],
        # Context and every client's full figures.
        "daemon_cpu_percent": daemon["cpu_percent"],
        "daemon_cpu_s_per_1000_polls": daemon["cpu_s_per_1000_polls"],
        "endpoints": endpoints,
        "latency_sim_s": args.latency,
        "duration_s": args.duration,
        "interval_s": args.interval,
        "concurrency": args.concurrency,
        "ratios": ratios,
        "targets": targets,
        "clients": clients,
        "latency": latency,
        "machine": machine(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    logs = args.logs or work
    logs.mkdir(parents=True, exist_ok=True)
    n_lazza = args.stores // 2
    sim = Proc(
        "simulator",
        [
            "-m",
            "benchmarks.simulator",
            "--port=0",
            f"--shoplazza={n_lazza}",
            f"--shopline={args.stores - n_lazza}",
            f"--latency={args.latency}",
            f"--step={SIM_STEP}",
            f"--create-every={SIM_CREATE_EVERY}",
            "--history=2",
            "--seed=1",
        ],
        logs,
    )
    receiver = Proc("receiver", ["-m", "benchmarks.receiver"], logs)
    try:
        sim_url = sim.wait_for_url("listening on")
        hook = receiver.wait_for_url("listening on")
        stores: list[dict[str, Any]] = _get_json(f"{sim_url}/_sim/config")
        print(f"simulator {sim_url} ({len(stores):,} stores), receiver {hook}", flush=True)
        state = work / "state.db"
        throughput_cfg = write_config(
            work / "throughput.yaml", stores, state, f"{hook}/hook/throughput", args.interval
        )
        daemon_cfg = write_config(
            work / "daemon.yaml", stores, state, f"{hook}/hook/daemon", args.interval
        )
        idle_cfg = write_config(
            work / "idle.yaml", stores, work / "idle.db", f"{hook}/hook/idle", args.interval
        )
        endpoints_file = work / "endpoints.json"
        endpoints = write_endpoints(endpoints_file, load_settings(throughput_cfg, environ={}))
        duration = [f"--duration={args.duration}"]
        concurrency = [f"--concurrency={args.concurrency}"]
        eps = [f"--endpoints={endpoints_file}"]
        profile = [f"--profile={logs / 'engine-profile.txt'}"] if args.profile else []
        clients: dict[str, dict[str, Any]] = {}
        clients |= run_clients(
            {"limit": ["-m", "benchmarks.limit", *eps, *duration, *concurrency]}, logs
        )
        clients |= run_clients(
            {
                "engine": [
                    "-m",
                    "benchmarks.engine",
                    f"--config={throughput_cfg}",
                    "--mode=throughput",
                    *duration,
                    *concurrency,
                    *profile,
                ]
            },
            logs,
        )
        clients |= run_clients(
            {
                "daemon": [
                    "-m",
                    "benchmarks.engine",
                    f"--config={daemon_cfg}",
                    "--mode=daemon",
                    *duration,
                ]
            },
            logs,
        )
        clients |= run_clients(
            {
                "limit_paced": [
                    "-m",
                    "benchmarks.limit",
                    *eps,
                    *duration,
                    "--mode=paced",
                    f"--interval={args.interval}",
                ],
                "requests": ["-m", "benchmarks.naive", *eps, f"--duration={args.duration}"],
                "idle": [
                    "-m",
                    "benchmarks.engine",
                    f"--config={idle_cfg}",
                    "--mode=idle",
                    f"--duration={min(args.duration, 30.0)}",
                ],
            },
            logs,
        )
        latency = {phase: _get_json(f"{hook}/stats/{phase}") for phase in ("throughput", "daemon")}
    finally:
        sim.stop()
        receiver.stop()
    return summarise(args, endpoints, clients, latency)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--stores", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per phase")
    parser.add_argument("--latency", type=float, default=0.15, help="simulated API latency, s")
    parser.add_argument("--interval", type=float, default=60.0, help="daemon poll interval, s")
    parser.add_argument("--concurrency", type=int, default=200, help="in flight at max rate")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--logs", type=Path, default=None, help="keep process logs here")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the engine")
    args = parser.parse_args(argv)
    if args.stores < 2:
        parser.error("--stores must be at least 2 (one per platform)")
    raise_fd_limit()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bulkwatch-bench-") as tmp:
        summary = run(args, Path(tmp))
    summary["bench_wall_s"] = round(time.monotonic() - started, 1)
    print()
    print(render(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nfigures written to {args.out} ({summary['bench_wall_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
