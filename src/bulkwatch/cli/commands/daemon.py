"""`bulkwatch run` and `bulkwatch once`: the daemon, until stopped or for one round."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Mapping

import structlog

from bulkwatch.cli.commands.preflight import check_machine
from bulkwatch.common.urls import without_password
from bulkwatch.config import Settings
from bulkwatch.config.discovery import ConfigFile
from bulkwatch.daemon.collector import freeze_startup_objects, tuned_collector
from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.health import liveness
from bulkwatch.daemon.reload import reload_on_request
from bulkwatch.daemon.sdnotify import SystemdNotifier, supervised
from bulkwatch.daemon.web import start_web
from bulkwatch.store.base import (
    SchemaTooNewError,
    StateInUseError,
    StoreCorruptError,
    StoreUnavailableError,
)
from bulkwatch.telemetry.logs import configure_logging

__all__ = [
    "EXIT_STATE_CORRUPT",
    "EXIT_STATE_IN_USE",
    "StartupError",
    "once",
    "preflight",
    "run",
    "serve_daemon",
    "stop_on_signals",
]

# `run` and `once` when another process holds the state file, and `run` when the state
# database fails its integrity check (see docs/operations.md).
EXIT_CANNOT_START, EXIT_CONFIG = 1, 2
EXIT_STATE_IN_USE = 3
EXIT_STATE_CORRUPT = 4


_log = structlog.get_logger("bulkwatch")


class StartupError(Exception):
    """The daemon could not start (port taken, state database unreadable): one clear line."""


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT and SIGTERM set, for the running loop to stop on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def reload_on_sighup() -> asyncio.Event:
    """An event that SIGHUP sets: reload the config (its default action would end the
    process, so the handler goes in before anything else starts)."""
    requested = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, requested.set)
    return requested


async def serve_daemon(
    settings: Settings,
    stop: asyncio.Event,
    *,
    ready: Callable[[], None] | None = None,
    systemd: SystemdNotifier | None = None,
    config: str | None = None,
    reload: tuple[asyncio.Event, Callable[[], Settings]] | None = None,
) -> None:
    """The daemon: the engine, its scheduler and the metrics server, until `stop` is set.
    With `systemd`: READY=1 once the first schedule is armed, watchdog pings while alive,
    STOPPING=1 when `stop` is set. With `reload` (an event and a loader): each time the event
    is set, the config is loaded again and applied (`Engine.reload`)."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            engine = await stack.enter_async_context(Engine(settings))
        except (StoreUnavailableError, SchemaTooNewError) as exc:  # each names the store
            raise StartupError(f"state.url: {exc}") from exc
        except (OSError, sqlite3.Error) as exc:
            url = without_password(settings.state.url)
            raise StartupError(f"state.url: cannot open {url}: {exc}") from exc
        runner = None
        if settings.server.enabled:
            host, port = settings.server.host, settings.server.port
            try:
                runner = await start_web(engine, host, port)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise StartupError(f"server: cannot listen on {host}:{port}: {reason}") from exc
        status = f"watching {len(engine.sources)} stores ({len(engine.endpoints)} endpoints)"
        if reload is not None:
            reloader = asyncio.create_task(
                reload_on_request(*reload, engine.reload, engine.metrics), name="config reload"
            )
            stack.push_async_callback(_cancel, reloader)
        try:
            async with supervised(
                systemd, stop, lambda: liveness(engine.status).problems, status
            ) as sd_ready:

                def on_ready() -> None:
                    sd_ready()
                    if ready is not None:
                        ready()

                await engine.serve(
                    stop, grace=settings.shutdown_grace, ready=on_ready, config=config
                )
        finally:
            if runner is not None:
                await runner.cleanup()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def preflight(settings: Settings, *, server: bool) -> int | None:
    """The machine checks before anything is created: None when all pass, else the exit
    status, after one line per problem on stderr."""
    report = check_machine(settings, server=server)
    for line in report.problems:
        print(f"config error: {line}", file=sys.stderr)
    if report.problems:
        return EXIT_CONFIG
    if report.in_use is not None:
        print(f"bulkwatch: {report.in_use}", file=sys.stderr)
        return EXIT_STATE_IN_USE
    if report.port is not None:
        print(f"bulkwatch: {report.port}", file=sys.stderr)
        return EXIT_CANNOT_START
    return None


def run(
    settings: Settings,
    config: ConfigFile | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    load: Callable[[], Settings] | None = None,
) -> int:
    """`bulkwatch run`: until SIGINT/SIGTERM, then drain and exit 0; SIGHUP reloads the
    config with `load`, which reads the file the daemon started from (without it, SIGHUP is
    ignored). `environ` (default: the process's) is read once here, for systemd's
    `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`."""
    if (refused := preflight(settings, server=True)) is not None:
        return refused
    configure_logging(settings.log.level, settings.log.format)
    env = os.environ if environ is None else environ
    systemd = SystemdNotifier.from_environ(env, os.getpid())

    async def main() -> None:
        stop = stop_on_signals()
        requested = reload_on_sighup()
        with tuned_collector():
            await serve_daemon(
                settings,
                stop,
                systemd=systemd,
                ready=freeze_startup_objects,
                config=None if config is None else config.describe(),
                reload=None if load is None else (requested, load),
            )

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"bulkwatch: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except StateInUseError as exc:
        print(f"bulkwatch: {exc}", file=sys.stderr)
        return EXIT_STATE_IN_USE
    except StoreCorruptError as exc:
        print(f"bulkwatch: {exc}", file=sys.stderr)
        return EXIT_STATE_CORRUPT
    return 0


def once(settings: Settings, config: ConfigFile | None = None) -> int:
    """`bulkwatch once`: 0 when every poll succeeded, 1 when any failed."""
    if (refused := preflight(settings, server=False)) is not None:
        return refused
    # One round of every store is no replica's work: it runs as the database's one daemon
    # (refused while any daemon, replica or not, runs against it).
    settings = settings.model_copy(
        update={"state": settings.state.model_copy(update={"replicas": False})}
    )
    configure_logging(settings.log.level, settings.log.format)
    if config is not None and config.searched:
        _log.info("using config", file=config.describe())

    async def main() -> bool:
        async with Engine(settings) as engine:
            ok = await engine.poll_all_once()
            await engine.deliver_due_once()
            return ok

    try:
        return 0 if asyncio.run(main()) else 1
    except StateInUseError as exc:
        print(f"bulkwatch: {exc}", file=sys.stderr)
        return EXIT_STATE_IN_USE
