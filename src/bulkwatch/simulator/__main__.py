"""`python -m bulkwatch.simulator`: run the simulator until interrupted.

The first line printed is `bulkwatch simulator listening on <url>`, so a parent process that
asked for `--port 0` can read the bound port from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
from collections.abc import Sequence

from bulkwatch.simulator.runner import serve, until_signalled
from bulkwatch.simulator.variants import add_variant_arguments, pop_variants


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and serve until SIGINT or SIGTERM; exit 1 if the port cannot be bound."""
    parser = argparse.ArgumentParser(prog="python -m bulkwatch.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--stores", type=int, default=2, help="split between the platforms")
    parser.add_argument("--shoplazza", type=int, default=None)
    parser.add_argument("--shopline", type=int, default=None)
    parser.add_argument("--step", type=float, default=2.0, help="seconds per lifecycle step")
    parser.add_argument("--create-every", type=float, default=None)
    parser.add_argument("--expire-after", type=float, default=None)
    parser.add_argument("--history", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--manual", dest="auto", action="store_false", help="no automatic driver")
    parser.add_argument(
        "--config-out",
        dest="config_path",
        metavar="CONFIG_OUT",
        default=None,
        help="write a bulkwatch config here",
    )
    add_variant_arguments(parser)
    # Every other option's `dest` is the name of a `serve` parameter.
    args = parser.parse_args(argv)
    options = vars(args).copy()
    variants = pop_variants(options)
    run = serve(**options, variants=variants, announce=functools.partial(print, flush=True))
    code = 0
    # A SIGINT before `until_signalled` installs its handler comes out as KeyboardInterrupt.
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(until_signalled(run, args.host, args.port))
    if code:
        raise SystemExit(code)  # here, not in __name__ == "__main__": benchmarks call main()


if __name__ == "__main__":
    main()
