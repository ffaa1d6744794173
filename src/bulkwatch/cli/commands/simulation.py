"""`bulkwatch simulate` and `bulkwatch demo`: the built-in simulator, alone or watched by the
daemon in the same process."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bulkwatch.cli.commands.daemon import serve_daemon, stop_on_signals
from bulkwatch.config import load_settings
from bulkwatch.telemetry.logs import configure_logging

__all__ = ["demo", "simulate"]


def simulate(args: argparse.Namespace) -> int:
    """`bulkwatch simulate`: serve the simulator until SIGINT/SIGTERM, then exit 0."""
    from bulkwatch.simulator.options import main_from_args  # noqa: PLC0415 - only here

    return main_from_args(args)


def demo(args: argparse.Namespace) -> int:
    """`bulkwatch demo`: the simulator and the daemon in one process, events on the console."""
    configure_logging("info", "console")
    with tempfile.TemporaryDirectory(prefix="bulkwatch-demo-") as tmp:
        state = (args.state or Path(tmp) / "demo.db").resolve()
        asyncio.run(_demo(Path(tmp), state, args.duration))
    return 0


async def _demo(tmp: Path, state: Path, duration: float | None) -> None:
    from bulkwatch.simulator import Simulator, serve, write_config  # noqa: PLC0415

    stop = stop_on_signals()
    loop = asyncio.get_running_loop()
    if duration is not None:
        loop.call_later(duration, stop.set)
    started: asyncio.Future[Simulator] = loop.create_future()
    async with asyncio.TaskGroup() as tg:
        sim_task = tg.create_task(
            serve(
                port=0,
                shoplazza=2,
                shopline=2,
                step=1.5,
                create_every=6.0,
                seed=None,
                announce=lambda line: print(line, flush=True),
                ready=started.set_result,
            )
        )
        sim = await started
        config = write_config(
            tmp / "demo.yaml",
            sim,
            interval=1.0,
            extra={
                "instance": "demo",
                "state": {"url": f"sqlite:///{state}"},
                "server": {"enabled": False},
                # `log.events` (on by default) shows each event in one line: no notifier needed.
                "log": {"format": "console"},
            },
        )
        print("bulkwatch demo: watching 4 simulated stores; press Ctrl-C to stop", flush=True)
        await serve_daemon(load_settings(config, environ={}), stop)
        sim_task.cancel()
