"""`python -m bulkwatch.simulator`: run the simulator until interrupted; the same command as
`bulkwatch simulate`, with the same options (`bulkwatch.simulator.options`).

The first line printed is `bulkwatch simulator listening on <url>`, so a parent process that
asked for `--port 0` can read the bound port from it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bulkwatch.simulator.options import add_options, main_from_args


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and serve until SIGINT or SIGTERM; exit 1 if the port cannot be bound."""
    parser = argparse.ArgumentParser(
        prog="python -m bulkwatch.simulator",
        description="Serve the built-in Shoplazza + Shopline simulator (as `bulkwatch simulate`).",
    )
    add_options(parser)
    code = main_from_args(parser.parse_args(argv))
    if code:
        raise SystemExit(code)  # here, not in __name__ == "__main__": benchmarks call main()


if __name__ == "__main__":
    main()
