"""The `bulkwatch` command: thin wrappers that build Settings and call one function each."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from bulkwatch import __version__
from bulkwatch.common.redact import redacted_output
from bulkwatch.config import ConfigError, Settings, load_settings

__all__ = ["main"]

EXIT_OK, EXIT_POLL_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulkwatch",
        description="Watch Shoplazza and Shopline background tasks and deliver every change.",
    )
    parser.add_argument("--version", action="version", version=f"bulkwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            "-c",
            type=Path,
            default=None,
            help="YAML config file (default: $BULKWATCH_CONFIG)",
        )
        return p

    with_config(sub.add_parser("run", help="run the daemon until SIGINT/SIGTERM"))
    with_config(sub.add_parser("once", help="poll every store once and attempt due deliveries"))
    with_config(sub.add_parser("check-config", help="validate the config and summarise it"))
    notify_test = with_config(
        sub.add_parser("notify-test", help="send a sample event through one notifier")
    )
    notify_test.add_argument("name", metavar="NAME", help="the notifier's name in the config")
    status = with_config(sub.add_parser("status", help="tracked tasks per store"))
    status.add_argument("--store", help="only this store")
    status.add_argument("--json", action="store_true", help="JSON output")

    deliveries = sub.add_parser("deliveries", help="dead (or pending) deliveries")
    dsub = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlist = with_config(dsub.add_parser("list", help="list deliveries (dead by default)"))
    dlist.add_argument("--status", choices=["dead", "pending", "delivered"], default="dead")
    dlist.add_argument("--notifier")
    dlist.add_argument("--json", action="store_true")
    dretry = with_config(dsub.add_parser("retry", help="queue dead deliveries again"))
    dretry.add_argument("ids", nargs="*", type=int, help="delivery ids (default: all dead)")
    dretry.add_argument("--notifier")

    sim = sub.add_parser("simulate", help="serve the built-in Shoplazza + Shopline simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8081)
    sim.add_argument("--shoplazza", type=int, default=2, help="Shoplazza stores")
    sim.add_argument("--shopline", type=int, default=2, help="Shopline stores")
    sim.add_argument("--step", type=float, default=3.0, help="seconds between task steps")
    sim.add_argument("--latency", type=float, default=0.0, help="seconds added per response")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--write-config", type=Path, help="write a bulkwatch config for it here")

    demo = sub.add_parser("demo", help="simulator + daemon in one process, events on the console")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument("--state", type=Path, default=None, help="state database (default: temp)")
    return parser


def _load(path: Path | None) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bulkwatch` console script. No configured secret reaches its
    output, whatever printed it."""
    args = _parser().parse_args(argv)
    with redacted_output():
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    from bulkwatch.cli import commands  # noqa: PLC0415 - keeps `--help` fast

    if args.command == "simulate":
        return asyncio.run(commands.simulate(args))
    if args.command == "demo":
        return commands.demo(args)
    settings = _load(args.config)
    if settings is None:
        return EXIT_CONFIG
    try:
        if args.command == "check-config":
            print(commands.summarise(settings, args.config))
            return EXIT_OK
        if args.command == "notify-test":
            return asyncio.run(commands.notify_test(settings, args.name))
        if args.command == "run":
            return commands.run(settings, load=lambda: load_settings(args.config))
        if args.command == "once":
            return commands.once(settings)
        if args.command == "status":
            return asyncio.run(commands.status(settings, args.store, as_json=args.json))
        if args.command == "deliveries" and args.action == "list":
            return asyncio.run(
                commands.deliveries_list(settings, args.status, args.notifier, as_json=args.json)
            )
        if args.command == "deliveries" and args.action == "retry":
            return asyncio.run(commands.deliveries_retry(settings, args.ids, args.notifier))
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
