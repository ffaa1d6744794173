"""`make bench`: start the simulator and the receiver, run every client, print the table.

Processes (the machine may have only 2 cores, so CPU is always read from the client's own
process, and the busy clients run one at a time):

- the simulator (`python -m bulkwatch.simulator`, automatic lifecycles, `--latency` added to
  every API answer), N stores: half Shoplazza, half Shopline polling QUERY + MUTATION;
- the webhook receiver, in a process of its own so the simulator's load never delays it;
- the clients, each in its own process.

Phases, in order:

1. limit, max rate: a bare aiohttp loop, `--concurrency` GETs in flight, whole rounds.
2. bulkwatch, max rate: `Engine.poll_all_once(concurrency)` rounds with the dispatcher
   delivering to the receiver; one unmeasured warm-up round records the baseline first.
3. bulkwatch daemon: `Engine.serve()` at `--interval` (60 s) on the state phase 2 left; it
   is measured for `--duration` s after a warm-up, and detection-to-delivery latency is read
   from its events. During its warm-up (only then) three light clients run beside it:
   the limit paced at the same interval, the sequential `requests` script, and the engine
   with an idle scheduler. Each is mostly asleep, and each measures only its own process.
4. with `--postgres URL`: phases 2 and 3 again with the state in PostgreSQL, their CPU
   including the server's for them (`benchmarks.pgserver`); then `--replicas` daemons (3)
   sharing the stores through leases, on the state the single one left (`benchmarks.replicas`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import SIDE_MARGIN, free_port, get_json, raise_fd_limit
from benchmarks.configs import write_config, write_endpoints
from benchmarks.pgphases import postgres_phases
from benchmarks.pgserver import problem
from benchmarks.procs import ROOT, CpuWatch, Server, collect, run_clients, start_client
from benchmarks.report import render, summarise
from bulkwatch.config import load_settings

__all__ = ["main"]

RESULTS = ROOT / "benchmarks" / "results"
# Lifecycles: one step every 20 s, results that expire after 10 minutes, and by default a new
# task per store about every 5 minutes: 10,000 stores then make about 33 new tasks a second,
# far busier than real shops, so the outbox and the webhook get their share of the work.
SIM_STEP = 20.0


def _simulator_argv(args: argparse.Namespace) -> list[str]:
    n_lazza = args.stores // 2
    return [
        "-m",
        "benchmarks.simulator",
        "--port=0",
        f"--shoplazza={n_lazza}",
        f"--shopline={args.stores - n_lazza}",
        f"--latency={args.latency}",
        f"--step={SIM_STEP}",
        f"--create-every={args.create_every}",
        "--history=2",
        "--seed=1",
    ]


def _profile(args: argparse.Namespace, engine: list[str], daemon_config: Path, logs: Path) -> None:
    """pyinstrument runs of the engine and the daemon, apart from the measured ones."""
    duration, rate = f"--duration={args.duration}", f"--concurrency={args.concurrency}"
    # Separate: the profiler's own overhead would skew the figures above.
    profile = logs / "engine-profile.txt"
    run_clients({"engine-profiled": [*engine, duration, rate, f"--profile={profile}"]}, logs)
    print(f"profile of the engine at max rate: {profile} (+ .html, .pyisession)")
    profile = logs / "daemon-profile.txt"
    daemon_argv = [
        *("-m", "benchmarks.engine", f"--config={daemon_config}", "--mode=daemon"),
        duration,
        # Past the first poll of every endpoint: the first after a start is always
        # judged in full, which is not the steady state being profiled.
        f"--warmup={args.interval + SIDE_MARGIN}",
        f"--profile={profile}",
    ]
    run_clients({"daemon-profiled": daemon_argv}, logs)
    print(f"profile of the daemon: {profile} (+ .html, .pyisession)")


def _page_client(
    args: argparse.Namespace, port: int | None, warmup: float, logs: Path
) -> subprocess.Popen[str] | None:
    """The status page's reader, through the rest of the warm-up and the measured window."""
    if port is None:
        return None
    return start_client(
        "page",
        [
            *("-m", "benchmarks.pageclient", f"--url=http://127.0.0.1:{port}"),
            f"--duration={warmup + args.duration}",
            f"--every={args.page_every}",
        ],
        logs,
    )


def run(args: argparse.Namespace, work: Path, logs: Path) -> dict[str, Any]:
    sim = Server("simulator", _simulator_argv(args), logs)
    receiver = Server("receiver", ["-m", "benchmarks.receiver"], logs)
    try:
        sim_url = sim.wait_for_url("listening on")
        hook = receiver.wait_for_url("listening on")
        stores: list[dict[str, Any]] = get_json(f"{sim_url}/_sim/config")
        print(f"simulator {sim_url} ({len(stores):,} stores), receiver {hook}", flush=True)
        state = work / "state.db"
        page_port = free_port() if args.page_client else None
        cfg = {
            phase: write_config(
                work / f"{phase}.yaml",
                stores,
                work / "idle.db" if phase == "idle" else state,
                f"{hook}/hook/{phase}",
                args.interval,
                port=page_port if phase == "daemon" else None,
            )
            for phase in ("throughput", "daemon", "idle")
        }
        endpoints_file = work / "endpoints.json"
        endpoints = write_endpoints(endpoints_file, load_settings(cfg["throughput"], environ={}))
        duration = f"--duration={args.duration}"
        eps = f"--endpoints={endpoints_file}"
        rate = f"--concurrency={args.concurrency}"
        watch = CpuWatch(sim.popen.pid)
        clients: dict[str, dict[str, Any]] = {}
        phases: dict[str, dict[str, float]] = {}

        watch.start()
        clients |= run_clients({"limit": ["-m", "benchmarks.limit", eps, duration, rate]}, logs)
        phases["limit"] = watch.stop()

        watch.start()
        engine = ["-m", "benchmarks.engine", f"--config={cfg['throughput']}", "--mode=throughput"]
        clients |= run_clients({"engine": [*engine, duration, rate]}, logs)
        phases["engine"] = watch.stop()

        # The side clients finish within the daemon's warm-up, never inside its window.
        idle_s = min(args.duration, 30.0)
        # Past the first poll of every endpoint too: the first after a start is always judged
        # in full (nothing is remembered across restarts), which is not the steady state.
        warmup = max(args.duration, args.interval) + SIDE_MARGIN
        daemon = start_client(
            "daemon",
            [
                *("-m", "benchmarks.engine", f"--config={cfg['daemon']}", "--mode=daemon"),
                duration,
                f"--warmup={warmup}",
            ],
            logs,
        )
        watch.start()
        clients |= run_clients(
            {
                "limit_paced": [*("-m", "benchmarks.limit", eps, duration), "--mode=paced"],
                "requests": ["-m", "benchmarks.naive", eps, duration],
                "idle": [
                    *("-m", "benchmarks.engine", f"--config={cfg['idle']}", "--mode=idle"),
                    f"--duration={idle_s}",
                ],
            },
            logs,
        )
        phases["side"] = watch.stop()
        page = _page_client(args, page_port, warmup, logs)
        watch.start()
        clients["daemon"] = collect("daemon", daemon, logs)
        phases["daemon"] = watch.stop()  # includes the rest of its warm-up
        clients |= {} if page is None else {"page": collect("page", page, logs)}
        latency = {phase: get_json(f"{hook}/stats/{phase}") for phase in ("throughput", "daemon")}
        replicas = None
        if args.postgres:
            pg, pg_latency, phases["postgres"], replicas = postgres_phases(
                args, stores, work, hook, logs, watch=watch
            )
            clients |= pg
            latency |= pg_latency

        if args.profile:
            _profile(args, engine, cfg["daemon"], logs)
    finally:
        sim.stop()
        receiver.stop()
    settings = {
        "stores": args.stores,
        "endpoints": endpoints,
        "latency_sim_s": args.latency,
        "duration_s": args.duration,
        "interval_s": args.interval,
        "concurrency": args.concurrency,
        "create_every_s": args.create_every,
        "page_client_every_s": args.page_every if args.page_client else None,
    }
    return summarise(settings, clients, latency, phases, replicas)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--stores", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds per client")
    parser.add_argument("--latency", type=float, default=0.15, help="simulated API latency, s")
    parser.add_argument("--interval", type=float, default=60.0, help="daemon poll interval, s")
    parser.add_argument("--concurrency", type=int, default=200, help="polls in flight, max rate")
    parser.add_argument(
        "--create-every",
        type=float,
        default=3600.0,
        help="mean s between new tasks per store (3600: busy; 300: the stress lifecycle)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--logs", type=Path, default=RESULTS / "logs", help="process logs")
    parser.add_argument("--profile", action="store_true", help="also pyinstrument the engine")
    parser.add_argument(
        "--postgres",
        default="",
        metavar="URL",
        help="also run the engine and the daemon with their state in this PostgreSQL "
        "(a schema of their own, dropped after); the server must run on this machine",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=3,
        help="with --postgres: then this many daemons sharing the stores through leases (0: none)",
    )
    parser.add_argument(
        "--page-client",
        action="store_true",
        help="serve the status page and API in the daemon phase, with a client reading them",
    )
    parser.add_argument("--page-every", type=float, default=1.0, help="page client pause, s")
    args = parser.parse_args(argv)
    if args.stores < 2:
        parser.error("--stores must be at least 2 (one per platform)")
    if args.postgres:
        why = problem(args.postgres)
        if why is not None:
            print(f"PostgreSQL does not answer ({why}): the PostgreSQL rows are skipped")
            args.postgres = ""
    raise_fd_limit()
    args.logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bulkwatch-bench-") as tmp:
        summary = run(args, Path(tmp), args.logs)
    summary["bench_wall_s"] = round(time.monotonic() - started, 1)
    print()
    print(render(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nfigures written to {args.out} ({summary['bench_wall_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
