"""`bulkwatch check-config` and `bulkwatch notify-test`: what the config says, and whether a
notifier it names can deliver."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

from bulkwatch.common.urls import without_password
from bulkwatch.config import Settings, resolve_stores
from bulkwatch.telemetry.logs import configure_logging

__all__ = ["notify_test", "summarise"]


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
