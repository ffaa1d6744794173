"""The PostgreSQL phases of `make bench`: the engine at max rate and the daemon with their
state in PostgreSQL, then the replicas sharing the stores (`benchmarks.replicas`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from benchmarks.common import SIDE_MARGIN, get_json
from benchmarks.configs import write_config
from benchmarks.pgserver import fresh_schema, with_params
from benchmarks.procs import CpuWatch, run_clients
from benchmarks.replicas import run_replicas

__all__ = ["postgres_phases"]


def postgres_phases(
    args: argparse.Namespace,
    stores: list[dict[str, Any]],
    work: Path,
    hook: str,
    logs: Path,
    *,
    watch: CpuWatch,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, float], dict[str, Any] | None]:
    """Run them; return the clients' figures, their detection-to-delivery latencies, what the
    machine did meanwhile, and the replicas' figures (None without `--replicas`)."""
    watch.start()
    clients, replicas = _phases(args, stores, work, hook, logs)
    machine = watch.stop()
    names = ("throughput_pg", "daemon_pg", *(("replicas",) if replicas else ()))
    latency = {p: get_json(f"{hook}/stats/{p}") for p in names}
    return clients, latency, machine, replicas


def _phases(
    args: argparse.Namespace, stores: list[dict[str, Any]], work: Path, hook: str, logs: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The engine at max rate, then the daemon, with their state in PostgreSQL (a schema of
    their own, dropped after): the same phases as SQLite's, one after the other; then
    `--replicas` daemons sharing the stores (`benchmarks.replicas`), on the same schema."""
    clients: dict[str, dict[str, Any]] = {}
    replicas = None
    with fresh_schema(args.postgres) as url:
        cfg = {
            phase: write_config(
                work / f"{phase}.yaml",
                stores,
                with_params(url, application_name=f"bulkwatch-bench-{phase}"),
                f"{hook}/hook/{phase}",
                args.interval,
            )
            for phase in ("throughput_pg", "daemon_pg")
        }
        engine = ["-m", "benchmarks.engine", f"--config={cfg['throughput_pg']}"]
        clients |= run_clients(
            {
                "engine_pg": [
                    *engine,
                    "--mode=throughput",
                    f"--duration={args.duration}",
                    f"--concurrency={args.concurrency}",
                ]
            },
            logs,
        )
        warmup = max(args.duration, args.interval) + SIDE_MARGIN
        measure = [f"--duration={args.duration}", f"--warmup={warmup}"]
        daemon = [
            *("-m", "benchmarks.engine", f"--config={cfg['daemon_pg']}", "--mode=daemon"),
            *measure,
        ]
        clients |= run_clients({"daemon_pg": daemon}, logs)
        if args.replicas:
            # On the state the single daemon left: the same steady state, shared. Measured
            # over whole intervals: a replica's polls are not spread evenly over the interval
            # (stores it claims are first polled within a few seconds, and keep that phase),
            # so a shorter window would count a burst, or miss it.
            whole = args.interval * math.ceil(args.duration / args.interval)
            replicas = run_replicas(
                url,
                count=args.replicas,
                write=lambda name, state: write_config(
                    work / name, stores, state, f"{hook}/hook/replicas", args.interval
                ),
                stores=len(stores),
                logs=logs,
                daemon_args=[f"--duration={whole}", f"--warmup={warmup}"],
            )
    return clients, replicas
