"""The simulator's command line, one set of options for both front-ends: `bulkwatch simulate`
and `python -m bulkwatch.simulator` call `add_options` on their parser and `serve_from_args`.

Each option's `dest` is the name of a `serve` parameter; `--help` shows every default. A new
option goes here, once, and reaches both commands.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from pathlib import Path
from typing import Any

from bulkwatch.simulator.runner import serve, until_signalled
from bulkwatch.simulator.variants import add_variant_arguments, variants_from_arguments

__all__ = ["add_options", "main_from_args", "serve_arguments", "serve_from_args"]


# The `dest` of every option above: a new option adds its name here too.
_SERVE_OPTIONS = (
    *("host", "port", "latency", "stores", "shoplazza", "shopline", "auto", "step"),
    *("create_every", "expire_after", "history", "fail_probability", "supersede_probability"),
    *("seed", "config_path", "poll_interval"),
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add every simulator option to `parser`."""
    net = parser.add_argument_group("listening")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    net.add_argument(
        "--port", type=int, default=8081, help="port; 0 picks a free one (default: %(default)s)"
    )
    net.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="added to every API response (default: %(default)s)",
    )
    stores = parser.add_argument_group("stores")
    stores.add_argument(
        "--stores",
        type=int,
        default=4,
        metavar="N",
        help="stores, split between the platforms, Shoplazza getting the odd one "
        "(default: %(default)s: lazza-1, lazza-2, line-1, line-2)",
    )
    stores.add_argument(
        "--shoplazza", type=int, default=None, metavar="N", help="Shoplazza stores (default: half)"
    )
    stores.add_argument(
        "--shopline", type=int, default=None, metavar="N", help="Shopline stores (default: half)"
    )
    life = parser.add_argument_group("task lifecycles")
    life.add_argument(
        "--manual",
        dest="auto",
        action="store_false",
        help="no automatic lifecycles: tasks change only through the /_sim control API",
    )
    life.add_argument(
        "--step",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="between two lifecycle steps of a task (default: %(default)s)",
    )
    life.add_argument(
        "--create-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="mean time between new tasks of a store (default: 10 steps)",
    )
    life.add_argument(
        "--expire-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a completed Shopline result's lifetime (default: 30 steps)",
    )
    life.add_argument(
        "--history",
        type=int,
        default=2,
        metavar="N",
        help="finished tasks each Shoplazza store has at start; Shopline stores get one per "
        "operation type (default: %(default)s)",
    )
    life.add_argument(
        "--fail-probability",
        type=float,
        default=0.1,
        metavar="P",
        help="chance that a running Shopline task fails (default: %(default)s)",
    )
    life.add_argument(
        "--supersede-probability",
        type=float,
        default=0.1,
        metavar="P",
        help="chance that a new Shopline task replaces an unfinished one (default: %(default)s)",
    )
    life.add_argument(
        "--seed",
        type=int,
        default=None,
        help="makes lifecycles and faults reproducible; task ids still never repeat across "
        "runs (default: none, a different run each time)",
    )
    out = parser.add_argument_group("a config for bulkwatch")
    out.add_argument(
        "--write-config",
        dest="config_path",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a bulkwatch config watching every simulated store (default: none)",
    )
    out.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the written config's polling interval (default: --step)",
    )
    add_variant_arguments(parser)


def serve_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The `serve` keyword arguments of parsed options (only the simulator's own)."""
    return {name: getattr(args, name) for name in _SERVE_OPTIONS}


async def serve_from_args(args: argparse.Namespace) -> int:
    """Serve as the options say until SIGINT/SIGTERM (0), or 1 when the port is taken."""
    run = serve(
        **serve_arguments(args),
        variants=variants_from_arguments(args),
        announce=functools.partial(print, flush=True),
    )
    return await until_signalled(run, args.host, args.port)


def main_from_args(args: argparse.Namespace) -> int:
    """`serve_from_args` in a fresh event loop; a SIGINT before its handler is 0 too."""
    try:
        return asyncio.run(serve_from_args(args))
    except KeyboardInterrupt:
        return 0
