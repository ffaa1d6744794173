"""What each CLI command does, as plain functions of Settings (the CLI only parses)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from bulkwatch.common.urls import without_password
from bulkwatch.config import Settings, load_settings, resolve_stores
from bulkwatch.daemon.collector import freeze_startup_objects, tuned_collector
from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.health import liveness
from bulkwatch.daemon.sdnotify import SystemdNotifier, supervised
from bulkwatch.daemon.web import start_web
from bulkwatch.model import isoformat, utcnow
from bulkwatch.store.base import (
    DeliveryStatus,
    SchemaTooNewError,
    StateStore,
    StoreUnavailableError,
)
from bulkwatch.store.factory import open_store
from bulkwatch.telemetry.logs import configure_logging

__all__ = [
    "deliveries_list",
    "deliveries_retry",
    "notify_test",
    "once",
    "run",
    "serve_daemon",
    "status",
    "summarise",
]


class StartupError(Exception):
    """The daemon could not start (port taken, state database unreadable): one clear line."""


def summarise(settings: Settings, path: Path | None) -> str:
    """A readable summary of valid settings, without any secret."""
    lines = [
        f"config OK: {path}" if path else "config OK",
        f"instance: {settings.instance}",
        f"state: {without_password(settings.state.url)}",
        "server: "
        + (
            f"http://{settings.server.host}:{settings.server.port}"
            if settings.server.enabled
            else "disabled"
        ),
        f"stores: {len(settings.stores)}",
    ]
    for resolved in resolve_stores(settings, enabled_only=False):
        store = resolved.config
        host = urlsplit(store.url_base()).netloc
        token = "file " + str(store.access_token_file) if store.access_token_file else "inline"
        state = "" if store.enabled else " (disabled)"
        lines.append(
            f"  - {store.name}: {store.platform} {host} endpoints={','.join(store.endpoints)} "
            f"interval={resolved.interval:g}s token={token}{state}"
        )
    lines.append(f"notifiers: {len(settings.notifiers) or 'none (events are logged)'}")
    for n in settings.notifiers:
        target = ""
        url = getattr(n, "url", None)
        if isinstance(url, str):
            target = f" -> {urlsplit(url).scheme}://{urlsplit(url).hostname}"
        lines.append(
            f"  - {n.name}: {n.type}{target} events={','.join(n.events)} "
            f"stores={','.join(n.stores)}"
        )
    return "\n".join(lines)


async def serve_daemon(
    settings: Settings,
    stop: asyncio.Event,
    *,
    ready: Callable[[], None] | None = None,
    systemd: SystemdNotifier | None = None,
) -> None:
    """The daemon: the engine, its scheduler and the metrics server, until `stop` is set.
    With `systemd`: READY=1 once the first schedule is armed, watchdog pings while alive,
    STOPPING=1 when `stop` is set."""
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
        try:
            async with supervised(
                systemd, stop, lambda: liveness(engine.status).problems, status
            ) as sd_ready:

                def on_ready() -> None:
                    sd_ready()
                    if ready is not None:
                        ready()

                await engine.serve(stop, grace=settings.shutdown_grace, ready=on_ready)
        finally:
            if runner is not None:
                await runner.cleanup()


def run(settings: Settings, environ: Mapping[str, str] | None = None) -> int:
    """`bulkwatch run`: until SIGINT/SIGTERM, then drain and exit 0. `environ` (default: the
    process's) is read once here, for systemd's `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`."""
    configure_logging(settings.log.level, settings.log.format)
    env = os.environ if environ is None else environ
    systemd = SystemdNotifier.from_environ(env, os.getpid())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with tuned_collector():
            await serve_daemon(settings, stop, systemd=systemd, ready=freeze_startup_objects)

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"bulkwatch: {exc}", file=sys.stderr)
        return 1
    return 0


def once(settings: Settings) -> int:
    """`bulkwatch once`: 0 when every poll succeeded, 1 when any failed."""
    configure_logging(settings.log.level, settings.log.format)

    async def main() -> bool:
        async with Engine(settings) as engine:
            ok = await engine.poll_all_once()
            await engine.deliver_due_once()
            return ok

    return 0 if asyncio.run(main()) else 1


async def _with_store(settings: Settings) -> StateStore:
    store = open_store(settings.state)
    await store.open()
    return store


async def status(settings: Settings, only: str | None, *, as_json: bool) -> int:
    """`bulkwatch status`: tracked tasks per store, with each store's health."""
    store = await _with_store(settings)
    try:
        tasks = await store.list_tasks(only)
        health = {h.store: h for h in await store.list_health()}
    finally:
        await store.close()
    rows = [
        {
            "store": t.snapshot.store,
            "platform": t.snapshot.platform.value,
            "endpoint": t.endpoint,
            "task_id": t.task_id,
            "status": t.snapshot.status.value,
            "raw_status": t.snapshot.raw_status,
            "changed_at": isoformat(t.changed_at),
            "url": t.snapshot.url,
            "superseded": t.gone,
        }
        for t in tasks
    ]
    if as_json:
        print(json.dumps({"tasks": rows, "down": sorted(h for h in health if health[h].down)}))
        return 0
    names = [s.name for s in settings.stores if only in (None, s.name)]
    for name in names:
        h = health.get(name)
        mark = "DOWN" if h is not None and h.down else "up"
        mine = [r for r in rows if r["store"] == name]
        print(f"{name} ({mark}): {len(mine)} tracked task(s)")
        for r in mine:
            gone = " (superseded)" if r["superseded"] else ""
            print(
                f"  {r['endpoint']:<9} {r['task_id']:<40} {r['status']:<10} {r['changed_at']}{gone}"
            )
    return 0


async def deliveries_list(
    settings: Settings, status_name: str, notifier: str | None, *, as_json: bool
) -> int:
    """`bulkwatch deliveries list`: dead deliveries by default."""
    store = await _with_store(settings)
    try:
        rows = await store.outbox.list_deliveries(DeliveryStatus(status_name), notifier=notifier)
    finally:
        await store.close()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "event_id": d.event_id,
                        "notifier": d.notifier,
                        "type": d.event_type,
                        "store": d.store,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "created_at": isoformat(d.created_at),
                    }
                    for d in rows
                ]
            )
        )
        return 0
    if not rows:
        print(f"no {status_name} deliveries")
    for d in rows:
        print(
            f"{d.id:>6} {d.notifier:<16} {d.event_type:<28} {d.store:<16} "
            f"attempts={d.attempts} error={d.last_error or '-'}"
        )
    return 0


async def deliveries_retry(settings: Settings, ids: list[int], notifier: str | None) -> int:
    """`bulkwatch deliveries retry`: queue dead deliveries again (all, by id or by notifier)."""
    store = await _with_store(settings)
    try:
        count = await store.outbox.requeue_dead(utcnow(), ids=ids or None, notifier=notifier)
    finally:
        await store.close()
    print(f"queued {count} dead deliver{'y' if count == 1 else 'ies'} again")
    return 0


async def notify_test(settings: Settings, name: str) -> int:
    """`bulkwatch notify-test NAME`: send a sample event through one notifier, report it.

    0 delivered, 1 failed, 2 no such notifier or it cannot be built. No state is touched.
    """
    from bulkwatch.model import Platform  # noqa: PLC0415 - only this command needs these
    from bulkwatch.notifiers.sample import sample_event, send_sample  # noqa: PLC0415

    config = next((n for n in settings.notifiers if n.name == name), None)
    if config is None:
        known = ", ".join(n.name for n in settings.notifiers) or "none configured"
        print(f"error: no notifier named {name!r} (notifiers: {known})", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    first = next((s for s in settings.stores if s.enabled), None)
    event = sample_event(
        settings.instance,
        first.name if first else "example",
        Platform(first.platform) if first else Platform.SHOPLAZZA,
    )
    if not config.matches(event.type, event.store):
        print(f"note: {name}'s events/stores filters would not pass this event; sending anyway")
    try:
        error = await send_sample(config, event, settings.instance)
    except Exception as exc:  # noqa: BLE001 - whatever building the notifier raised, reported
        problem = f"{type(exc).__name__}: {exc}"
        print(f"error: cannot build notifier {name!r}: {problem}", file=sys.stderr)
        return 2
    if error is None:
        print(f"delivered (event {event.id} through {name})")
        return 0
    kind = "permanent, not retried" if error.permanent else "would be retried"
    print(f"failed: {error or type(error).__name__} ({kind})")
    return 1


async def simulate(args: argparse.Namespace) -> int:
    """`bulkwatch simulate`: serve the simulator until SIGINT/SIGTERM, then exit 0."""
    from bulkwatch.simulator.runner import serve, until_signalled  # noqa: PLC0415 - only here

    run = serve(
        args.host,
        args.port,
        shoplazza=args.shoplazza,
        shopline=args.shopline,
        step=args.step,
        latency=args.latency,
        seed=args.seed,
        config_path=args.write_config,
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

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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
