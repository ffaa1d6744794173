"""`python -m bulkwatch.simulator`: run the simulator until interrupted.

The first line printed is `bulkwatch simulator listening on <url>`, so a parent process that
asked for `--port 0` can read the bound port from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
from collections.abc import Coroutine, Sequence
from typing import Any

from bulkwatch.simulator.runner import serve


async def _until_signalled(run: Coroutine[Any, Any, None]) -> None:
    """Run `serve` until SIGTERM (or SIGINT, which asyncio.run turns into a cancel)."""
    task = asyncio.current_task()
    stopping = asyncio.Event()
    if task is not None:

        def stop() -> None:
            stopping.set()
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
    try:
        await run
    except asyncio.CancelledError:
        if not stopping.is_set():
            raise


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and serve until SIGINT or SIGTERM."""
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
    parser.add_argument("--manual", action="store_true", help="no automatic driver")
    parser.add_argument("--config-out", default=None, help="write a bulkwatch config here")
    args = parser.parse_args(argv)
    run = serve(
        args.host,
        args.port,
        stores=args.stores,
        shoplazza=args.shoplazza,
        shopline=args.shopline,
        step=args.step,
        create_every=args.create_every,
        expire_after=args.expire_after,
        history=args.history,
        seed=args.seed,
        latency=args.latency,
        auto=not args.manual,
        config_path=args.config_out,
        announce=functools.partial(print, flush=True),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_until_signalled(run))


if __name__ == "__main__":
    main()
