"""`bulkwatch check-config` and `bulkwatch notify-test`: what the config says, and whether a
notifier it names can deliver."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from bulkwatch.cli.commands.preflight import check_machine
from bulkwatch.common.urls import without_password
from bulkwatch.config import Settings, resolve_stores
from bulkwatch.config.discovery import ConfigFile
from bulkwatch.notifiers.base import NotifierConfig
from bulkwatch.telemetry.logs import configure_logging

__all__ = ["check_config", "notify_test", "summarise"]


def check_config(settings: Settings, config: ConfigFile, *, machine: bool) -> int:
    """`bulkwatch check-config [--machine]`: the summary and exit 0, or exit 2 after one
    `config error:` line per problem; `machine` adds the checks against this machine."""
    if not machine:
        print(summarise(settings, config))
        print(
            "machine: not checked (--machine checks the state directory, the server port "
            "and command programs on this machine)"
        )
        return 0
    report = check_machine(settings, server=True)
    problems = report.problems + ([report.port] if report.port else [])
    for line in problems:
        print(f"config error: {line}", file=sys.stderr)
    if problems:
        return 2
    print(summarise(settings, config))
    checked = ", ".join(report.checked) or "nothing to check"
    if report.in_use is not None:
        checked += f"; port not checked: {report.in_use}"
    print(f"machine: OK ({checked})")
    return 0


def summarise(settings: Settings, config: ConfigFile) -> str:
    """A readable summary of valid settings, without any secret."""
    lines = [
        f"config OK: {config.describe()}" if config.path else "config OK (no config file)",
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
        if getattr(store, "app_key", None) is not None:
            token += ", refreshed with the app's credentials"
        state = "" if store.enabled else " (disabled)"
        lines.append(
            f"  - {store.name}: {store.platform} {host} endpoints={','.join(store.endpoints)} "
            f"interval={resolved.interval:g}s token={token}{state}"
        )
    lines.append(f"notifiers: {len(settings.notifiers) or 'none (events are only logged)'}")
    for n in settings.notifiers:
        target = _target(n)
        lines.append(
            f"  - {n.name}: {n.type}{target} events={','.join(n.events)} "
            f"stores={','.join(n.stores)}"
        )
    return "\n".join(lines)


def _shown_url(url: str) -> str:
    """Scheme, host, port and path of a URL: no user or password, the query and fragment
    only hinted (`?…`), since either may carry a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    hidden = "?…" if parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{hidden}"


def _target(notifier: NotifierConfig) -> str:
    """Where a notifier sends, as far as that is no secret: ` -> ...` or nothing."""
    url = getattr(notifier, "url", None)
    if isinstance(url, str):
        return f" -> {_shown_url(url)}"
    argv = getattr(notifier, "argv", None)
    if isinstance(argv, list) and argv:
        return f" -> {argv[0]}"  # the program; its arguments may hold tokens
    host = getattr(notifier, "host", None)
    if isinstance(host, str):
        port = getattr(notifier, "port", None)
        return f" -> {host}:{port}" if isinstance(port, int) else f" -> {host}"
    return ""


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
