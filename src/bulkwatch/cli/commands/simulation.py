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


async def simulate(args: argparse.Namespace) -> int:
    """`bulkwatch simulate`: serve the simulator until SIGINT/SIGTERM, then exit 0."""
    from bulkwatch.simulator.runner import serve, until_signalled  # noqa: PLC0415 - only here
    from bulkwatch.simulator.variants import variants_from_arguments  # noqa: PLC0415

    run = serve(
        args.host,
        args.port,
        shoplazza=args.shoplazza,
        shopline=args.shopline,
        step=args.step,
        latency=args.latency,
        seed=args.seed,
        config_path=args.write_config,
        variants=variants_from_arguments(args),
        announce=lambda line: print(line, flush=True),
    )
    return await until_signalled(run, args.host, args.port)


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
                "log": {"format": "console"},
                "notifiers": [{"name": "console", "type": "log", "format": "line"}],
            },
        )
        print("bulkwatch demo: watching 4 simulated stores; press Ctrl-C to stop", flush=True)
        await serve_daemon(load_settings(config, environ={}), stop)
        sim_task.cancel()
