"""Starting the simulator: `run_simulator` in-process, `serve` until cancelled, and
`until_signalled` around it for the command lines (`bulkwatch simulate`, `python -m`; their
options are in `options`)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bulkwatch.model import Platform
from bulkwatch.simulator.api import make_app
from bulkwatch.simulator.core import Simulator
from bulkwatch.simulator.driver import Driver, DriverConfig
from bulkwatch.simulator.model import StoreSpec, make_stores
from bulkwatch.simulator.state import DEFAULT_EXPIRE_AFTER
from bulkwatch.simulator.variants import Variants

__all__ = ["SIM_APP_KEY", "run_simulator", "serve", "until_signalled", "write_config"]

SIM_APP_KEY = "sim-app"  # the app `serve` installs on its Shopline stores under expiring tokens

Sleep = Callable[[float], Awaitable[None]]


def _url(host: str, port: int) -> str:
    # A wildcard bind is reachable on loopback; the URL is for clients, not for bind().
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def _driving(
    sim: Simulator, config: DriverConfig | None, sleep: Sleep
) -> AsyncIterator[None]:
    if config is None:
        yield
        return
    driver = sim.driver = Driver(sim, config, sleep=sleep)
    driver.start()  # history exists before the caller's first request
    task = asyncio.create_task(driver.run(), name="bulkwatch-simulator-driver")
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled too: let it through


@asynccontextmanager
async def run_simulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    stores: Iterable[StoreSpec] = (),
    seed: int | None = None,
    clock: Callable[[], float] | None = None,
    latency: float = 0.0,
    expire_after: float = DEFAULT_EXPIRE_AFTER,
    variants: Variants | None = None,
    driver: DriverConfig | None = None,
    driver_sleep: Sleep = asyncio.sleep,
    backlog: int = 1024,
    shutdown_timeout: float = 1.0,
) -> AsyncIterator[Simulator]:
    """Serve the simulated stores on `host:port` (0: any free port) while the block runs.

    Yields the `Simulator`: `sim.url` is the bound address, `sim.base_url(store)` a store's
    `base_url`, `sim.store_configs()` the `stores:` of a bulkwatch config. With `driver`,
    tasks move on their own (`sim.driver`), ticking every `driver.tick_seconds` through
    `driver_sleep`; without it, only the manual API and control routes change anything.
    On exit, requests still in flight (a `slow` fault) get `shutdown_timeout` seconds.
    `variants` choose how the platforms behave where their docs are silent.
    """
    sim = Simulator(
        stores,
        seed=seed,
        clock=clock,
        latency=latency,
        expire_after=expire_after,
        variants=variants,
    )
    # No access log: at 10,000 stores it would cost more than answering.
    runner = web.AppRunner(
        make_app(sim), access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=backlog)
        await site.start()
        sim.attach(_url(host, int(runner.addresses[0][1])))
        async with _driving(sim, driver, driver_sleep):
            yield sim
    finally:
        await runner.cleanup()


def write_config(
    path: str | Path,
    sim: Simulator,
    *,
    interval: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bulkwatch YAML config watching every simulated store; returns the path.

    `extra` adds top-level fields (e.g. `state`, `notifiers`, `instance`).
    """
    doc: dict[str, Any] = dict(extra or {})
    if interval is not None:
        doc.setdefault("defaults", {})["interval"] = interval
    doc["stores"] = sim.store_configs()
    out = Path(path)
    header = f"# Written by the bulkwatch simulator at {sim.url}; tokens are fake.\n"
    out.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


async def serve(
    host: str = "127.0.0.1",
    port: int = 8081,
    *,
    stores: int = 4,
    shoplazza: int | None = None,
    shopline: int | None = None,
    step: float = 2.0,
    create_every: float | None = None,
    fail_probability: float = 0.1,
    supersede_probability: float = 0.1,
    expire_after: float | None = None,
    history: int = 2,
    seed: int | None = None,
    latency: float = 0.0,
    auto: bool = True,
    config_path: str | Path | None = None,
    poll_interval: float | None = None,
    variants: Variants | None = None,
    announce: Callable[[str], object] | None = print,
    ready: Callable[[Simulator], object] | None = None,
) -> None:
    """Run the simulator until cancelled: the body of `bulkwatch simulate`.

    `stores` are split between the platforms (Shoplazza gets the odd one) unless `shoplazza`
    / `shopline` give the counts. With `auto`, a task moves one step every `step` seconds,
    a new task comes every `create_every` (default 10 steps) per store, and a completed
    Shopline result expires after `expire_after` (default 30 steps). `config_path` gets a
    ready bulkwatch config (polling every `poll_interval`, default `step`). `announce`
    receives the human-readable lines (the URL first); `ready` receives the Simulator.
    `variants`: how the platforms behave where their docs are silent.
    """
    n_lazza = (stores + 1) // 2 if shoplazza is None else shoplazza
    n_line = stores // 2 if shopline is None else shopline
    # Built before binding, so bad values fail without touching the port.
    config = DriverConfig(
        step_seconds=step,
        create_every=10 * step if create_every is None else create_every,
        fail_probability=fail_probability,
        supersede_probability=supersede_probability,
        history=history,
        tick_seconds=min(1.0, step / 4),
    )
    specs = make_stores(n_lazza, n_line)
    if variants is not None and variants.token_lifetime is not None:
        # Expiring tokens need renewing: every Shopline store has the app installed.
        specs = [
            replace(s, app_key=SIM_APP_KEY) if s.platform is Platform.SHOPLINE else s for s in specs
        ]
    async with run_simulator(
        host,
        port,
        stores=specs,
        seed=seed,
        latency=latency,
        expire_after=30 * step if expire_after is None else expire_after,
        variants=variants,
    ) as sim:
        if auto:
            sim.driver = Driver(sim, config)
            sim.driver.start()
        if announce is not None:
            announce(f"bulkwatch simulator listening on {sim.url}")
            announce(f"  {n_lazza} Shoplazza stores (lazza-1..), {n_line} Shopline (line-1..)")
            announce(f"  platform variants: {sim.variants.describe()}")
        if config_path is not None:
            written = write_config(config_path, sim, interval=poll_interval or step)
            if announce is not None:
                announce(f"  bulkwatch config written to {written}")
        if ready is not None:
            ready(sim)
        # Awaiting the driver itself (not a task beside it) surfaces a crash at once.
        if sim.driver is not None:
            await sim.driver.run()
        await asyncio.Event().wait()  # until cancelled


async def until_signalled(run: Awaitable[None], host: str, port: int) -> int:
    """Await `run` (a `serve(host, port, ...)`) until SIGINT or SIGTERM: a command line's body.

    Returns 0 once a signal stopped it; 1, after one line on stderr, when `host:port` cannot
    be bound. A cancel that no signal asked for propagates.
    """
    task = asyncio.current_task()
    stopping = asyncio.Event()

    def stop() -> None:
        stopping.set()
        if task is not None:
            task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await run
    except asyncio.CancelledError:
        if not stopping.is_set():
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"bulkwatch: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return 1
    return 0
