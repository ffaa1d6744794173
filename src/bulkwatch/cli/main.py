"""The `bulkwatch` command: thin wrappers that build Settings and call one function each."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bulkwatch import __version__
from bulkwatch.common.redact import redacted_output
from bulkwatch.config import ConfigError, Settings, load_settings
from bulkwatch.config.discovery import ConfigFile, find_config, nothing_to_watch
from bulkwatch.store.base import SchemaTooNewError, StoreUnavailableError

__all__ = ["main"]

EXIT_OK, EXIT_POLL_FAILED, EXIT_CONFIG = 0, 1, 2
# The commands that poll stores or report on them: a config that watches none is an error.
_NEED_STORES = frozenset({"run", "once", "check-config", "status", "probe"})


def _parser(*, with_simulator: bool = True) -> argparse.ArgumentParser:
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
            help="YAML config file (default: $BULKWATCH_CONFIG, else ./bulkwatch.yaml, "
            "else /etc/bulkwatch/config.yaml)",
        )
        return p

    with_config(sub.add_parser("run", help="run the daemon until SIGINT/SIGTERM"))
    with_config(sub.add_parser("once", help="poll every store once and attempt due deliveries"))
    check = with_config(sub.add_parser("check-config", help="validate the config and summarise it"))
    check.add_argument(
        "--machine",
        action="store_true",
        help="also check this machine: the state directory is writable, the server port is "
        "free (unless this config's daemon runs) and command notifiers' programs exist",
    )
    notify_test = with_config(
        sub.add_parser("notify-test", help="send a sample event through one notifier")
    )
    notify_test.add_argument("name", metavar="NAME", help="the notifier's name in the config")
    status = with_config(sub.add_parser("status", help="tracked tasks per store"))
    status.add_argument("--store", help="only this store")
    status.add_argument("--json", action="store_true", help="JSON output")

    probe = with_config(
        sub.add_parser(
            "probe",
            help="how each store's platform behaves where its docs are silent (read-only)",
            description="Read-only: one line per platform behaviour bulkwatch depends on, and "
            "whether the config suits it. Exit 0 when everything suits, 1 when something does "
            "not, 2 on a config error. Attach the --json output to bug reports.",
        )
    )
    probe.add_argument("--store", help="only this store (probed even when disabled)")
    probe.add_argument("--json", action="store_true", help="JSON output")

    deliveries = sub.add_parser("deliveries", help="dead (or pending) deliveries")
    dsub = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlist = with_config(dsub.add_parser("list", help="list deliveries (dead by default)"))
    dlist.add_argument("--status", choices=["dead", "pending", "delivered"], default="dead")
    dlist.add_argument("--notifier")
    dlist.add_argument("--json", action="store_true")
    dretry = with_config(dsub.add_parser("retry", help="queue dead deliveries again"))
    dretry.add_argument("ids", nargs="*", type=int, help="delivery ids (default: all dead)")
    dretry.add_argument("--notifier")

    sim = sub.add_parser(
        "simulate",
        help="serve the built-in Shoplazza + Shopline simulator",
        description="Serve the built-in Shoplazza + Shopline simulator "
        "(also: python -m bulkwatch.simulator, with the same options).",
    )
    if with_simulator:
        # Its options come with the simulator's import: only paid for when asked for.
        from bulkwatch.simulator.options import add_options  # noqa: PLC0415

        add_options(sim)

    demo = sub.add_parser("demo", help="simulator + daemon in one process, events on the console")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.add_argument("--state", type=Path, default=None, help="state database (default: temp)")
    return parser


def _load(config: ConfigFile, command: str) -> Settings | None:
    """The settings, or None after one `config error:` line per problem on stderr."""
    try:
        settings = load_settings(config.path)
    except ConfigError as exc:
        problems = exc.problems
    else:
        empty = nothing_to_watch(settings, config) if command in _NEED_STORES else None
        if empty is None:
            return settings
        problems = [empty]
    for line in problems:
        print(f"config error: {line}", file=sys.stderr)
    return None


def _reload(config: ConfigFile) -> Settings:
    """The settings again from the file the daemon started from (SIGHUP); `ConfigError`
    when they are invalid or watch nothing, as at start."""
    settings = load_settings(config.path)
    if (empty := nothing_to_watch(settings, config)) is not None:
        raise ConfigError([empty])
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bulkwatch` console script. No configured secret reaches its
    output, whatever printed it."""
    words = sys.argv[1:] if argv is None else list(argv)
    args = _parser(with_simulator="simulate" in words).parse_args(words)
    with redacted_output():
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    from bulkwatch.cli import commands  # noqa: PLC0415 - keeps `--help` fast

    if args.command == "simulate":
        return commands.simulate(args)
    if args.command == "demo":
        return commands.demo(args)
    config = find_config(args.config, os.environ)
    settings = _load(config, args.command)
    if settings is None:
        return EXIT_CONFIG
    if config.searched and args.command not in {"run", "once", "check-config"}:
        # run and once log it, check-config prints it; the others say it here.
        print(f"bulkwatch: using {config.describe()}", file=sys.stderr)
    try:
        if args.command == "check-config":
            return commands.check_config(settings, config, machine=args.machine)
        if args.command == "notify-test":
            return asyncio.run(commands.notify_test(settings, args.name))
        if args.command == "run":
            return commands.run(settings, config, load=lambda: _reload(config))
        if args.command == "once":
            return commands.once(settings, config)
        if args.command == "status":
            return asyncio.run(commands.status(settings, args.store, as_json=args.json))
        if args.command == "probe":
            return asyncio.run(commands.probe(settings, args.store, as_json=args.json))
        if args.command == "deliveries" and args.action == "list":
            return asyncio.run(
                commands.deliveries_list(settings, args.status, args.notifier, as_json=args.json)
            )
        if args.command == "deliveries" and args.action == "retry":
            return asyncio.run(commands.deliveries_retry(settings, args.ids, args.notifier))
    except commands.NoStateError as exc:
        print(f"bulkwatch: {exc}", file=sys.stderr)
        return EXIT_POLL_FAILED
    except KeyboardInterrupt:
        return 130
    except (StoreUnavailableError, SchemaTooNewError) as exc:  # their messages hide passwords
        print(f"bulkwatch: state.url: {exc}", file=sys.stderr)
        return EXIT_POLL_FAILED
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
